//! The Replicate provider through the whole job path (tool call → runner → provider → stored
//! image), against the local stand-in of the predictions API: Replicate's own asynchronous
//! predictions mapped onto our jobs, including refusals, retries, cancellation and timeouts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    replicate_standin::{self, Kind, MODEL, Reply, StandIn, prediction_id},
    support::{
        Client, TestServer, call, fetch_image, job_id, modern_client, structured, wait_until_ended,
    },
};

const TOKEN: &str = "r8_test-secret";

async fn server_for(stand_in: &StandIn, job_timeout: Duration) -> TestServer {
    let base_url = stand_in.base_url.clone();
    TestServer::start_with(move |config| {
        config.provider = "replicate";
        let replicate = &mut config.providers.replicate;
        replicate.api_key = Some(TOKEN.into());
        replicate.base_url = base_url;
        replicate.poll_interval = Duration::from_millis(20);
        replicate.request_timeout = Duration::from_millis(500);
        replicate.typical_latency = Duration::from_millis(100);
        config.jobs.retry_base = Duration::from_millis(20);
        config.jobs.timeout = job_timeout;
    })
    .await
}

/// Starts one `generate_image` job; returns its id. The reply never waits for Replicate.
async fn start(client: &Client, size: &str) -> String {
    let started =
        call(client, "generate_image", json!({"prompt": "a red fox", "size": size})).await;
    assert_eq!(started.is_error, Some(false));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits for Replicate");
    job_id(&started)
}

/// Runs one job to its end; returns the final job view and, when it completed, the pixel size
/// of the image behind `image_url`.
async fn run_job(script: Vec<Reply>, size: &str) -> (Value, Option<(u32, u32)>, StandIn) {
    let stand_in = replicate_standin::spawn(script).await;
    let server = server_for(&stand_in, Duration::from_secs(30)).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let view = wait_until_ended(&client, &start(&client, size).await).await;
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
async fn replicate_images_complete_through_the_job_path() {
    let (view, pixels, stand_in) = run_job(vec![Reply::image()], "landscape").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1216, 832)), "FLUX's size for 3:2, the ratio nearest 1536x1024");
    let create = &stand_in.of(Kind::Create)[0];
    assert_eq!(create.path, format!("/v1/models/{MODEL}/predictions"));
    assert_eq!(create.body["input"]["aspect_ratio"], "3:2");
    assert_eq!(create.body["input"]["prompt"], "a red fox");
    assert_eq!(create.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(stand_in.count(Kind::Poll), 2, "starting → processing → succeeded");
    assert_eq!(stand_in.of(Kind::Download)[0].header("authorization"), None);
    assert_eq!(stand_in.count(Kind::Cancel), 0);
}

#[tokio::test]
async fn an_nsfw_prediction_fails_the_job_at_once_with_a_spoken_refusal() {
    let (view, _, stand_in) = run_job(vec![Reply::nsfw()], "square").await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(stand_in.count(Kind::Create), 1, "a refusal is not retried: {view}");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("describing it differently"), "{error}");
    assert!(!view.to_string().contains(TOKEN), "{view}");
}

#[tokio::test]
async fn an_interrupted_prediction_is_retried_with_a_new_one() {
    let script =
        vec![Reply::failed("Prediction interrupted; please retry (code: PA)"), Reply::image()];
    let (view, pixels, stand_in) = run_job(script, "square").await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1024, 1024)));
    assert_eq!(stand_in.count(Kind::Create), 2);
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("failed"));
    assert_eq!(stand_in.status_of(&prediction_id(2)).as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn cancelling_the_job_cancels_the_prediction() {
    let stand_in = replicate_standin::spawn(vec![Reply::stalled()]).await;
    let server = server_for(&stand_in, Duration::from_secs(30)).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = start(&client, "square").await;
    stand_in.wait_for(Kind::Poll, 1).await;

    let cancelled = call(&client, "cancel_job", json!({"job_id": job})).await;
    assert_eq!(structured(&cancelled)["status"], "cancelled", "{cancelled:?}");
    stand_in.wait_for(Kind::Cancel, 1).await;
    let cancel = &stand_in.of(Kind::Cancel)[0];
    assert_eq!(cancel.path, format!("/v1/predictions/{}/cancel", prediction_id(1)));
    assert_eq!(cancel.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_job_out_of_time_fails_and_cancels_the_prediction() {
    let stand_in = replicate_standin::spawn(vec![Reply::stalled()]).await;
    let server = server_for(&stand_in, Duration::from_millis(600)).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let view = wait_until_ended(&client, &start(&client, "square").await).await;
    assert_eq!(view["status"], "failed", "{view}");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("took longer"), "{error}");
    stand_in.wait_for(Kind::Cancel, 1).await;
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
    client.cancel().await.unwrap();
    server.stop().await;
}
