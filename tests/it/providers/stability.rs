//! The Stability provider, built from configuration, against the local stand-in: the multipart
//! request it sends, and how it maps each documented answer (or non-answer) onto a
//! `ProviderError`. Edits have a file of their own.

mod edits;
pub(crate) mod standin;

use std::{sync::Arc, time::Duration};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProvidersConfig, SetupError,
    stability::{StabilityConfig, StabilityProvider},
};

use self::standin::Reply;
use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    jobs,
    openai::leak,
    standin::{Scripted, png_size},
};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "sk-offstage-test-5a8e2c91d7f04b36";

/// Stability in the provider contract.
pub(crate) const ROW: Row = Row {
    name: "stability",
    key: KEY,
    key_variable: Some("STABILITY_API_KEY"),
    configure,
    capped,
    spawn,
    attempts: super::contract::scripted_attempts::<Reply>,
    typical_latency: Duration::from_secs(10),
    remote_url: "https://api.stability.ai",
    can_edit: true,
    // A 200 that is not an image is refused before its body is read.
    caps_first_answer: false,
    connect_names: None,
    refusal_says: "content moderation",
    landscape: (1216, 832),
    landscape_request,
};

super::contract::configure!(stability);
super::contract::capped!(stability, StabilityProvider);

fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    super::contract::spawning(answers, reply, standin::spawn)
}

fn reply(answer: Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Image => Reply::Image,
        Answer::ServerError(status) => Reply::server_error(status),
        Answer::Hang => Reply::Hang,
        Answer::RateLimited(seconds) => Reply::rate_limited(Some(leak(seconds))),
        Answer::Unauthorized => Reply::unauthorized(),
        Answer::QuotaExhausted => Reply::payment_required(),
        Answer::Refused => Reply::content_moderation(),
        Answer::Garbage => return None,
    })
}

fn landscape_request(stand_in: &Spawned, row: &Row) {
    let request = &stand_in.get::<Scripted<Reply>>().requests()[0];
    assert_eq!(request.field("aspect_ratio"), Some("3:2"));
    assert_eq!(request.field("prompt"), Some("a red fox"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {}", row.key).as_str()));
}

fn config(base_url: &str) -> StabilityConfig {
    StabilityConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10).into(),
        ..StabilityConfig::default()
    }
}

super::contract::built!(stability, StabilityConfig);

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 0 }
}

