//! Bad input gets a specific, actionable error and leaves nothing behind: tool errors come back
//! as `isError: true` results, protocol misuse as the right JSON-RPC or HTTP error.

use std::time::Duration;

use rmcp::{
    ServiceError,
    model::{CallToolRequestParams, ErrorCode, ReadResourceRequestParams},
};
use serde_json::{Value, json};

use crate::support::{
    TestServer, args, call, count_jobs, legacy_client, modern_client, structured, text,
};

/// Calls a tool expecting a tool error; returns its text after checking the error shape.
async fn tool_error(
    client: &crate::support::Client,
    tool: &str,
    arguments: Value,
    code: &str,
) -> String {
    let result = call(client, tool, arguments.clone()).await;
    assert_eq!(result.is_error, Some(true), "{tool} {arguments} must fail: {result:?}");
    let error = &structured(&result)["error"];
    assert_eq!(error["code"], code, "{tool} {arguments}: {error}");
    text(&result)
}

#[tokio::test]
async fn bad_tool_arguments_say_what_to_change_and_create_nothing() {
    let server = TestServer::start().await;
    let (client, _inbox) = modern_client(&server.url(), None).await;
    let invalid = "invalid_arguments";
    let cases: [(&str, Value, &[&str]); 8] = [
        ("generate_image", json!({"prompt": "   "}), &["empty", "Describe"]),
        ("generate_image", json!({"prompt": "x".repeat(4001)}), &["4001", "4000"]),
        (
            "generate_image",
            json!({"prompt": "a cat", "size": "huge"}),
            &["size", "huge", "square", "portrait", "landscape"],
        ),
        ("generate_image", json!({"prompt": 5}), &["prompt", "string"]),
        ("generate_image", json!({}), &["prompt", "missing"]),
        (
            "generate_image",
            json!({"prompt": "a cat", "colour": "red"}),
            &["colour", "unknown field"],
        ),
        ("job_status", json!({"job_id": "x", "wait_ms": -1}), &["wait_ms"]),
        ("cancel_job", json!({"job": "x"}), &["job_id"]),
    ];
    for (tool, arguments, needles) in cases {
        let message = tool_error(&client, tool, arguments.clone(), invalid).await;
        for needle in needles {
            assert!(
                message.contains(needle),
                "{tool} {arguments}: `{message}` should mention `{needle}`"
            );
        }
    }
    for (tool, id) in [
        ("job_status", "01jzzzzzzzzzzzzzzzzzzzzzzz"),
        ("cancel_job", "not-a-job"),
        ("job_status", ""),
    ] {
        let message = tool_error(&client, tool, json!({"job_id": id}), "job_not_found").await;
        assert!(message.contains("There is no job"), "{message}");
    }
    assert_eq!(count_jobs(server.dir.path()).await, 0, "failed calls must not create jobs");
    let images = std::fs::read_dir(server.dir.path().join("images")).unwrap().count();
    assert_eq!(images, 0);

    let ok = call(&client, "generate_image", json!({"prompt": "a cat"})).await;
    assert_eq!(ok.is_error, Some(false));
    assert_eq!(count_jobs(server.dir.path()).await, 1);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn unknown_tools_and_resources_are_protocol_errors() {
    let server = TestServer::start().await;
    let (modern, _) = modern_client(&server.url(), None).await;
    let (legacy, _) = legacy_client(&server.url(), None).await;
    for client in [&modern, &legacy] {
        let error = client
            .call_tool(CallToolRequestParams::new("make_video").with_arguments(args(json!({}))))
            .await
            .expect_err("unknown tool");
        let ServiceError::McpError(error) = error else {
            panic!("JSON-RPC error expected: {error:?}")
        };
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert!(
            error.message.contains("generate_image"),
            "lists the real tools: {}",
            error.message
        );
    }
    for (client, code) in
        [(&modern, ErrorCode::INVALID_PARAMS), (&legacy, ErrorCode::RESOURCE_NOT_FOUND)]
    {
        for uri in ["offstage://jobs/01jzzzzzzzzzzzzzzzzzzzzzzz", "file:///etc/passwd"] {
            let error =
                client.read_resource(ReadResourceRequestParams::new(uri)).await.expect_err(uri);
            let ServiceError::McpError(error) = error else { panic!("JSON-RPC error expected") };
            assert_eq!(error.code, code, "{uri}");
        }
    }
    modern.cancel().await.unwrap();
    legacy.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once_instead_of_hanging() {
    let server = TestServer::start_with(|config| {
        config.jobs.concurrency = 1;
        config.jobs.queue = 1;
        config.providers.sketch.latency = Duration::from_secs(60).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    for prompt in ["first", "second"] {
        let result = call(&client, "generate_image", json!({"prompt": prompt})).await;
        assert_eq!(result.is_error, Some(false), "{prompt} is admitted");
    }
    let started = std::time::Instant::now();
    let busy = call(&client, "generate_image", json!({"prompt": "third"})).await;
    assert!(started.elapsed() < Duration::from_secs(5), "busy must not wait for a slot");
    assert_eq!(busy.is_error, Some(true));
    let error = &structured(&busy)["error"];
    assert_eq!(error["code"], "busy");
    assert_eq!(error["retryable"], true);
    assert!(error["retry_after_s"].as_u64().is_some_and(|s| s >= 1), "{error}");
    assert!(text(&busy).contains("try again in about"), "{}", text(&busy));
    assert_eq!(count_jobs(server.dir.path()).await, 2);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn malformed_http_requests_get_http_errors() {
    let server = TestServer::start_with(|config| config.security.max_body_bytes = 4096).await;
    let http = reqwest::Client::new();
    let post = |body: String, version: &str| {
        http.post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .body(body)
    };
    let too_big = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": "x".repeat(8000)}});
    assert_eq!(post(too_big.to_string(), "2025-11-25").send().await.unwrap().status(), 413);
    let broken = post("{not json".to_owned(), "2025-11-25").send().await.unwrap();
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.expect("JSON-RPC error body");
    assert_eq!(body["error"]["code"], -32700, "{body}");
    let response =
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(), "2030-01-01")
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 400, "unsupported protocol version");
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["error"]["message"].as_str().unwrap().contains("2030-01-01"), "{body}");
    let missing_session =
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(), "2025-11-25")
            .send()
            .await
            .unwrap();
    assert!(missing_session.status().is_client_error(), "legacy request without a session");
    let body: Value = missing_session.json().await.expect("JSON body");
    assert!(body["error"]["message"].is_string(), "{body}");
    server.stop().await;
}
