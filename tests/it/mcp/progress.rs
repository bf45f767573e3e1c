//! `job_status` with `wait_ms` returns as soon as the job ends, sending progress notifications
//! while it waits — on the session (legacy) or on the request's own stream (2026-07-28) — and
//! never holds the call past `tools.reply_within`, whatever `wait_ms` asks for.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestServer, call, job_id, legacy_client, modern_client, structured, text};

#[tokio::test]
async fn waiting_reports_progress_and_returns_when_the_job_ends() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_millis(1500).into();
    })
    .await;
    let (legacy, legacy_inbox) = legacy_client(&server.url(), None).await;
    let (modern, modern_inbox) = modern_client(&server.url(), None).await;
    for (client, mut inbox) in [(legacy, legacy_inbox), (modern, modern_inbox)] {
        let id = job_id(&call(&client, "generate_image", json!({"prompt": "a slow sunset"})).await);
        let done = call(&client, "job_status", json!({"job_id": id, "wait_ms": 20000})).await;
        assert_eq!(structured(&done)["status"], "completed");
        assert!(text(&done).starts_with("The image is ready: http"), "{}", text(&done));
        let mut progress = Vec::new();
        while let Ok(update) = inbox.progress.try_recv() {
            progress.push(update);
        }
        assert!(progress.len() >= 2, "one at once, then one a second: {progress:?}");
        assert!(progress.windows(2).all(|pair| pair[0].progress < pair[1].progress), "increasing");
        // The wait is bounded by the reply bound (3 s by default, less room for the answer).
        assert!(progress.iter().all(|p| p.total == Some(2750.0)), "{progress:?}");
        // The first one is sent before any waiting, so a client can speak it at once
        // (LiveKit's `report_progress` frees the model's turn on it).
        assert!(progress[0].progress < 100.0, "{progress:?}");
        let message = progress[0].message.as_deref().unwrap_or("");
        assert!(message.starts_with("The image is still being made, about "), "{message}");
        assert!(!message.contains(&id), "a progress line is for speaking: {message}");
        client.cancel().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn no_wait_outlasts_the_reply_bound() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_secs(30).into();
        config.tools.reply_within = Duration::from_millis(1200).into();
    })
    .await;
    let (client, mut inbox) = legacy_client(&server.url(), None).await;
    let listed = client.list_all_tools().await.unwrap();
    let status_tool = listed.iter().find(|tool| tool.name == "job_status").unwrap();
    let description = status_tool.description.as_deref().unwrap_or_default();
    assert!(description.contains("wait_ms waits up to 1.2 s"), "says what is true: {description}");
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "a slow moon"})).await);
    let started = Instant::now();
    let status = call(&client, "job_status", json!({"job_id": id, "wait_ms": 20000})).await;
    let waited = started.elapsed();
    assert_eq!(structured(&status)["status"], "working", "{status:?}");
    assert!(text(&status).contains("still being made"), "{}", text(&status));
    assert!(waited >= Duration::from_millis(900), "it did wait: {waited:?}");
    assert!(waited < Duration::from_millis(1200), "within the bound: {waited:?}");
    assert!(inbox.progress.try_recv().is_ok(), "progress while waiting");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_short_wait_returns_the_working_job_after_the_wait() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_secs(30).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "a slow sunrise"})).await);
    let started = Instant::now();
    let status = call(&client, "job_status", json!({"job_id": id, "wait_ms": 300})).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(structured(&status)["status"], "working");
    assert!(text(&status).contains("still being made"), "{}", text(&status));
    client.cancel().await.unwrap();
    server.stop().await;
}
