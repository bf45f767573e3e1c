//! The ComfyUI provider, built from configuration, against the local stand-in: the workflow it
//! submits, how it follows the history and fetches the image, how it maps each failure onto a
//! `ProviderError`, and how a dropped generation is taken back from ComfyUI's queue.

pub(crate) mod standin;

use std::{path::PathBuf, sync::Arc, time::Duration};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProvidersConfig, SetupError,
    comfyui::{ComfyUiConfig, ComfyUiProvider},
};
use serde_json::{Value, json};

use self::standin::{Reply, StandIn};
use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    jobs,
    standin::png_size,
};
use crate::support::{SOON, call, job_id, modern_client, wait_until_ended};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "comfy-proxy-key-0b6d3f28e1a94c75";

/// ComfyUI in the provider contract. It needs no key, but one set for a proxy in front must
/// stay as secret as any service's.
pub(crate) const ROW: Row = Row {
    name: "comfyui",
    key: KEY,
    key_variable: None,
    configure,
    capped,
    spawn,
    attempts,
    typical_latency: Duration::from_secs(20),
    remote_url: "https://comfy.example.com/proxy",
    can_edit: false,
    caps_first_answer: false,
    connect_names: Some("ComfyUI at "),
    refusal_says: "",
    landscape: (1536, 1024),
    landscape_request,
};

super::contract::configure!(comfyui, poll_interval = Duration::from_millis(10).into());
super::contract::capped!(comfyui, ComfyUiProvider);

/// ComfyUI has no rate limits, quotas or safety system of its own; a key is refused by the
/// proxy in front of it.
fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    let unauthorized = answers.contains(&Answer::Unauthorized);
    let script = answers.into_iter().map(reply).collect::<Option<Vec<_>>>()?;
    Some(Box::pin(async move {
        let stand_in = if unauthorized {
            standin::spawn_behind_proxy(script, "another key").await
        } else {
            standin::spawn(script).await
        };
        Spawned::new(stand_in)
    }))
}

fn reply(answer: Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Image | Answer::Unauthorized => Reply::Image { polls: 2 },
        Answer::ServerError(status) => Reply::Reject { status, body: json!({}) },
        Answer::Hang => Reply::Hang,
        Answer::RateLimited(_) | Answer::QuotaExhausted | Answer::Refused | Answer::Garbage => {
            return None;
        }
    })
}

/// One attempt is one prompt submitted.
fn attempts(stand_in: &Spawned) -> usize {
    stand_in.get::<standin::ComfyUi>().requests_to("POST", "/prompt").len()
}

fn landscape_request(stand_in: &Spawned, _: &Row) {
    let workflow = &stand_in.get::<standin::ComfyUi>().workflows()[0];
    assert_eq!(workflow["6"]["inputs"]["text"], "a red fox");
    assert_eq!(workflow["5"]["inputs"]["width"], 1536);
}

fn config(base_url: &str) -> ComfyUiConfig {
    ComfyUiConfig {
        base_url: base_url.to_owned(),
        poll_interval: Duration::from_millis(5).into(),
        request_timeout: Duration::from_secs(10).into(),
        ..ComfyUiConfig::default()
    }
}

super::contract::built!(comfyui, ComfyUiConfig);

fn request(prompt: &str, width: u32, height: u32, seed: u64) -> ImageRequest {
    ImageRequest { prompt: prompt.to_owned(), width, height, seed }
}

/// Runs one generation that must fail and returns the error with the stand-in.
async fn error_for(
    script: Vec<Reply>,
    config: impl FnOnce(&str) -> ComfyUiConfig,
) -> ProviderError {
    let stand_in = standin::spawn(script).await;
    let result =
        provider(config(&stand_in.base_url)).generate(&request("a fox", 1024, 1024, 7)).await;
    result.expect_err("the provider should fail")
}

