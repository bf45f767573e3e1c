//! The MCP tasks extension on durable jobs: 2026-07-28 requests that declare it get a task
//! (`taskId` = job id) and follow it through `tasks/get` or `notifications/tasks`; everyone
//! else — legacy sessions included, whatever they announced — gets the placeholder.

use std::time::Duration;

use rmcp::{
    ServiceError,
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, ErrorCode, GetTaskParams,
        TaskStatus, UpdateTaskParams,
    },
};
use serde_json::json;

use crate::support::{
    SOON, SseReader, TestServer, args, call, client_info, legacy_client, modern_meta, raw_request,
    structured, tasks_capabilities, tasks_client,
};

async fn start_task(client: &crate::support::Client, prompt: &str) -> String {
    let params = CallToolRequestParams::new("generate_image")
        .with_arguments(args(json!({"prompt": prompt})));
    match client.call_tool_once(params).await.expect("tools/call") {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            assert_eq!(created.task.poll_interval_ms, Some(1000));
            assert!(
                created.task.status_message.as_deref().unwrap_or("").contains("Making the image")
            );
            created.task.task_id
        }
        other => panic!("a task-capable 2026-07-28 request gets a task, got {other:?}"),
    }
}

#[tokio::test]
async fn tasks_get_follows_a_job_to_its_inline_result() {
    let server = TestServer::start().await;
    let (client, _) = tasks_client(&server.url(), None).await;
    let task_id = start_task(&client, "a red fox").await;
    let deadline = tokio::time::Instant::now() + SOON;
    let done = loop {
        let got = client.get_task(GetTaskParams::new(task_id.clone())).await.expect("tasks/get");
        if got.task.status() != TaskStatus::Working {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "task never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.task.status(), TaskStatus::Completed);
    let wire = serde_json::to_value(&done).unwrap();
    assert_eq!(wire["result"]["isError"], false);
    assert_eq!(wire["result"]["structuredContent"]["job_id"], task_id.as_str());
    assert_eq!(wire["result"]["structuredContent"]["status"], "completed");
    assert!(
        wire["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("The image is ready: http")
    );
    // The task and the job are the same thing: job_status sees it too.
    let status = call(&client, "job_status", json!({"job_id": task_id})).await;
    assert_eq!(structured(&status)["status"], "completed");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn notifications_tasks_push_the_finished_task_on_a_listen_stream() {
    let server = TestServer::start().await;
    let (client, _) = tasks_client(&server.url(), None).await;
    let task_id = start_task(&client, "night over the ocean").await;
    let body = json!({"jsonrpc": "2.0", "id": 41, "method": "subscriptions/listen", "params": {
        "notifications": {"taskIds": [task_id]},
        "_meta": modern_meta(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})),
    }});
    let response =
        raw_request(&server.url(), None, "subscriptions/listen", None, body).send().await.unwrap();
    let mut stream = SseReader::new(response);
    let ack = stream.next().await.json();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    let pushed = stream.next().await.json();
    assert_eq!(pushed["method"], "notifications/tasks", "{pushed}");
    let params = &pushed["params"];
    assert_eq!(params["_meta"]["io.modelcontextprotocol/subscriptionId"], 41);
    assert_eq!(params["taskId"], task_id.as_str());
    assert_eq!(params["status"], "completed");
    assert_eq!(params["result"]["structuredContent"]["status"], "completed");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tasks_are_cancelled_through_tasks_cancel_and_only_by_their_owner() {
    let server = TestServer::start_with(|config| {
        config.security.tokens = vec!["alpha".to_owned(), "beta".to_owned()];
        config.providers.sketch.latency = Duration::from_secs(30).into();
    })
    .await;
    let (alpha, _) = tasks_client(&server.url(), Some("alpha")).await;
    let (beta, _) = tasks_client(&server.url(), Some("beta")).await;
    let task_id = start_task(&alpha, "a slow painting").await;
    for attempt in [
        beta.get_task(GetTaskParams::new(task_id.clone())).await.map(|_| ()),
        beta.cancel_task(CancelTaskParams::new(task_id.clone())).await,
    ] {
        let Err(ServiceError::McpError(error)) = attempt else {
            panic!("another token's task: {attempt:?}")
        };
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
    }
    let update =
        alpha.update_task(UpdateTaskParams::new(task_id.clone(), Default::default())).await;
    assert!(
        matches!(update, Err(ServiceError::McpError(ref e)) if e.code == ErrorCode::INVALID_PARAMS),
        "{update:?}"
    );
    alpha.cancel_task(CancelTaskParams::new(task_id.clone())).await.expect("tasks/cancel");
    let got = alpha.get_task(GetTaskParams::new(task_id.clone())).await.unwrap();
    assert_eq!(got.task.status(), TaskStatus::Cancelled);
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn requests_without_the_extension_and_legacy_sessions_get_the_placeholder() {
    let server = TestServer::start().await;
    // A legacy session that announces the extension at initialize still gets a plain result.
    let mut info = client_info();
    info.capabilities = tasks_capabilities();
    let (recorder, _) = crate::support::Recorder::new(info);
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            server.url(),
        ),
    );
    let legacy = rmcp::ServiceExt::serve(recorder, transport).await.unwrap();
    let (plain_legacy, _) = legacy_client(&server.url(), None).await;
    let (modern, _) = crate::support::modern_client(&server.url(), None).await;
    for client in [&legacy, &plain_legacy, &modern] {
        let result = call(client, "generate_image", json!({"prompt": "a kite"})).await;
        assert_eq!(structured(&result)["status"], "working");
    }
    // tasks/get without the extension declared is refused with -32021.
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/get", "params": {
        "taskId": "01jzzzzzzzzzzzzzzzzzzzzzzz", "_meta": modern_meta(json!({}))}});
    let response =
        raw_request(&server.url(), None, "tasks/get", Some("01jzzzzzzzzzzzzzzzzzzzzzzz"), body)
            .send()
            .await
            .unwrap();
    let reply = crate::support::rpc_reply(response).await;
    assert_eq!(reply["error"]["code"], -32021, "{reply}");
    for client in [legacy, plain_legacy, modern] {
        client.cancel().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn a_task_cancelled_with_cancel_job_is_pushed_as_cancelled() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_secs(30).into();
    })
    .await;
    let (client, _) = tasks_client(&server.url(), None).await;
    let task_id = start_task(&client, "a slow sunrise").await;
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": {
        "notifications": {"taskIds": [task_id]},
        "_meta": modern_meta(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})),
    }});
    let response =
        raw_request(&server.url(), None, "subscriptions/listen", None, body).send().await.unwrap();
    let mut stream = SseReader::new(response);
    assert_eq!(stream.next().await.json()["method"], "notifications/subscriptions/acknowledged");
    // The tool and the task are one job: cancelling through the tool ends the task.
    let cancelled = call(&client, "cancel_job", json!({"job_id": task_id})).await;
    assert_eq!(structured(&cancelled)["status"], "cancelled");
    let pushed = stream.next().await.json();
    assert_eq!(pushed["method"], "notifications/tasks", "{pushed}");
    assert_eq!(pushed["params"]["taskId"], task_id.as_str());
    assert_eq!(pushed["params"]["status"], "cancelled");
    let got = client.get_task(GetTaskParams::new(task_id.clone())).await.unwrap();
    assert_eq!(got.task.status(), TaskStatus::Cancelled);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn server_discover_advertises_the_tasks_extension() {
    let server = TestServer::start().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {
        "_meta": modern_meta(json!({}))}});
    let response =
        raw_request(&server.url(), None, "server/discover", None, body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let reply = crate::support::rpc_reply(response).await;
    let extensions = &reply["result"]["capabilities"]["extensions"];
    assert!(extensions.get("io.modelcontextprotocol/tasks").is_some(), "{reply}");
    server.stop().await;
}