/// Runs one generation that must fail, and checks the failure does not reveal the key.
async fn error_for(script: Vec<Reply>) -> ProviderError {
    let stand_in = standin::spawn(script).await;
    let result = provider(config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
    let error = result.expect_err("the provider should fail");
    assert_no_key(&error);
    error
}

fn assert_no_key(error: &ProviderError) {
    ROW.assert_no_key(error);
}

#[tokio::test]
async fn returns_the_png_and_sends_the_documented_request() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let image = provider(config(&stand_in.base_url))
        .generate(&request(1024, 1536))
        .await
        .expect("an image");

    assert_eq!(image.model, "stable-image-core");
    assert_eq!(png_size(&image.bytes), (832, 1216), "Core's size for 2:3");

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v2beta/stable-image/generate/core");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("accept"), Some("image/*"));
    assert!(sent.header("content-type").is_some_and(|v| v.starts_with("multipart/form-data")));
    let fields: Vec<(&str, &str)> =
        sent.fields.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    assert_eq!(
        fields,
        [("prompt", "a lighthouse at dusk"), ("aspect_ratio", "2:3"), ("output_format", "png")],
        "no seed when the request leaves it to chance, no model for core"
    );
}

#[tokio::test]
async fn sd3_models_go_to_the_sd3_endpoint_with_a_model_field_and_the_seed() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let config = StabilityConfig {
        model: "sd3.5-large-turbo".to_owned(),
        ..config(&format!("{}/", stand_in.base_url))
    };
    let request = ImageRequest { seed: 42, ..request(1920, 1080) };
    let image = provider(config).generate(&request).await.expect("an image");
    assert_eq!(image.model, "sd3.5-large-turbo");
    assert_eq!(png_size(&image.bytes), (1344, 768));
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.path, "/v2beta/stable-image/generate/sd3");
    assert_eq!(sent.field("model"), Some("sd3.5-large-turbo"));
    assert_eq!(sent.field("seed"), Some("42"));
    assert_eq!(sent.field("aspect_ratio"), Some("16:9"));
}

#[tokio::test]
async fn ultra_goes_to_the_ultra_endpoint() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let config = StabilityConfig { model: "ultra".to_owned(), ..config(&stand_in.base_url) };
    let image = provider(config).generate(&request(1024, 1024)).await.expect("an image");
    assert_eq!(image.model, "stable-image-ultra");
    assert_eq!(stand_in.requests()[0].path, "/v2beta/stable-image/generate/ultra");
}

#[tokio::test]
async fn bad_request_is_a_bad_request_with_the_errors_joined() {
    let error = error_for(vec![Reply::bad_request("aspect_ratio: must be one of 1:1")]).await;
    let ProviderError::BadRequest(message) = &error else {
        panic!("expected a bad request, got {error:?}");
    };
    assert_eq!(message, "aspect_ratio: must be one of 1:1");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn payload_too_large_is_a_bad_request() {
    let error = error_for(vec![Reply::payload_too_large()]).await;
    assert!(matches!(&error, ProviderError::BadRequest(m) if m.contains("10MiB")), "{error:?}");
}

#[tokio::test]
async fn a_filtered_image_is_a_refusal_and_never_delivered() {
    let error = error_for(vec![Reply::Filtered]).await;
    assert!(
        matches!(&error, ProviderError::Refused { reason } if reason.contains("CONTENT_FILTERED")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_without_retry_after_asks_no_wait() {
    let error = error_for(vec![Reply::rate_limited(None)]).await;
    assert_eq!(error.retry_after(), None);
}

#[test]
fn bad_models_fail_to_build() {
    for model in ["", "dall-e-3", "sd3/../x"] {
        let result = build(StabilityConfig { model: model.to_owned(), ..config("http://x") });
        assert!(matches!(result, Err(SetupError::Invalid { field: "model", .. })), "{model}");
    }
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    use reqwest::multipart::Form;

    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let url = format!("{}/v2beta/stable-image/generate/core", stand_in.base_url);
    let http = reqwest::Client::new();
    let form = |fields: &[(&'static str, &'static str)]| {
        fields.iter().fold(Form::new(), |form, &(name, value)| form.text(name, value))
    };
    let post = |form: Form, key: &str| {
        http.post(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("accept", "image/*")
            .multipart(form)
            .send()
    };
    let valid = [("prompt", "a cat"), ("aspect_ratio", "1:1"), ("output_format", "png")];

    let answer = post(form(&[("aspect_ratio", "1:1")]), KEY).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["name"], "bad_request");
    assert_eq!(body["errors"][0], "prompt: is required");
    let odd_ratio = [("prompt", "a cat"), ("aspect_ratio", "7:5")];
    assert_eq!(post(form(&odd_ratio), KEY).await.unwrap().status(), 400);
    let gif = [("prompt", "a cat"), ("output_format", "gif")];
    assert_eq!(post(form(&gif), KEY).await.unwrap().status(), 400);
    assert_eq!(post(form(&valid), "").await.unwrap().status(), 401, "no key");
    let json_body = http
        .post(&url)
        .header("authorization", format!("Bearer {KEY}"))
        .header("accept", "image/*")
        .json(&serde_json::json!({"prompt": "a cat"}));
    assert_eq!(json_body.send().await.unwrap().status(), 400, "not multipart");
    let answer = post(form(&valid), KEY).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["finish-reason"], "SUCCESS");
    assert_eq!(png_size(&answer.bytes().await.unwrap()), (1024, 1024));
    assert_eq!(stand_in.hits(), 6);
}

#[tokio::test]
async fn a_filtered_image_fails_the_job_at_once_with_the_spoken_refusal() {
    let stand_in = standin::spawn(vec![Reply::Filtered]).await;
    let (view, _) = jobs::run_at(&ROW, &stand_in.base_url, "square", |_| {}).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(stand_in.hits(), 1, "a refusal is not retried: {view}");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("describing it differently"), "{error}");
}