fn workflow_file(dir: &tempfile::TempDir, name: &str, workflow: &Value) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(workflow).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn returns_the_saved_image_after_several_empty_history_polls() {
    let stand_in = standin::spawn(vec![Reply::Image { polls: 3 }]).await;
    let image = provider(config(&stand_in.base_url))
        .generate(&request("a lighthouse at dusk", 1536, 1024, 42))
        .await
        .expect("an image");

    assert_eq!(png_size(&image.bytes), (1536, 1024), "drawn at the latent's size");
    assert_eq!(image.model, "sd_xl_base_1.0.safetensors", "the checkpoint that drew");
    let submitted = stand_in.requests_to("POST", "/prompt");
    assert_eq!(submitted.len(), 1);
    let body = &submitted[0].body;
    let prompt_id = stand_in.prompt_ids().pop().unwrap();
    assert_eq!(body["prompt_id"], prompt_id.as_str(), "the id we chose is the one queued");
    assert!(body["client_id"].as_str().is_some_and(|id| id.len() == 36), "{body}");
    let history_path = format!("/history/{prompt_id}");
    assert_eq!(stand_in.requests_to("GET", &history_path).len(), 4, "three empty polls, then done");
    let views = stand_in.requests_to("GET", "/view");
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].params["filename"], "image_00001_.png");
    assert_eq!(views[0].params["subfolder"], "offstage");
    assert_eq!(views[0].params["type"], "output");
    assert!(
        stand_in.requests_to("POST", "/queue").is_empty(),
        "a finished prompt is not taken back"
    );
}

#[tokio::test]
async fn the_built_in_workflow_is_filled_in_with_json_types() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    provider(config(&stand_in.base_url))
        .generate(&request("a red fox", 1024, 1536, 987_654_321))
        .await
        .expect("an image");
    let workflow = &stand_in.workflows()[0];
    assert_eq!(workflow.as_object().unwrap().len(), 7);
    assert_eq!(workflow["4"]["inputs"]["ckpt_name"], "sd_xl_base_1.0.safetensors");
    assert_eq!(workflow["6"]["inputs"]["text"], "a red fox");
    assert_eq!(workflow["7"]["inputs"]["text"], "blurry, low quality, watermark, text");
    assert_eq!(workflow["5"]["inputs"], json!({"width": 1024, "height": 1536, "batch_size": 1}));
    assert_eq!(workflow["3"]["inputs"]["seed"], json!(987_654_321u64), "a number, not a string");
    assert_eq!(workflow["3"]["inputs"]["steps"], 25);
}

#[tokio::test]
async fn hostile_prompts_arrive_verbatim() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let hostile =
        "a \"quoted\" fox\"}, \"9\": {\"class_type\": \"Evil\"} {{seed}} {{width}} \\ \n ünïcode {";
    provider(config(&stand_in.base_url))
        .generate(&request(hostile, 1024, 1024, 5))
        .await
        .expect("an image");
    let workflow = &stand_in.workflows()[0];
    assert_eq!(workflow["6"]["inputs"]["text"], hostile);
    assert_eq!(workflow["9"]["class_type"], "SaveImage", "the workflow's structure is intact");
    assert_eq!(workflow.as_object().unwrap().len(), 7);
    assert_eq!(workflow["3"]["inputs"]["seed"], 5);
}

#[tokio::test]
async fn seed_zero_draws_a_fresh_random_seed_each_time() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let provider = provider(config(&stand_in.base_url));
    for _ in 0..2 {
        provider.generate(&request("a fox", 1024, 1024, 0)).await.expect("an image");
    }
    let seeds: Vec<u64> =
        stand_in.workflows().iter().map(|w| w["3"]["inputs"]["seed"].as_u64().unwrap()).collect();
    assert!(seeds.iter().all(|&seed| seed != 0), "{seeds:?}");
    assert_ne!(seeds[0], seeds[1], "seed 0 means any picture, not always the same one");
}

