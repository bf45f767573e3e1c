//! `job_status` with `wait_ms` returns as soon as the job ends, sending progress notifications
//! while it waits — on the session (legacy) or on the request's own stream (2026-07-28).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestServer, call, job_id, legacy_client, modern_client, structured, text};

#[tokio::test]
async fn waiting_reports_progress_and_returns_when_the_job_ends() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_millis(2500);
    })
    .await;
    let (legacy, legacy_inbox) = legacy_client(&server.url(), None).await;
    let (modern, modern_inbox) = modern_client(&server.url(), None).await;
    for (client, mut inbox) in [(legacy, legacy_inbox), (modern, modern_inbox)] {
        let id = job_id(&call(&client, "generate_image", json!({"prompt": "a slow sunset"})).await);
        let started = Instant::now();
        let done = call(&client, "job_status", json!({"job_id": id, "wait_ms": 20000})).await;
        let waited = started.elapsed();
        assert_eq!(structured(&done)["status"], "completed");
        assert!(text(&done).starts_with("The image is ready: http"), "{}", text(&done));
        assert!(waited < Duration::from_secs(15), "returned when the job ended, not at wait_ms");
        let mut progress = Vec::new();
        while let Ok(update) = inbox.progress.try_recv() {
            progress.push(update);
        }
        assert!(!progress.is_empty(), "at least one progress notification while waiting");
        assert!(progress.windows(2).all(|pair| pair[0].progress < pair[1].progress), "increasing");
        assert!(progress.iter().all(|p| p.total == Some(20000.0)));
        assert!(progress[0].message.as_deref().unwrap_or("").starts_with("Still working"));
        client.cancel().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn a_short_wait_returns_the_working_job_after_the_wait() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_secs(30);
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
