//! The Replicate provider, built from configuration, against the local stand-in: the requests it
//! sends (create, polls, cancel, download), how it maps each documented answer onto a
//! `ProviderError`, which URLs it refuses to follow, and that a dropped call cancels its
//! prediction.

pub(crate) mod standin;

use std::{sync::Arc, time::Duration};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProviderSpec, ProvidersConfig, SetupError,
    replicate::{ReplicateConfig, ReplicateProvider},
};
use serde_json::json;

use self::standin::{Kind, MODEL, Plan, Reply, StandIn, VERSION, prediction_id};
use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    jobs,
    openai::leak,
    standin::png_size,
};
use crate::support::{call, modern_client, structured, wait_until_ended};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "r8_offstage-test-1f6b3d8e2a9c4075";

/// Replicate in the provider contract.
pub(crate) const ROW: Row = Row {
    name: "replicate",
    key: KEY,
    key_variable: Some("REPLICATE_API_TOKEN"),
    configure,
    capped,
    spawn,
    attempts,
    typical_latency: Duration::from_secs(4),
    remote_url: "https://api.replicate.com",
    can_edit: false,
    caps_first_answer: false,
    connect_names: None,
    refusal_says: "NSFW content",
    landscape: (1216, 832),
    landscape_request,
};

super::contract::configure!(replicate, poll_interval = Duration::from_millis(100).into());
super::contract::capped!(replicate, ReplicateProvider);

fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    super::contract::spawning(answers, reply, standin::spawn)
}

fn reply(answer: Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Image => Reply::image(),
        Answer::ServerError(status) => Reply::server_error(status),
        Answer::Hang => Reply::Hang,
        Answer::RateLimited(seconds) => Reply::throttled(Some(leak(seconds))),
        Answer::Unauthorized => Reply::unauthorized(),
        Answer::QuotaExhausted => Reply::payment_required(),
        Answer::Refused => Reply::nsfw(),
        Answer::Garbage => return None,
    })
}

/// One attempt is one prediction created (or refused at creation).
fn attempts(stand_in: &Spawned) -> usize {
    stand_in.get::<standin::Replicate>().count(Kind::Create)
}

fn landscape_request(stand_in: &Spawned, row: &Row) {
    let stand_in = stand_in.get::<standin::Replicate>();
    let create = &stand_in.of(Kind::Create)[0];
    assert_eq!(create.path, format!("/v1/models/{MODEL}/predictions"));
    assert_eq!(create.body["input"]["aspect_ratio"], "3:2");
    assert_eq!(create.body["input"]["prompt"], "a red fox");
    assert_eq!(create.header("authorization"), Some(format!("Bearer {}", row.key).as_str()));
    assert_eq!(stand_in.count(Kind::Poll), 2, "starting → processing → succeeded");
    assert_eq!(stand_in.of(Kind::Download)[0].header("authorization"), None);
    assert_eq!(stand_in.count(Kind::Cancel), 0);
}

fn config(base_url: &str) -> ReplicateConfig {
    ReplicateConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        poll_interval: Duration::from_millis(100).into(),
        request_timeout: Duration::from_secs(10).into(),
        ..ReplicateConfig::default()
    }
}

super::contract::built!(replicate, ReplicateConfig);

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 0 }
}