#[tokio::test]
async fn a_custom_workflow_file_is_filled_in_and_its_image_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let custom = json!({
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-schnell.safetensors"}},
        "11": {"class_type": "CLIPTextEncode",
               "inputs": {"text": "photo of {{prompt}}, film grain", "clip": ["10", 1]}},
        "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["10", 1]}},
        "13": {"class_type": "EmptyLatentImage",
               "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1}},
        "14": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 4, "cfg": 1.0,
               "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0, "model": ["10", 0],
               "positive": ["11", 0], "negative": ["12", 0], "latent_image": ["13", 0]}},
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["10", 2]}},
        "16": {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}},
        "17": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["15", 0]}}
    });
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let config = ComfyUiConfig {
        workflow: Some(workflow_file(&dir, "flux.json", &custom)),
        ..config(&stand_in.base_url)
    };
    let image =
        provider(config).generate(&request("a {{seed}} fox", 1536, 1024, 11)).await.unwrap();
    assert_eq!(png_size(&image.bytes), (1536, 1024));
    assert_eq!(image.model, "comfyui:flux.json", "no {{checkpoint}}: the workflow names the model");
    let workflow = &stand_in.workflows()[0];
    assert_eq!(workflow["11"]["inputs"]["text"], "photo of a {{seed}} fox, film grain");
    assert_eq!(workflow["13"]["inputs"]["width"], 1536);
    assert_eq!(workflow["14"]["inputs"]["seed"], 11);
    assert_eq!(workflow["10"], custom["10"], "everything else is left as it was");
    let views = stand_in.requests_to("GET", "/view");
    assert_eq!(views[0].params["type"], "output", "the saved image, not the preview");
    assert_eq!(views[0].params["filename"], "flux_00002_.png");
}

#[tokio::test]
async fn a_missing_checkpoint_is_a_bad_request_naming_the_node() {
    let error = error_for(vec![Reply::image()], |base| ComfyUiConfig {
        checkpoint: "dreamshaper_8.safetensors".to_owned(),
        ..config(base)
    })
    .await;
    let ProviderError::BadRequest(message) = &error else { panic!("{error:?}") };
    assert!(message.starts_with("CheckpointLoaderSimple (node 4): Value not in list"), "{message}");
    assert!(message.contains("dreamshaper_8.safetensors"), "{message}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_workflow_comfyui_cannot_run_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let no_output = json!({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}",
                           "clip": ["4", 1]}}});
    let path = workflow_file(&dir, "no_output.json", &no_output);
    let error = error_for(vec![Reply::image()], |base| ComfyUiConfig {
        workflow: Some(path),
        ..config(base)
    })
    .await;
    assert!(
        matches!(&error, ProviderError::BadRequest(m) if m == "Prompt has no outputs"),
        "{error:?}"
    );
    let missing_node =
        json!({"6": {"class_type": "FluxGuidanceDeluxe", "inputs": {"text": "{{prompt}}"}}});
    let path = workflow_file(&dir, "custom_node.json", &missing_node);
    let error = error_for(vec![Reply::image()], |base| ComfyUiConfig {
        workflow: Some(path),
        ..config(base)
    })
    .await;
    assert!(
        matches!(&error, ProviderError::BadRequest(m) if m.contains("FluxGuidanceDeluxe") && m.contains("not found")),
        "{error:?}"
    );
}

