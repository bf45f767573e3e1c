//! Cross-token isolation: a second token cannot read, cancel, stream, subscribe to or be
//! notified of the first token's jobs, through any door.

#![allow(deprecated)] // resources/subscribe is legacy-only, and these are legacy sessions.

use std::time::Duration;

use rmcp::model::{ReadResourceRequestParams, SubscribeRequestParams};
use serde_json::json;

use crate::support::{
    SseReader, TestServer, call, job_id, legacy_client, modern_meta, raw_request, structured, text,
};

#[tokio::test]
async fn a_second_token_sees_nothing_of_the_first_tokens_jobs() {
    let server = TestServer::start_with(|config| {
        config.security.tokens = vec!["alpha".to_owned(), "beta".to_owned()];
        config.providers.sketch.latency = Duration::from_millis(1500).into();
    })
    .await;
    let (alpha, mut alpha_inbox) = legacy_client(&server.url(), Some("alpha")).await;
    let (beta, mut beta_inbox) = legacy_client(&server.url(), Some("beta")).await;
    let mut beta_stream = server.events(Some("beta"), "", None).await;
    let mut alpha_stream = server.events(Some("alpha"), "", None).await;

    let job = job_id(&call(&alpha, "generate_image", json!({"prompt": "a secret garden"})).await);
    let uri = format!("offstage://jobs/{job}");
    alpha.subscribe(SubscribeRequestParams::new(uri.clone())).await.expect("owner subscribes");

    // Read and cancel through tools: it looks exactly like a job that does not exist.
    for tool in ["job_status", "cancel_job"] {
        let result = call(&beta, tool, json!({"job_id": job})).await;
        assert_eq!(result.is_error, Some(true), "{tool}: {}", text(&result));
        assert!(text(&result).contains("no job"), "{tool}: {}", text(&result));
    }
    // Read and subscribe through resources.
    assert!(beta.read_resource(ReadResourceRequestParams::new(uri.clone())).await.is_err());
    assert!(beta.subscribe(SubscribeRequestParams::new(uri.clone())).await.is_err());
    // Read over HTTP, and stream its events by id.
    let (status, body) = server.job_json(Some("beta"), &job).await;
    assert_eq!(status, 404, "{body}");
    let mut by_job = server.events(Some("beta"), &format!("?job={job}&after=0"), None).await;
    // Listen for it the 2026-07-28 way, as a resource and as a task.
    let listen = json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen", "params": {
        "notifications": {"resourceSubscriptions": [uri], "taskIds": [job]},
        "_meta": modern_meta(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})),
    }});
    let response = raw_request(&server.url(), Some("beta"), "subscriptions/listen", None, listen);
    let mut beta_listen = SseReader::new(response.send().await.unwrap());
    let ack = beta_listen.next().await.json();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");

    // The job ends for its owner, who hears about it everywhere...
    assert_eq!(alpha_inbox.next_update().await, uri);
    let created = alpha_stream.next().await.json();
    let completed = alpha_stream.next().await.json();
    assert_eq!(
        (created["type"].as_str(), completed["type"].as_str()),
        (Some("job.created"), Some("job.completed"))
    );
    assert_eq!(completed["job"]["job_id"], job.as_str());
    let status = call(&alpha, "job_status", json!({"job_id": job})).await;
    assert_eq!(structured(&status)["status"], "completed", "beta's cancel did nothing");

    // ...and the other token nowhere.
    let quiet = Duration::from_millis(700);
    assert!(beta_stream.next_within(quiet).await.is_none(), "beta's stream stays empty");
    assert!(by_job.next_within(quiet).await.is_none(), "beta cannot stream alpha's job");
    assert!(beta_inbox.updates.try_recv().is_err(), "beta was never notified");
    let pushed = beta_listen.next_within(quiet).await;
    assert!(pushed.is_none(), "beta's listen stream stays silent: {pushed:?}");
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    server.stop().await;
}
