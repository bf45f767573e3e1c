//! The Gemini provider, built from configuration, against the local stand-in: the request it
//! sends, and how it maps each documented answer (or non-answer) onto a `ProviderError`. Edits have a file of their own.

mod edits;
pub(crate) mod standin;

use std::{sync::Arc, time::Duration};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProvidersConfig, SetupError,
    gemini::{GeminiConfig, GeminiProvider},
};

use self::standin::{Reply, StandIn};
use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    jobs,
    standin::{Scripted, png_size},
};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "AIzaTest-offstage-9b41c7d2e05f";

/// Gemini in the provider contract.
pub(crate) const ROW: Row = Row {
    name: "gemini",
    key: KEY,
    key_variable: Some("GEMINI_API_KEY"),
    configure,
    capped,
    spawn,
    attempts: super::contract::scripted_attempts::<Reply>,
    typical_latency: Duration::from_secs(15),
    remote_url: "https://generativelanguage.googleapis.com",
    can_edit: true,
    caps_first_answer: true,
    connect_names: None,
    refusal_says: "PROHIBITED_CONTENT",
    landscape: (1248, 832),
    landscape_request,
};

super::contract::configure!(gemini);
super::contract::capped!(gemini, GeminiProvider);

fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    super::contract::spawning(answers, reply, standin::spawn)
}

fn reply(answer: Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Image => Reply::Image,
        Answer::ServerError(status) => Reply::server_error(status),
        Answer::Hang => Reply::Hang,
        Answer::RateLimited(seconds) => Reply::resource_exhausted(&format!("{seconds}s")),
        Answer::Unauthorized => Reply::api_key_invalid(),
        Answer::QuotaExhausted => Reply::daily_quota_exhausted(),
        Answer::Refused => Reply::Blocked { reason: "PROHIBITED_CONTENT" },
        Answer::Garbage => Reply::Garbage,
    })
}

fn landscape_request(stand_in: &Spawned, row: &Row) {
    let request = &stand_in.get::<Scripted<Reply>>().requests()[0];
    assert_eq!(request.body["generationConfig"]["imageConfig"]["aspectRatio"], "3:2");
    assert_eq!(request.body["contents"][0]["parts"][0]["text"], "a red fox");
    assert_eq!(request.header("x-goog-api-key"), Some(row.key));
}

fn config(base_url: &str) -> GeminiConfig {
    GeminiConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10).into(),
        ..GeminiConfig::default()
    }
}

super::contract::built!(gemini, GeminiConfig);

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 7 }
}

/// Runs one square generation against a stand-in playing `script`.
async fn generate_with(script: Vec<Reply>) -> (StandIn, Result<Vec<u8>, ProviderError>) {
    let stand_in = standin::spawn(script).await;
    let result = provider(config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
    (stand_in, result.map(|image| image.bytes.to_vec()))
}

/// Runs one generation that must fail, and checks the failure does not reveal the key.
async fn error_for(script: Vec<Reply>) -> ProviderError {
    let (_stand_in, result) = generate_with(script).await;
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

    assert_eq!(image.model, "gemini-2.5-flash-image");
    assert_eq!(png_size(&image.bytes), (832, 1248), "Gemini's size for 2:3");

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash-image:generateContent");
    assert_eq!(sent.query, None, "the key travels in a header, never in the URL");
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert_eq!(sent.header("authorization"), None);
    assert!(sent.header("content-type").is_some_and(|value| value.starts_with("application/json")));
    assert_eq!(
        sent.body,
        serde_json::json!({
            "contents": [{ "role": "user", "parts": [{ "text": "a lighthouse at dusk" }] }],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "imageConfig": { "aspectRatio": "2:3" },
            },
        })
    );
}

#[tokio::test]
async fn accepts_text_beside_the_image_and_snake_case_fields() {
    let (_stand_in, result) = generate_with(vec![Reply::ImageWithTextSnakeCase]).await;
    assert_eq!(png_size(&result.expect("an image")), (1024, 1024));
}

#[tokio::test]
async fn a_models_prefix_and_a_trailing_slash_are_tolerated() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let config = GeminiConfig {
        model: "models/gemini-3-pro-image-preview".to_owned(),
        ..config(&format!("{}/", stand_in.base_url))
    };
    let image = provider(config).generate(&request(1536, 1024)).await.expect("an image");
    assert_eq!(image.model, "gemini-3-pro-image-preview");
    assert_eq!(
        stand_in.requests()[0].path,
        "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    );
}