#[tokio::test]
async fn running_out_of_gpu_memory_is_retryable() {
    let error = error_for(vec![Reply::out_of_memory()], config).await;
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_node_exception_is_an_invalid_response_naming_the_node() {
    let script = vec![Reply::ExecutionError {
        exception_type: "builtins.ValueError",
        message: "bad latent",
    }];
    let error = error_for(script, config).await;
    let ProviderError::InvalidResponse(message) = &error else { panic!("{error:?}") };
    assert_eq!(message, "ComfyUI failed at node 3 (KSampler): ValueError: bad latent");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_run_that_saves_nothing_is_an_invalid_response() {
    let error = error_for(vec![Reply::NoImage], config).await;
    assert!(
        matches!(&error, ProviderError::InvalidResponse(m) if m.contains("SaveImage")),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_and_proxy_statuses_map_onto_error_classes() {
    let script = vec![
        Reply::Reject { status: 502, body: json!({"error": "bad gateway"}) },
        Reply::Reject { status: 429, body: json!({"error": "slow down"}) },
        Reply::Reject { status: 404, body: json!({}) },
    ];
    let stand_in = standin::spawn(script).await;
    let provider = provider(config(&stand_in.base_url));
    let mut errors = Vec::new();
    for _ in 0..3 {
        errors.push(provider.generate(&request("a fox", 1024, 1024, 1)).await.unwrap_err());
    }
    assert!(matches!(errors[0], ProviderError::Unavailable { status: 502, .. }), "{:?}", errors[0]);
    assert!(matches!(errors[1], ProviderError::RateLimited { .. }), "{:?}", errors[1]);
    assert!(
        matches!(&errors[2], ProviderError::BadRequest(m) if m == "HTTP 404"),
        "{:?}",
        errors[2]
    );
    assert!(errors[..2].iter().all(ProviderError::is_retryable));
}

#[tokio::test]
async fn the_proxy_key_is_sent_as_a_bearer_token_and_never_shown() {
    let stand_in = standin::spawn_behind_proxy(vec![Reply::image()], KEY).await;
    let with_key = ComfyUiConfig { api_key: Some(KEY.into()), ..config(&stand_in.base_url) };
    let provider = provider(with_key);
    provider.generate(&request("a fox", 1024, 1024, 1)).await.expect("an image");
    let bearer = format!("Bearer {KEY}");
    assert!(stand_in.requests().iter().all(|r| r.header("authorization") == Some(bearer.as_str())));
    let shown = format!("{provider:?}");
    assert!(!shown.contains(KEY) && shown.contains("<redacted>"), "{shown}");

    let without = self::provider(config(&stand_in.base_url));
    let error = without.generate(&request("a fox", 1024, 1024, 1)).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unauthorized), "{error:?}");
}

/// Starts a generation, lets it reach its first history poll, and drops it there.
async fn drop_after_first_poll(stand_in: &StandIn) -> String {
    let provider = provider(config(&stand_in.base_url));
    let generation = tokio::spawn(async move {
        let _ = provider.generate(&request("a fox", 1024, 1024, 1)).await;
    });
    assert!(stand_in.saw(SOON, |r| r.path.starts_with("/history/")).await, "no history poll");
    generation.abort();
    let _ = generation.await;
    stand_in.prompt_ids().pop().expect("a queued prompt")
}

#[tokio::test]
async fn dropping_a_running_generation_deletes_and_interrupts_it() {
    let stand_in = standin::spawn(vec![Reply::Running]).await;
    let prompt_id = drop_after_first_poll(&stand_in).await;
    let interrupted = stand_in.saw(SOON, |r| r.is("POST", "/interrupt")).await;
    assert!(interrupted, "the interrupt never reached ComfyUI: {:?}", stand_in.requests());
    let deletes = stand_in.requests_to("POST", "/queue");
    assert_eq!(deletes[0].body, json!({"delete": [prompt_id]}));
    let interrupts = stand_in.requests_to("POST", "/interrupt");
    assert_eq!(interrupts[0].body, json!({"prompt_id": prompt_id}), "only ours is interrupted");
    let history = reqwest::get(format!("{}/history/{prompt_id}", stand_in.base_url)).await.unwrap();
    let history: Value = history.json().await.unwrap();
    assert_eq!(history[&prompt_id]["status"]["messages"][0][0], "execution_interrupted");
}

#[tokio::test]
async fn dropping_a_queued_generation_deletes_it_and_interrupts_nothing() {
    let stand_in = standin::spawn(vec![Reply::Queued]).await;
    let prompt_id = drop_after_first_poll(&stand_in).await;
    // The queue is read after the delete, to decide whether to interrupt.
    assert!(stand_in.saw(SOON, |r| r.is("GET", "/queue")).await, "{:?}", stand_in.requests());
    let deletes = stand_in.requests_to("POST", "/queue");
    assert_eq!(deletes[0].body, json!({"delete": [prompt_id]}));
    let listing: Value =
        reqwest::get(format!("{}/queue", stand_in.base_url)).await.unwrap().json().await.unwrap();
    assert_eq!(listing["queue_pending"], json!([]), "the prompt left the queue");
    // Settle briefly: an interrupt would follow the queue read at once.
    let interrupted =
        stand_in.saw(Duration::from_millis(200), |r| r.is("POST", "/interrupt")).await;
    assert!(!interrupted, "a prompt that is not running must not be interrupted");
}

#[tokio::test]
async fn loopback_is_local_and_anything_else_remote() {
    for (base_url, remote) in [
        ("http://127.0.0.1:8188", false),
        ("http://localhost:8188", false),
        ("http://[::1]:8188", false),
        ("http://192.168.1.20:8188", true),
        ("https://comfy.example.com/proxy", true),
    ] {
        let provider = provider(config(base_url));
        assert_eq!(provider.is_remote(), remote, "{base_url}");
        assert_eq!(provider.name(), "comfyui");
    }
    assert_eq!(
        provider(config("http://127.0.0.1:8188")).typical_latency(),
        Duration::from_secs(20)
    );
}

#[test]
fn bad_workflows_fail_to_build() {
    let missing =
        ComfyUiConfig { workflow: Some("/nonexistent/flow.json".into()), ..config("http://x") };
    let Err(error) = build(missing) else { panic!("built with a missing workflow") };
    assert!(error.to_string().contains("/nonexistent/flow.json"), "{error}");
    let no_checkpoint = ComfyUiConfig { checkpoint: " ".to_owned(), ..config("http://x") };
    assert!(matches!(build(no_checkpoint), Err(SetupError::Invalid { field: "workflow", .. })));
}

#[tokio::test]
async fn stand_in_rejects_what_comfyui_rejects() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let http = reqwest::Client::new();
    let post = |body: Value| http.post(format!("{}/prompt", stand_in.base_url)).json(&body).send();
    let answer = |response: reqwest::Response| async move {
        (response.status().as_u16(), response.json::<Value>().await.unwrap_or_default())
    };

    let (status, body) = answer(post(json!({"client_id": "x"})).await.unwrap()).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("no_prompt")));
    let unknown = json!({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}});
    let (status, body) = answer(post(unknown).await.unwrap()).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("missing_node_type")));
    let bad = json!({"prompt": {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.ckpt"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "wide", "height": 8, "batch_size": 1}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}}
    }});
    let (status, body) = answer(post(bad).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(body["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list");
    assert_eq!(body["node_errors"]["4"]["class_type"], "CheckpointLoaderSimple");
    let latent: Vec<&str> = body["node_errors"]["5"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(latent, ["invalid_input_type", "value_smaller_than_min"]);
    assert_eq!(body["node_errors"]["9"]["errors"][0]["type"], "required_input_missing");

    let view = |query: &str| http.get(format!("{}/view?{query}", stand_in.base_url)).send();
    assert_eq!(view("filename=../secret.png&type=output").await.unwrap().status(), 400);
    assert_eq!(view("filename=x.png&type=elsewhere").await.unwrap().status(), 400);
    assert_eq!(view("filename=never_saved.png&type=output").await.unwrap().status(), 404);
    let history = http.get(format!("{}/history/unknown", stand_in.base_url)).send().await.unwrap();
    assert_eq!(history.json::<Value>().await.unwrap(), json!({}));
    assert!(stand_in.prompt_ids().is_empty(), "nothing invalid was queued");
}

#[tokio::test]
async fn a_missing_checkpoint_fails_the_job_at_once_with_a_spoken_line() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let (view, _) = jobs::run_at(&ROW, &stand_in.base_url, "landscape", |config| {
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
    let stand_in = standin::spawn(vec![Reply::out_of_memory(), Reply::image()]).await;
    let (view, pixels) = jobs::run_at(&ROW, &stand_in.base_url, "landscape", |_| {}).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1536, 1024)));
    assert_eq!(stand_in.requests_to("POST", "/prompt").len(), 2);
}

#[tokio::test]
async fn a_job_that_outlives_its_timeout_fails_and_its_prompt_is_taken_back() {
    let stand_in = standin::spawn(vec![Reply::Running]).await;
    let (view, _) = jobs::run_at(&ROW, &stand_in.base_url, "landscape", |config| {
        config.jobs.timeout = Duration::from_millis(700).into();
    })
    .await;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(view["error"].as_str().unwrap().contains("took longer"), "{view}");
    let interrupted = stand_in.saw(SOON, |r| r.is("POST", "/interrupt")).await;
    assert!(interrupted, "the timed-out prompt kept the GPU: {:?}", stand_in.requests());
}

#[tokio::test]
async fn cancelling_the_job_takes_the_prompt_back_from_comfyui() {
    let stand_in = standin::spawn(vec![Reply::Running]).await;
    let server = jobs::server(&ROW, &stand_in.base_url, |_| {}).await;
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
