//! The Stability provider, built from configuration, against the local stand-in: the multipart
//! request it sends, and how it maps each documented answer (or non-answer) onto a
//! `ProviderError`. Edits have a file of their own.

mod edits;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use offstage::{
    providers::{Context, ProvidersConfig, stability::StabilityConfig, ImageProvider, ImageRequest, SetupError, ProviderError},
};

use crate::stability_standin::{self, Reply};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "sk-offstage-test-5a8e2c91d7f04b36";

fn config(base_url: &str) -> StabilityConfig {
    StabilityConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10),
        ..StabilityConfig::default()
    }
}

/// The provider exactly as the server builds it.
fn build(config: StabilityConfig) -> Result<Arc<dyn ImageProvider>, SetupError> {
    let providers = ProvidersConfig { stability: config, ..ProvidersConfig::default() };
    providers.build("stability", &Context::default())
}

fn provider(config: StabilityConfig) -> Arc<dyn ImageProvider> {
    build(config).expect("a valid provider configuration")
}

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 0 }
}

/// Runs one generation that must fail, and checks the failure does not reveal the key.
async fn error_for(script: Vec<Reply>) -> ProviderError {
    let stand_in = stability_standin::spawn(script).await;
    let result = provider(config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
    let error = result.expect_err("the provider should fail");
    assert_no_key(&error);
    error
}

fn assert_no_key(error: &ProviderError) {
    assert!(!error.to_string().contains(KEY), "Display leaks the key: {error}");
    assert!(!format!("{error:?}").contains(KEY), "Debug leaks the key: {error:?}");
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("the bytes are a PNG");
    (decoded.width(), decoded.height())
}

#[tokio::test]
async fn returns_the_png_and_sends_the_documented_request() {
    let stand_in = stability_standin::spawn(vec![Reply::Image]).await;
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
    let stand_in = stability_standin::spawn(vec![Reply::Image]).await;
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
    let stand_in = stability_standin::spawn(vec![Reply::Image]).await;
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
async fn unauthorized_is_unauthorized() {
    let error = error_for(vec![Reply::unauthorized()]).await;
    assert!(matches!(error, ProviderError::Unauthorized), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.speakable().contains("credentials"), "{}", error.speakable());
}

#[tokio::test]
async fn insufficient_credits_is_exhausted_quota() {
    let error = error_for(vec![Reply::payment_required()]).await;
    assert!(matches!(error, ProviderError::QuotaExhausted), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn content_moderation_is_a_refusal() {
    let error = error_for(vec![Reply::content_moderation()]).await;
    assert!(
        matches!(&error, ProviderError::Refused { reason } if reason.contains("content moderation")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.code(), "content_refused");
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
async fn rate_limits_are_retryable_after_retry_after() {
    let error = error_for(vec![Reply::rate_limited(Some("7"))]).await;
    assert!(matches!(error, ProviderError::RateLimited { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let error = error_for(vec![Reply::rate_limited(None)]).await;
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn server_errors_are_retryable_unavailability() {
    let stand_in =
        stability_standin::spawn(vec![Reply::server_error(500), Reply::server_error(503)]).await;
    let provider = provider(config(&stand_in.base_url));
    for expected in [500, 503] {
        let error = provider.generate(&request(1024, 1024)).await.expect_err("a server error");
        assert_no_key(&error);
        assert!(
            matches!(error, ProviderError::Unavailable { status, .. } if status == expected),
            "{error:?}"
        );
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let stand_in = stability_standin::spawn(vec![Reply::Hang]).await;
    let config = StabilityConfig {
        request_timeout: Duration::from_millis(300),
        ..config(&stand_in.base_url)
    };
    let started = Instant::now();
    let error = provider(config).generate(&request(1024, 1024)).await.expect_err("a timeout");
    assert!(matches!(error, ProviderError::Timeout), "{error:?}");
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // Take a free port and release it, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let error = provider(config(&format!("http://127.0.0.1:{port}")))
        .generate(&request(1024, 1024))
        .await
        .expect_err("nothing listens");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn reports_its_name_latency_and_remoteness_and_hides_the_key() {
    let provider = provider(config("https://api.stability.ai"));
    assert_eq!(provider.name(), "stability");
    assert_eq!(provider.typical_latency(), Duration::from_secs(10));
    assert!(provider.is_remote());
    let shown = format!("{provider:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn bad_configurations_fail_to_build() {
    for api_key in [None, Some("  ".into())] {
        let result = build(StabilityConfig { api_key, ..StabilityConfig::default() });
        let Err(error) = result else { panic!("built without a key") };
        assert!(matches!(error, SetupError::MissingKey { .. }), "{error:?}");
        assert!(error.to_string().contains("STABILITY_API_KEY"), "{error}");
    }
    let key_with_newline =
        StabilityConfig { api_key: Some("sk\nx".into()), ..config("http://x") };
    assert!(matches!(build(key_with_newline), Err(SetupError::Invalid { field: "api_key", .. })));
    for model in ["", "dall-e-3", "sd3/../x"] {
        let result = build(StabilityConfig { model: model.to_owned(), ..config("http://x") });
        assert!(matches!(result, Err(SetupError::Invalid { field: "model", .. })), "{model}");
    }
    for base_url in ["ftp://example.com", "api.stability.ai"] {
        let result = build(config(base_url));
        assert!(matches!(result, Err(SetupError::Invalid { field: "base_url", .. })), "{base_url}");
    }
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    use reqwest::multipart::Form;

    let stand_in = stability_standin::spawn(vec![Reply::Image]).await;
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
