//! The Gemini provider through the whole job path (tool call → runner → provider → stored
//! image), against the local stand-in of `generateContent`, including refusals and retries.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    gemini_standin::{self, Reply, StandIn},
    support::{TestServer, call, fetch_image, job_id, modern_client, structured, wait_until_ended},
};

async fn server_for(stand_in: &StandIn) -> TestServer {
    let base_url = stand_in.base_url.clone();
    TestServer::start_with(move |config| {
        config.provider = "gemini";
        config.providers.gemini.api_key = Some("AIza-test-secret".into());
        config.providers.gemini.base_url = base_url;
        config.providers.gemini.request_timeout = Duration::from_millis(500);
        config.providers.gemini.typical_latency = Duration::from_millis(100);
        config.jobs.retry_base = Duration::from_millis(20);
    })
    .await
}

/// Runs one `generate_image` call to its end; returns the final job view and, when it
/// completed, the pixel size of the image behind `image_url`.
async fn run_job(script: Vec<Reply>, size: &str) -> (Value, Option<(u32, u32)>, StandIn) {
    let stand_in = gemini_standin::spawn(script).await;
    let server = server_for(&stand_in).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started =
        call(&client, "generate_image", json!({"prompt": "a red fox", "size": size})).await;
    assert_eq!(started.is_error, Some(false));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits for Gemini");
    let view = wait_until_ended(&client, &job_id(&started)).await;
    let mut pixels = None;
    if view["status"] == "completed" {
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        pixels = Some((image.width(), image.height()));
    }
    client.cancel().await.unwrap();
    server.stop().await;
    (view, pixels, stand_in)
}

#[tokio::test]
async fn gemini_images_complete_through_the_job_path() {
    let (view, pixels, stand_in) = run_job(vec![Reply::Image], "landscape").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1248, 832)), "Gemini's size for 3:2, the ratio nearest 1536x1024");
    let request = &stand_in.requests()[0];
    assert_eq!(request.body["generationConfig"]["imageConfig"]["aspectRatio"], "3:2");
    assert_eq!(request.body["contents"][0]["parts"][0]["text"], "a red fox");
    assert_eq!(request.header("x-goog-api-key"), Some("AIza-test-secret"));
}

#[tokio::test]
async fn portrait_images_come_back_at_two_by_three() {
    let (view, pixels, _stand_in) = run_job(vec![Reply::Image], "portrait").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((832, 1248)));
}

#[tokio::test]
async fn refused_prompts_fail_at_once_with_the_spoken_refusal() {
    for reply in [Reply::Blocked { reason: "PROHIBITED_CONTENT" }, Reply::image_safety()] {
        let (view, _, stand_in) = run_job(vec![reply], "square").await;
        assert_eq!(view["status"], "failed", "{view}");
        assert_eq!(stand_in.hits(), 1, "a refusal is not retried: {view}");
        let error = view["error"].as_str().unwrap();
        assert!(error.contains("describing it differently"), "{error}");
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_retry_info_delay() {
    let started = Instant::now();
    let script = vec![Reply::resource_exhausted("1s"), Reply::Image];
    let (view, _, stand_in) = run_job(script, "square").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(stand_in.hits(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "retryDelay 1s was honoured");
}

#[tokio::test]
async fn a_rejected_key_fails_without_leaking_it() {
    let (view, _, stand_in) = run_job(vec![Reply::api_key_invalid()], "square").await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(stand_in.hits(), 1);
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("credentials"), "{error}");
    assert!(!view.to_string().contains("AIza-test-secret"), "{view}");
}