/// Runs one generation against a fresh stand-in; the stand-in is returned to inspect.
async fn run(script: Vec<Reply>) -> (Result<Vec<u8>, ProviderError>, StandIn) {
    let stand_in = standin::spawn(script).await;
    let result = provider(config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
    (result.map(|image| image.bytes.to_vec()), stand_in)
}

/// Runs one generation that must fail, and checks the failure does not reveal the key.
async fn error_for(script: Vec<Reply>) -> (ProviderError, StandIn) {
    let (result, stand_in) = run(script).await;
    let error = result.expect_err("the provider should fail");
    ROW.assert_no_key(&error);
    (error, stand_in)
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

#[tokio::test]
async fn polls_through_starting_and_processing_and_returns_the_png() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let image = provider(config(&stand_in.base_url))
        .generate(&request(1536, 1024))
        .await
        .expect("an image");
    assert_eq!(image.model, MODEL);
    assert_eq!(png_size(&image.bytes), (1216, 832), "FLUX's size for 3:2");

    let kinds: Vec<Kind> = stand_in.requests().iter().map(|request| request.kind).collect();
    assert_eq!(
        kinds,
        [Kind::Create, Kind::Poll, Kind::Poll, Kind::Download],
        "created starting, polled processing then succeeded, downloaded; never cancelled"
    );
    let create = &stand_in.of(Kind::Create)[0];
    assert_eq!(create.path, format!("/v1/models/{MODEL}/predictions"));
    assert_eq!(create.header("authorization"), Some(bearer().as_str()));
    assert!(create.header("content-type").is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(create.header("cancel-after"), Some("120s"), "the default deadline");
    assert_eq!(
        create.body,
        json!({"input": {
            "prompt": "a lighthouse at dusk",
            "aspect_ratio": "3:2",
            "output_format": "png",
        }}),
        "no seed when the request leaves it to chance, no version on the model route"
    );
    let id = prediction_id(1);
    for poll in stand_in.of(Kind::Poll) {
        assert_eq!(poll.path, format!("/v1/predictions/{id}"));
        assert_eq!(poll.header("authorization"), Some(bearer().as_str()));
    }
    let download = &stand_in.of(Kind::Download)[0];
    assert_eq!(download.path, format!("/files/{id}/out-0.png"));
    assert_eq!(download.header("authorization"), None, "the token never goes to file hosting");
}

#[tokio::test]
async fn a_pinned_version_is_created_through_predictions_with_the_seed() {
    let plan = Plan { single_output: true, starting: 0, processing: 3, ..Plan::default() };
    let stand_in = standin::spawn(vec![Reply::Prediction(plan)]).await;
    let config = ReplicateConfig {
        model: format!("{MODEL}:{VERSION}"),
        deadline: Duration::from_millis(90_500).into(),
        ..config(&format!("{}/", stand_in.base_url))
    };
    let request = ImageRequest { seed: 42, ..request(1080, 1920) };
    let image = provider(config).generate(&request).await.expect("an image");
    assert_eq!(image.model, MODEL);
    assert_eq!(png_size(&image.bytes), (768, 1344), "FLUX's size for 9:16, one URL as output");
    assert_eq!(stand_in.count(Kind::Poll), 3);
    let create = &stand_in.of(Kind::Create)[0];
    assert_eq!(create.path, "/v1/predictions");
    assert_eq!(create.header("cancel-after"), Some("91s"), "rounded up, never early");
    assert_eq!(create.body["version"], VERSION);
    assert_eq!(create.body["input"]["seed"], 42);
    assert_eq!(create.body["input"]["aspect_ratio"], "9:16");
}

#[tokio::test]
async fn a_prediction_that_ended_at_creation_is_not_polled() {
    // Nothing needs following, so even URLs elsewhere do no harm.
    let plan = Plan { starting: 0, processing: 0, foreign_urls: true, ..Plan::default() };
    let (result, stand_in) = run(vec![Reply::Prediction(plan)]).await;
    assert_eq!(png_size(&result.expect("an image")), (1024, 1024));
    assert_eq!(stand_in.count(Kind::Poll), 0);
    assert_eq!(stand_in.count(Kind::Cancel), 0);
}

#[tokio::test]
async fn an_unknown_model_is_a_bad_request() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let config =
        ReplicateConfig { model: "someone/no-such-model".to_owned(), ..config(&stand_in.base_url) };
    let error = provider(config).generate(&request(1024, 1024)).await.expect_err("no such model");
    assert!(
        matches!(&error, ProviderError::BadRequest(m) if m.contains("could not be found")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(stand_in.count(Kind::Cancel), 0, "nothing was created, so nothing to cancel");
}

#[tokio::test]
async fn rejected_input_is_a_bad_request_naming_the_field() {
    let reply = Reply::invalid("input.prompt", "prompt is too long");
    let (error, _) = error_for(vec![reply]).await;
    let ProviderError::BadRequest(message) = &error else { panic!("{error:?}") };
    assert!(message.contains("input.prompt: prompt is too long"), "{message}");
}

#[tokio::test]
async fn an_nsfw_failure_is_neither_cancelled_nor_downloaded() {
    let (error, stand_in) = error_for(vec![Reply::nsfw()]).await;
    assert!(matches!(&error, ProviderError::Refused { .. }), "{error:?}");
    assert_eq!(stand_in.count(Kind::Cancel), 0, "an ended prediction is not cancelled");
    assert_eq!(stand_in.count(Kind::Download), 0);
}

#[tokio::test]
async fn other_failures_are_final_unless_replicate_says_to_retry() {
    let (error, _) =
        error_for(vec![Reply::failed("CUDA error: device-side assert triggered")]).await;
    assert!(
        matches!(&error, ProviderError::InvalidResponse(m) if m.contains("device-side assert")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let (error, _) =
        error_for(vec![Reply::failed("Prediction interrupted; please retry (code: PA)")]).await;
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_prediction_canceled_elsewhere_says_so() {
    let (error, stand_in) = error_for(vec![Reply::canceled_elsewhere()]).await;
    assert!(
        matches!(&error, ProviderError::InvalidResponse(m) if m.contains("canceled at Replicate")),
        "{error:?}"
    );
    assert!(!error.is_retryable(), "someone stopped it on purpose");
    assert_eq!(stand_in.count(Kind::Cancel), 0);
}

#[tokio::test]
async fn throttled_and_failing_polls_are_waited_out() {
    let plan = Plan {
        poll_errors: vec![(429, Some("0")), (502, None), (429, None), (503, None)],
        ..Plan::default()
    };
    let (result, stand_in) = run(vec![Reply::Prediction(plan)]).await;
    let image = result.expect("the prediction ran on while polls failed");
    assert_eq!(png_size(&image), (1024, 1024));
    assert_eq!(stand_in.count(Kind::Poll), 6, "four failed polls, then processing, succeeded");
    assert_eq!(stand_in.count(Kind::Create), 1, "never paid for twice");
}

#[tokio::test]
async fn polls_failing_again_and_again_give_up_and_cancel() {
    let plan = Plan { poll_errors: vec![(500, None); 3], ..Plan::default() };
    let (error, stand_in) = error_for(vec![Reply::Prediction(plan)]).await;
    assert!(matches!(error, ProviderError::Unavailable { status: 500, .. }), "{error:?}");
    assert_eq!(stand_in.count(Kind::Poll), 3);
    stand_in.wait_for(Kind::Cancel, 1).await;
}

#[tokio::test]
async fn a_poll_url_on_another_origin_is_never_followed() {
    let plan = Plan { foreign_urls: true, ..Plan::default() };
    let (error, stand_in) = error_for(vec![Reply::Prediction(plan)]).await;
    assert!(
        matches!(&error, ProviderError::InvalidResponse(m) if m.contains("origin")),
        "{error:?}"
    );
    assert_eq!(stand_in.count(Kind::Poll), 0);
    // The prediction is still stopped, through the documented URL on the API's own origin.
    stand_in.wait_for(Kind::Cancel, 1).await;
    let cancel = &stand_in.of(Kind::Cancel)[0];
    assert_eq!(cancel.path, format!("/v1/predictions/{}/cancel", prediction_id(1)));
    assert_eq!(cancel.header("authorization"), Some(bearer().as_str()));
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
}

#[tokio::test]
async fn an_oversized_output_file_is_refused() {
    let plan = Plan { file_bytes: Some(64 * 1024), ..Plan::default() };
    let stand_in = standin::spawn(vec![Reply::Prediction(plan)]).await;
    let provider = ReplicateProvider::build(&config(&stand_in.base_url), &Context::default())
        .expect("a valid configuration")
        .with_body_limit(16 * 1024);
    let error = provider.generate(&request(1024, 1024)).await.expect_err("over the cap");
    assert!(
        matches!(&error, ProviderError::InvalidResponse(m) if m.contains("exceeds 16384 bytes")),
        "{error:?}"
    );
    assert_eq!(stand_in.count(Kind::Download), 1);
}

#[tokio::test]
async fn a_prediction_past_its_deadline_times_out_and_is_cancelled() {
    let stand_in = standin::spawn(vec![Reply::stalled()]).await;
    let config =
        ReplicateConfig { deadline: Duration::from_secs(1).into(), ..config(&stand_in.base_url) };
    let error = provider(config).generate(&request(1024, 1024)).await.expect_err("a timeout");
    assert!(matches!(error, ProviderError::Timeout), "{error:?}");
    assert!(stand_in.count(Kind::Poll) >= 1, "it polled before giving up");
    assert_eq!(stand_in.of(Kind::Create)[0].header("cancel-after"), Some("1s"));
    stand_in.wait_for(Kind::Cancel, 1).await;
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
}

#[tokio::test]
async fn dropping_the_call_cancels_the_prediction() {
    let stand_in = standin::spawn(vec![Reply::stalled()]).await;
    let provider = provider(config(&stand_in.base_url));
    let call = tokio::spawn(async move { provider.generate(&request(1024, 1024)).await });
    stand_in.wait_for(Kind::Poll, 2).await;
    assert_eq!(stand_in.count(Kind::Cancel), 0, "running normally until dropped");
    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());
    stand_in.wait_for(Kind::Cancel, 1).await;
    let cancel = &stand_in.of(Kind::Cancel)[0];
    assert_eq!(cancel.path, format!("/v1/predictions/{}/cancel", prediction_id(1)));
    assert_eq!(cancel.header("authorization"), Some(bearer().as_str()));
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
}

#[test]
fn bad_models_fail_to_build() {
    for model in ["", "flux-schnell", "a/b/c", "owner/name:", "owner/../x"] {
        let result = build(ReplicateConfig { model: model.to_owned(), ..config("http://x") });
        assert!(matches!(result, Err(SetupError::Invalid { field: "model", .. })), "{model}");
    }
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    let stand_in = standin::spawn(vec![Reply::image()]).await;
    let http = reqwest::Client::new();
    let create = format!("{}/v1/models/{MODEL}/predictions", stand_in.base_url);
    let post = |url: &str, token: &str, body: serde_json::Value| {
        http.post(url).header("authorization", format!("Bearer {token}")).json(&body).send()
    };
    let problem = |response: reqwest::Response| async move {
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
    };

    let (status, body) =
        problem(post(&create, "", json!({"input": {"prompt": "x"}})).await.unwrap()).await;
    assert_eq!((status, body["status"].as_u64()), (401, Some(401)));
    assert_eq!(body["title"], "Unauthenticated");
    let (status, body) = problem(post(&create, KEY, json!({"inptu": {}})).await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("inptu is not allowed"), "{body}");
    let (status, body) = problem(post(&create, KEY, json!({})).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["invalid_fields"][0]["description"], "input is required");
    let odd_ratio = json!({"input": {"prompt": "x", "aspect_ratio": "7:5"}});
    let (status, body) = problem(post(&create, KEY, odd_ratio).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["invalid_fields"][0]["field"], "input.aspect_ratio");
    let gif = json!({"input": {"prompt": "x", "output_format": "gif"}});
    assert_eq!(post(&create, KEY, gif).await.unwrap().status(), 422);
    let unknown = format!("{}/v1/models/someone/nothing/predictions", stand_in.base_url);
    assert_eq!(post(&unknown, KEY, json!({"input": {"prompt": "x"}})).await.unwrap().status(), 404);
    let versions = format!("{}/v1/predictions", stand_in.base_url);
    let wrong = json!({"version": "0123", "input": {"prompt": "x"}});
    assert_eq!(post(&versions, KEY, wrong).await.unwrap().status(), 422);
    let bad_deadline = http
        .post(&create)
        .header("authorization", format!("Bearer {KEY}"))
        .header("cancel-after", "soon")
        .json(&json!({"input": {"prompt": "x"}}));
    assert_eq!(bad_deadline.send().await.unwrap().status(), 400);

    let created = post(&create, KEY, json!({"input": {"prompt": "x", "output_format": "png"}}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let prediction: serde_json::Value = created.json().await.unwrap();
    assert_eq!(prediction["status"], "starting");
    assert_eq!(prediction["output"], serde_json::Value::Null);
    let get = prediction["urls"]["get"].as_str().unwrap();
    assert!(get.starts_with(&stand_in.base_url), "{get}");
    let unauthenticated = http.get(get).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let poll = |url: String| http.get(url).header("authorization", format!("Bearer {KEY}")).send();
    let missing = poll(format!("{}/v1/predictions/nope", stand_in.base_url)).await.unwrap();
    assert_eq!(missing.status(), 404);
    let processing: serde_json::Value = poll(get.to_owned()).await.unwrap().json().await.unwrap();
    assert_eq!(processing["status"], "processing");
    let done: serde_json::Value = poll(get.to_owned()).await.unwrap().json().await.unwrap();
    assert_eq!(done["status"], "succeeded");
    let file = http.get(done["output"][0].as_str().unwrap()).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(png_size(&file.bytes().await.unwrap()), (1024, 1024));
    // Cancelling an ended prediction leaves it as it was.
    let cancel = prediction["urls"]["cancel"].as_str().unwrap();
    let after: serde_json::Value =
        post(cancel, KEY, json!(null)).await.unwrap().json().await.unwrap();
    assert_eq!(after["status"], "succeeded");
}

#[tokio::test]
async fn an_interrupted_prediction_is_retried_with_a_new_one() {
    let script =
        vec![Reply::failed("Prediction interrupted; please retry (code: PA)"), Reply::image()];
    let stand_in = standin::spawn(script).await;
    let (view, pixels) = jobs::run_at(&ROW, &stand_in.base_url, "square", |_| {}).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((1024, 1024)));
    assert_eq!(stand_in.count(Kind::Create), 2);
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("failed"));
    assert_eq!(stand_in.status_of(&prediction_id(2)).as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn cancelling_the_job_cancels_the_prediction() {
    let stand_in = standin::spawn(vec![Reply::stalled()]).await;
    let server = jobs::server(&ROW, &stand_in.base_url, |_| {}).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = jobs::start(&client, "square").await;
    stand_in.wait_for(Kind::Poll, 1).await;

    let cancelled = call(&client, "cancel_job", json!({"job_id": job})).await;
    assert_eq!(structured(&cancelled)["status"], "cancelled", "{cancelled:?}");
    stand_in.wait_for(Kind::Cancel, 1).await;
    let cancel = &stand_in.of(Kind::Cancel)[0];
    assert_eq!(cancel.path, format!("/v1/predictions/{}/cancel", prediction_id(1)));
    assert_eq!(cancel.header("authorization"), Some(bearer().as_str()));
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_job_out_of_time_fails_and_cancels_the_prediction() {
    let stand_in = standin::spawn(vec![Reply::stalled()]).await;
    let server = jobs::server(&ROW, &stand_in.base_url, |config| {
        config.jobs.timeout = Duration::from_millis(600).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let view = wait_until_ended(&client, &jobs::start(&client, "square").await).await;
    assert_eq!(view["status"], "failed", "{view}");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("took longer"), "{error}");
    stand_in.wait_for(Kind::Cancel, 1).await;
    assert_eq!(stand_in.status_of(&prediction_id(1)).as_deref(), Some("canceled"));
    client.cancel().await.unwrap();
    server.stop().await;
}