#[tokio::test]
async fn invalid_argument_is_a_bad_request_with_the_message() {
    let error = error_for(vec![Reply::invalid_argument()]).await;
    let ProviderError::BadRequest(message) = &error else {
        panic!("expected a bad request, got {error:?}");
    };
    assert!(message.contains("invalid argument"), "{message}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn failed_precondition_is_a_bad_request() {
    let error = error_for(vec![Reply::failed_precondition()]).await;
    assert!(matches!(&error, ProviderError::BadRequest(m) if m.contains("billing")), "{error:?}");
}

#[tokio::test]
async fn an_unknown_model_is_a_bad_request_naming_it() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let config = GeminiConfig { model: "gemini-9-paint".to_owned(), ..config(&stand_in.base_url) };
    let error = provider(config).generate(&request(1024, 1024)).await.expect_err("404");
    assert!(
        matches!(&error, ProviderError::BadRequest(m) if m.contains("models/gemini-9-paint")),
        "{error:?}"
    );
}

#[tokio::test]
async fn permission_denied_is_unauthorized() {
    let error = error_for(vec![Reply::permission_denied()]).await;
    assert!(matches!(error, ProviderError::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn a_retry_after_header_wins_over_retry_info() {
    let error = error_for(vec![Reply::resource_exhausted("37s").with_retry_after("2")]).await;
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn a_blocked_prompt_is_a_refusal_naming_the_block_reason() {
    for reason in ["SAFETY", "PROHIBITED_CONTENT", "OTHER"] {
        let error = error_for(vec![Reply::Blocked { reason }]).await;
        let ProviderError::Refused { reason: said } = &error else {
            panic!("expected a refusal, got {error:?}");
        };
        assert!(said.contains(reason), "{said}");
        assert!(!error.is_retryable());
        assert_eq!(error.code(), "content_refused");
    }
}

#[tokio::test]
async fn an_image_safety_finish_without_an_image_is_a_refusal() {
    let error = error_for(vec![Reply::image_safety()]).await;
    assert!(
        matches!(&error, ProviderError::Refused { reason } if reason.contains("IMAGE_SAFETY")),
        "{error:?}"
    );
    assert!(error.speakable().contains("describing it differently"), "{}", error.speakable());
}

#[tokio::test]
async fn a_refusal_keeps_what_the_model_said() {
    let error = error_for(vec![Reply::NoImage {
        finish_reason: "PROHIBITED_CONTENT",
        text: Some("I can't draw that."),
    }])
    .await;
    assert!(
        matches!(&error, ProviderError::Refused { reason } if reason == "PROHIBITED_CONTENT: I can't draw that."),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_text_only_answer_is_an_invalid_response_with_the_text() {
    let error = error_for(vec![Reply::text_only()]).await;
    let ProviderError::InvalidResponse(message) = &error else {
        panic!("expected an invalid response, got {error:?}");
    };
    assert!(message.contains("STOP") && message.contains("describe a lighthouse"), "{message}");
    assert!(!error.is_retryable());
}

#[test]
fn bad_models_fail_to_build() {
    for model in ["", "gemini/../files", "gemini 2.5"] {
        let result = build(GeminiConfig { model: model.to_owned(), ..config("http://x") });
        assert!(matches!(result, Err(SetupError::Invalid { field: "model", .. })), "{model}");
    }
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let url = format!("{}/v1beta/models/gemini-2.5-flash-image:generateContent", stand_in.base_url);
    let http = reqwest::Client::new();
    let valid = serde_json::json!({
        "contents": [{ "parts": [{ "text": "a cat" }] }],
        "generationConfig": { "responseModalities": ["IMAGE"], "imageConfig": { "aspectRatio": "1:1" } },
    });
    let post = |body: serde_json::Value, key: &str| {
        http.post(&url).header("x-goog-api-key", key).json(&body).send()
    };
    let status_of = |answer: reqwest::Response| answer.status().as_u16();

    assert_eq!(status_of(post(valid.clone(), "").await.unwrap()), 403, "no key");
    let mut odd_ratio = valid.clone();
    odd_ratio["generationConfig"]["imageConfig"]["aspectRatio"] = "7:5".into();
    let answer = post(odd_ratio, KEY).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    let mut unknown = valid.clone();
    unknown["n"] = 1.into();
    assert_eq!(status_of(post(unknown, KEY).await.unwrap()), 400, "unknown field");
    let wrong_path = http.post(format!("{}/v1/images/generations", stand_in.base_url));
    assert_eq!(status_of(wrong_path.send().await.unwrap()), 404);
    assert_eq!(status_of(post(valid, KEY).await.unwrap()), 200);
    assert_eq!(stand_in.hits(), 5);
}

#[tokio::test]
async fn portrait_images_come_back_at_two_by_three() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let (view, pixels) = jobs::run_at(&ROW, &stand_in.base_url, "portrait", |_| {}).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(pixels, Some((832, 1248)));
}

#[tokio::test]
async fn an_image_safety_stop_fails_the_job_at_once_with_the_spoken_refusal() {
    let stand_in = standin::spawn(vec![Reply::image_safety()]).await;
    let (view, _) = jobs::run_at(&ROW, &stand_in.base_url, "square", |_| {}).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(stand_in.hits(), 1, "a refusal is not retried: {view}");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("describing it differently"), "{error}");
}
