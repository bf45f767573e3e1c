//! The OpenAI provider against the local stand-in: the request it sends, and how it maps
//! each documented answer (or non-answer) onto a `ProviderError`. Edits and streamed partial
//! images have files of their own.

mod edits;
mod partials;
pub(crate) mod standin;

use std::{sync::Arc, time::Duration};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProviderSpec, ProvidersConfig,
    openai::{OpenAiConfig, OpenAiProvider},
};

use self::standin::Reply;
use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    standin::Recorded,
};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "sk-test-offstage-5f3c9a7e21d84b06";

/// OpenAI in the provider contract.
pub(crate) const ROW: Row = Row {
    name: "openai",
    key: KEY,
    key_variable: Some("OPENAI_API_KEY"),
    configure,
    capped,
    spawn,
    attempts,
    typical_latency: Duration::from_secs(25),
    remote_url: "https://api.openai.com",
    can_edit: true,
    caps_first_answer: true,
    connect_names: None,
    refusal_says: "rejected by the safety system",
    landscape: (1536, 1024),
    landscape_request,
};

super::contract::configure!(openai);
super::contract::capped!(openai, OpenAiProvider);

fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    super::contract::spawning(answers, reply, standin::spawn)
}

fn reply(answer: Answer) -> Option<Reply> {
    Some(match answer {
        Answer::Image => Reply::ASKED,
        Answer::ServerError(status) => Reply::server_error(status),
        Answer::Hang => Reply::Hang,
        Answer::RateLimited(seconds) => Reply::rate_limited(Some(leak(seconds))),
        Answer::Unauthorized => Reply::unauthorized(),
        Answer::QuotaExhausted => Reply::insufficient_quota(),
        Answer::Refused => Reply::moderation_blocked(),
        Answer::Garbage => Reply::Garbage,
    })
}

/// A header value for the script, which holds `&'static str`s.
pub(crate) fn leak(seconds: u64) -> &'static str {
    Box::leak(seconds.to_string().into_boxed_str())
}

fn attempts(stand_in: &Spawned) -> usize {
    stand_in.get::<standin::Data>().hits()
}

fn landscape_request(stand_in: &Spawned, row: &Row) {
    let request: &Recorded = &stand_in.get::<standin::Data>().requests()[0];
    assert_eq!(request.body["size"], "1536x1024");
    assert_eq!(request.body["prompt"], "a red fox");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {}", row.key).as_str()));
}

fn config(base_url: &str) -> OpenAiConfig {
    OpenAiConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10).into(),
        ..OpenAiConfig::default()
    }
}

fn provider(config: &OpenAiConfig) -> OpenAiProvider {
    OpenAiProvider::build(config, &Context::default()).expect("a valid provider configuration")
}

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 7 }
}

/// Runs one generation that must fail, and checks the failure does not reveal the key.
async fn error_for(script: Vec<Reply>) -> ProviderError {
    let stand_in = standin::spawn(script).await;
    let result = provider(&config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
    let error = result.expect_err("the provider should fail");
    assert_no_key(&error);
    error
}

fn assert_no_key(error: &ProviderError) {
    ROW.assert_no_key(error);
}

#[tokio::test]
async fn returns_decoded_png_on_success() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1536)]).await;
    let image = provider(&config(&stand_in.base_url))
        .generate(&request(1024, 1536))
        .await
        .expect("an image");

    assert_eq!(image.model, "gpt-image-1");
    let decoded = image::load_from_memory_with_format(&image.bytes, image::ImageFormat::Png)
        .expect("the bytes are a PNG");
    assert_eq!((decoded.width(), decoded.height()), (1024, 1536));

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/images/generations");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(sent.header("content-type").is_some_and(|value| value.starts_with("application/json")));
    assert_eq!(sent.body["model"], "gpt-image-1");
    assert_eq!(sent.body["prompt"], "a lighthouse at dusk");
    assert_eq!(sent.body["size"], "1024x1536");
    assert_eq!(sent.body["n"], 1);
    assert_eq!(sent.body["quality"], "auto");
    assert_eq!(sent.body["output_format"], "png");
    assert!(sent.body.get("response_format").is_none(), "gpt-image rejects response_format");
}

#[tokio::test]
async fn dall_e_models_ask_for_b64_json() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let config = OpenAiConfig { model: "dall-e-3".to_owned(), ..config(&stand_in.base_url) };
    let image = provider(&config).generate(&request(1024, 1024)).await.expect("an image");

    assert_eq!(image.model, "dall-e-3");
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.body["response_format"], "b64_json");
    assert!(sent.body.get("output_format").is_none(), "output_format is for gpt-image models");
}

#[tokio::test]
async fn tolerates_a_trailing_slash_in_base_url() {
    let stand_in = standin::spawn(vec![Reply::image(64, 64)]).await;
    let config = config(&format!("{}/", stand_in.base_url));
    provider(&config).generate(&request(1024, 1024)).await.expect("an image");
    assert_eq!(stand_in.requests()[0].path, "/v1/images/generations");
}

#[tokio::test]
async fn forbidden_is_unauthorized() {
    let error = error_for(vec![Reply::Error {
        status: 403,
        code: "unsupported_country_region_territory",
        message: "Country, region, or territory not supported",
        retry_after: None,
    }])
    .await;
    assert!(matches!(error, ProviderError::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn dall_e_content_policy_violation_is_a_refusal() {
    let error = error_for(vec![Reply::content_policy_violation()]).await;
    assert!(matches!(error, ProviderError::Refused { .. }), "{error:?}");
}

#[tokio::test]
async fn service_unavailable_honours_retry_after() {
    let error = error_for(vec![Reply::Error {
        status: 503,
        code: "",
        message: "The server is overloaded or not ready yet.",
        retry_after: Some("7"),
    }])
    .await;
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn unsupported_size_is_a_bad_request_with_the_message() {
    let stand_in = standin::spawn(vec![Reply::image(512, 512)]).await;
    let error = provider(&config(&stand_in.base_url))
        .generate(&request(512, 512))
        .await
        .expect_err("512x512 is not a gpt-image size");
    assert_no_key(&error);
    let ProviderError::BadRequest(message) = &error else {
        panic!("expected a bad request, got {error:?}");
    };
    assert!(message.contains("Invalid value: '512x512'"), "{message}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn empty_data_is_an_invalid_response() {
    let error = error_for(vec![Reply::NoData]).await;
    assert!(matches!(error, ProviderError::InvalidResponse(_)), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    let stand_in = standin::spawn(vec![Reply::image(64, 64)]).await;
    let url = format!("{}/v1/images/generations", stand_in.base_url);
    let http = reqwest::Client::new();
    let valid = serde_json::json!({ "model": "gpt-image-1", "prompt": "a cat", "size": "auto" });
    let post =
        |body: serde_json::Value, key: &str| http.post(&url).bearer_auth(key).json(&body).send();

    let answer = post(valid.clone(), "").await.expect("an answer");
    assert_eq!(answer.status(), 401);
    let mut with_format = valid.clone();
    with_format["response_format"] = "b64_json".into();
    let answer = post(with_format, KEY).await.expect("an answer");
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "unknown_parameter");
    assert_eq!(body["error"]["param"], "response_format");
    let answer = post(serde_json::json!({ "model": "gpt-image-1", "size": "auto" }), KEY);
    assert_eq!(answer.await.expect("an answer").status(), 400);
    assert_eq!(post(valid, KEY).await.expect("an answer").status(), 200);
    assert_eq!(stand_in.hits(), 4);
}
