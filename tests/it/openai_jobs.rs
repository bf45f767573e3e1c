//! The OpenAI provider through the whole job path (tool call → runner → provider → stored
//! image → push), against the local stand-in of the Images API, including its errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    openai_standin::{self, Reply, StandIn},
    support::{TestServer, call, fetch_image, job_id, modern_client, structured, wait_until_ended},
};

async fn server_for(stand_in: &StandIn) -> TestServer {
    let base_url = stand_in.base_url.clone();
    TestServer::start_with(move |config| {
        config.provider = "openai";
        config.providers.openai.api_key = Some("sk-test-secret".into());
        config.providers.openai.base_url = base_url;
        config.providers.openai.request_timeout = Duration::from_millis(500);
        config.providers.openai.typical_latency = Duration::from_millis(100);
        config.jobs.retry_base = Duration::from_millis(20);
    })
    .await
}

/// Runs one `generate_image` call to its end and returns the final job view.
async fn run_job(script: Vec<Reply>, size: &str) -> (Value, StandIn) {
    let stand_in = openai_standin::spawn(script).await;
    let server = server_for(&stand_in).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started =
        call(&client, "generate_image", json!({"prompt": "a red fox", "size": size})).await;
    assert_eq!(started.is_error, Some(false));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits for OpenAI");
    let view = wait_until_ended(&client, &job_id(&started)).await;
    if view["status"] == "completed" {
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        let (width, height) = offstage::images::ImageSize::ALL
            .into_iter()
            .find(|s| s.as_str() == size)
            .unwrap()
            .dimensions();
        assert_eq!((image.width(), image.height()), (width, height));
    }
    client.cancel().await.unwrap();
    server.stop().await;
    (view, stand_in)
}

#[tokio::test]
async fn openai_images_complete_through_the_job_path() {
    let (view, stand_in) = run_job(vec![Reply::image(1536, 1024)], "landscape").await;
    assert_eq!(view["status"], "completed", "{view}");
    let request = &stand_in.requests()[0];
    assert_eq!(request.body["size"], "1536x1024");
    assert_eq!(request.body["prompt"], "a red fox");
    assert_eq!(request.header("authorization"), Some("Bearer sk-test-secret"));
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_requested_wait() {
    let started = std::time::Instant::now();
    let script = vec![Reply::rate_limited(Some("1")), Reply::image(1024, 1024)];
    let (view, stand_in) = run_job(script, "square").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(stand_in.hits(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_speakably() {
    let (view, stand_in) = run_job(vec![Reply::server_error(503)], "square").await;
    assert_eq!(view["status"], "failed");
    assert_eq!(stand_in.hits(), 3, "max_attempts attempts");
    assert!(view["error"].as_str().unwrap().contains("try again shortly"), "{view}");
}

#[tokio::test]
async fn permanent_errors_fail_at_once_with_a_sentence_to_say() {
    let cases = [
        (Reply::moderation_blocked(), "describing it differently"),
        (Reply::unauthorized(), "credentials"),
        (Reply::insufficient_quota(), "out of credit"),
        (Reply::Garbage, "broken image"),
    ];
    for (reply, phrase) in cases {
        let (view, stand_in) = run_job(vec![reply], "square").await;
        assert_eq!(view["status"], "failed", "{view}");
        assert_eq!(stand_in.hits(), 1, "not retried: {view}");
        let error = view["error"].as_str().unwrap();
        assert!(error.contains(phrase), "`{error}` should say `{phrase}`");
        assert!(!error.contains("sk-test-secret"));
    }
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_fails() {
    let (view, stand_in) = run_job(vec![Reply::Hang], "square").await;
    assert_eq!(view["status"], "failed");
    assert_eq!(stand_in.hits(), 3, "timeouts are retryable");
    assert!(view["error"].as_str().unwrap().contains("too long"), "{view}");
}
