//! The ComfyUI provider through the whole job path (tool call → runner → provider → stored
//! image), against the local ComfyUI stand-in: success, a rejected workflow, a retried
//! out-of-memory failure, ComfyUI down, a job timeout and a cancel that reaches ComfyUI.

use std::time::Duration;

use offstage::config::Config;
use serde_json::{Value, json};

use crate::{
    comfyui_standin::{self, Reply, StandIn},
    support::{
        SOON, TestServer, call, fetch_image, job_id, modern_client, structured, wait_until_ended,
    },
};

fn use_comfyui(config: &mut Config, base_url: String) {
    config.provider = "comfyui";
    config.providers.comfyui.base_url = base_url;
    config.providers.comfyui.poll_interval = Duration::from_millis(10);
    config.providers.comfyui.request_timeout = Duration::from_millis(500);
    config.providers.comfyui.typical_latency = Duration::from_millis(100);
    config.jobs.retry_base = Duration::from_millis(20);
}

/// Runs one `generate_image` call to its end; returns the final job view and, when it
/// completed, the pixel size of the image behind `image_url`.
async fn run_job(
    base_url: String,
    adjust: impl FnOnce(&mut Config),
) -> (Value, Option<(u32, u32)>) {
    let server = TestServer::start_with(move |config| {
        use_comfyui(config, base_url);
        adjust(config);
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started =
        call(&client, "generate_image", json!({"prompt": "a red fox", "size": "landscape"})).await;
    assert_eq!(started.is_error, Some(false));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits for ComfyUI");
    let view = wait_until_ended(&client, &job_id(&started)).await;
    let mut pixels = None;
    if view["status"] == "completed" {
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        pixels = Some((image.width(), image.height()));
    }
    client.cancel().await.unwrap();
    server.stop().await;
    (view, pixels)
}

async fn run_against(
    script: Vec<Reply>,
    adjust: impl FnOnce(&mut Config),
) -> (Value, Option<(u32, u32)>, StandIn) {
    let stand_in = comfyui_standin::spawn(script).await;
    let (view, pixels) = run_job(stand_in.base_url.clone(), adjust).await;
    (view, pixels, stand_in)
}

#[tokio::test]
async fn comfyui_images_complete_through_the_job_path() {
    let (view, pixels, stand_in) = run_against(vec![Reply::Image { polls: 2 }], |_| {}).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1536, 1024)), "ComfyUI draws the size asked for");
    let workflow = &stand_in.workflows()[0];
    assert_eq!(workflow["6"]["inputs"]["text"], "a red fox");
    assert_eq!(workflow["5"]["inputs"]["width"], 1536);
}

#[tokio::test]
async fn a_missing_checkpoint_fails_at_once_with_a_spoken_line() {
    let (view, _, stand_in) = run_against(vec![Reply::image()], |config| {
        config.providers.comfyui.checkpoint = "not_installed.safetensors".to_owned();
    })
    .await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(stand_in.requests_to("POST", "/prompt").len(), 1, "a rejection is not retried");
    let error = view["error"].as_str().unwrap();
    assert_eq!(error, "Something went wrong making that image; please try again.");
}

#[tokio::test]
async fn running_out_of_gpu_memory_is_retried() {
    let script = vec![Reply::out_of_memory(), Reply::image()];
    let (view, pixels, stand_in) = run_against(script, |_| {}).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1536, 1024)));
    assert_eq!(stand_in.requests_to("POST", "/prompt").len(), 2);
}

#[tokio::test]
async fn comfyui_down_fails_after_retries_with_a_spoken_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (view, pixels) = run_job(format!("http://127.0.0.1:{port}"), |_| {}).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(pixels, None);
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("having trouble"), "{error}");
}

#[tokio::test]
async fn a_job_that_outlives_its_timeout_fails_and_its_prompt_is_taken_back() {
    let (view, _, stand_in) = run_against(vec![Reply::Running], |config| {
        config.jobs.timeout = Duration::from_millis(700);
    })
    .await;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(view["error"].as_str().unwrap().contains("took longer"), "{view}");
    let interrupted = stand_in.saw(SOON, |r| r.is("POST", "/interrupt")).await;
    assert!(interrupted, "the timed-out prompt kept the GPU: {:?}", stand_in.requests());
}

#[tokio::test]
async fn cancelling_the_job_takes_the_prompt_back_from_comfyui() {
    let stand_in = comfyui_standin::spawn(vec![Reply::Running]).await;
    let base_url = stand_in.base_url.clone();
    let server = TestServer::start_with(move |config| use_comfyui(config, base_url)).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started = call(&client, "generate_image", json!({"prompt": "a red fox"})).await;
    let id = job_id(&started);
    assert!(stand_in.saw(SOON, |r| r.path.starts_with("/history/")).await, "never queued");

    let cancelled = call(&client, "cancel_job", json!({"job_id": id})).await;
    assert_eq!(cancelled.is_error, Some(false), "{cancelled:?}");
    let view = wait_until_ended(&client, &id).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    let prompt_id = stand_in.prompt_ids().pop().unwrap();
    let interrupted = stand_in.saw(SOON, |r| r.is("POST", "/interrupt")).await;
    assert!(interrupted, "the cancel never reached ComfyUI: {:?}", stand_in.requests());
    assert_eq!(stand_in.requests_to("POST", "/queue")[0].body, json!({"delete": [prompt_id]}));
    client.cancel().await.unwrap();
    server.stop().await;
}
