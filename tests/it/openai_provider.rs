//! The OpenAI provider against the local stand-in: the request it sends, and how it maps
//! each documented answer (or non-answer) onto a `ProviderError`. Edits and streamed partial
//! images have files of their own.

mod edits;
mod partials;

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use offstage::{
    providers::{
        Context, ImageProvider, ImageRequest, ProviderError, SetupError,
        openai::{OpenAiConfig, OpenAiProvider},
    },
};

use crate::openai_standin::{self, Reply, StandIn};

/// Distinctive, so that a leak into any error text is easy to spot.
const KEY: &str = "sk-test-offstage-5f3c9a7e21d84b06";

fn config(base_url: &str) -> OpenAiConfig {
    OpenAiConfig {
        api_key: Some(KEY.into()),
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10),
        ..OpenAiConfig::default()
    }
}

fn provider(config: &OpenAiConfig) -> OpenAiProvider {
    OpenAiProvider::new(config, &Context::default()).expect("a valid provider configuration")
}

fn request(width: u32, height: u32) -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width, height, seed: 7 }
}

/// Runs one 1024x1024 generation against a stand-in playing `script`.
async fn generate_with(script: Vec<Reply>) -> (StandIn, Result<Vec<u8>, ProviderError>) {
    let stand_in = openai_standin::spawn(script).await;
    let result = provider(&config(&stand_in.base_url)).generate(&request(1024, 1024)).await;
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
    assert!(!error.to_string().contains(KEY), "Display leaks the key: {error}");
    assert!(!format!("{error:?}").contains(KEY), "Debug leaks the key: {error:?}");
}

#[tokio::test]
async fn returns_decoded_png_on_success() {
    let stand_in = openai_standin::spawn(vec![Reply::image(1024, 1536)]).await;
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
    let stand_in = openai_standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let config = OpenAiConfig { model: "dall-e-3".to_owned(), ..config(&stand_in.base_url) };
    let image = provider(&config).generate(&request(1024, 1024)).await.expect("an image");

    assert_eq!(image.model, "dall-e-3");
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.body["response_format"], "b64_json");
    assert!(sent.body.get("output_format").is_none(), "output_format is for gpt-image models");
}

#[tokio::test]
async fn tolerates_a_trailing_slash_in_base_url() {
    let stand_in = openai_standin::spawn(vec![Reply::image(64, 64)]).await;
    let config = config(&format!("{}/", stand_in.base_url));
    provider(&config).generate(&request(1024, 1024)).await.expect("an image");
    assert_eq!(stand_in.requests()[0].path, "/v1/images/generations");
}

#[tokio::test]
async fn rejected_key_is_unauthorized() {
    let error = error_for(vec![Reply::unauthorized()]).await;
    assert!(matches!(error, ProviderError::Unauthorized), "{error:?}");
    assert!(!error.is_retryable());
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
async fn rate_limit_is_retryable_after_the_requested_wait() {
    let error = error_for(vec![Reply::rate_limited(Some("2"))]).await;
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(wait) } if wait == Duration::from_secs(2)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn exhausted_quota_is_not_retryable() {
    let error = error_for(vec![Reply::insufficient_quota()]).await;
    assert!(matches!(error, ProviderError::QuotaExhausted), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn moderation_block_is_a_refusal_with_the_message() {
    let error = error_for(vec![Reply::moderation_blocked()]).await;
    let ProviderError::Refused { reason } = &error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert!(reason.contains("rejected by the safety system"), "{reason}");
    assert!(!error.is_retryable());
    assert_eq!(error.code(), "content_refused");
    assert!(error.speakable().contains("describing it differently"), "{}", error.speakable());
}

#[tokio::test]
async fn dall_e_content_policy_violation_is_a_refusal() {
    let error = error_for(vec![Reply::content_policy_violation()]).await;
    assert!(matches!(error, ProviderError::Refused { .. }), "{error:?}");
}

#[tokio::test]
async fn server_errors_are_retryable_unavailability() {
    let stand_in = openai_standin::spawn(vec![
        Reply::server_error(500),
        Reply::server_error(502),
        Reply::server_error(503),
    ])
    .await;
    let provider = provider(&config(&stand_in.base_url));
    for expected in [500, 502, 503] {
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
    let stand_in = openai_standin::spawn(vec![Reply::image(512, 512)]).await;
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
async fn hanging_server_times_out() {
    let stand_in = openai_standin::spawn(vec![Reply::Hang]).await;
    let config =
        OpenAiConfig { request_timeout: Duration::from_millis(300), ..config(&stand_in.base_url) };
    let started = Instant::now();
    let error = provider(&config).generate(&request(1024, 1024)).await.expect_err("a timeout");
    assert!(matches!(error, ProviderError::Timeout), "{error:?}");
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    // Take a free port and release it, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let error = provider(&config(&format!("http://127.0.0.1:{port}")))
        .generate(&request(1024, 1024))
        .await
        .expect_err("nothing listens");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
    assert!(!error.to_string().contains("127.0.0.1"), "no URL in the message: {error}");
}

#[tokio::test]
async fn undecodable_image_bytes_are_passed_on_for_the_runner_to_judge() {
    let (_stand_in, result) = generate_with(vec![Reply::Garbage]).await;
    assert_eq!(
        result.expect("the provider does not validate images"),
        b"this is certainly not a PNG"
    );
}

#[tokio::test]
async fn empty_data_is_an_invalid_response() {
    let error = error_for(vec![Reply::NoData]).await;
    assert!(matches!(error, ProviderError::InvalidResponse(_)), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn announced_body_over_the_cap_is_an_invalid_response() {
    let stand_in = openai_standin::spawn(vec![Reply::image(256, 256)]).await;
    let error = provider(&config(&stand_in.base_url))
        .with_body_limit(100)
        .generate(&request(1024, 1024))
        .await
        .expect_err("over the cap");
    assert!(
        matches!(&error, ProviderError::InvalidResponse(message) if message.contains("exceeds")),
        "{error:?}"
    );
}

#[tokio::test]
async fn chunked_body_over_the_cap_is_an_invalid_response() {
    // No Content-Length: only counting the bytes as they arrive can enforce the cap.
    let base_url = spawn_chunked_server(1024 * 1024);
    let error = provider(&config(&base_url))
        .with_body_limit(64 * 1024)
        .generate(&request(1024, 1024))
        .await
        .expect_err("over the cap");
    assert!(
        matches!(&error, ProviderError::InvalidResponse(message) if message.contains("exceeds")),
        "{error:?}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let shown = format!("{:?}", provider(&config("https://api.openai.com")));
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn missing_or_blank_key_fails_to_build() {
    for api_key in [None, Some("  ".into())] {
        let config = OpenAiConfig { api_key, ..OpenAiConfig::default() };
        let result = OpenAiProvider::new(&config, &Context::default());
        assert!(matches!(result, Err(SetupError::MissingKey { .. })), "{result:?}");
    }
}

#[test]
fn non_http_base_url_fails_to_build() {
    for base_url in ["ftp://api.openai.com", "api.openai.com", "http://"] {
        let result = OpenAiProvider::new(&config(base_url), &Context::default());
        assert!(
            matches!(result, Err(SetupError::Invalid { field: "base_url", .. })),
            "{base_url}: {result:?}"
        );
    }
}

#[tokio::test]
async fn reports_its_name_latency_and_remoteness() {
    let provider = provider(&config("https://api.openai.com"));
    assert_eq!(provider.name(), "openai");
    assert_eq!(provider.typical_latency(), OpenAiConfig::default().typical_latency);
    assert!(provider.is_remote());
}

#[tokio::test]
async fn stand_in_rejects_what_the_real_api_rejects() {
    let stand_in = openai_standin::spawn(vec![Reply::image(64, 64)]).await;
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

#[tokio::test]
async fn dropping_the_stand_in_stops_it() {
    let stand_in = openai_standin::spawn(vec![Reply::image(64, 64)]).await;
    let provider = provider(&config(&stand_in.base_url));
    drop(stand_in);
    // The server task ends at its next poll, so give it a few moments to let go of the port.
    for _ in 0..50 {
        if let Err(ProviderError::Connect(_)) = provider.generate(&request(1024, 1024)).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stand-in still answers after being dropped");
}

/// A server that answers one request with a 200 whose chunked body of `total` bytes of JSON
/// whitespace never ends in a document, so that only the size cap can stop the reader. It uses
/// blocking sockets on a thread of its own, to need nothing from tokio beyond what the crate has.
fn spawn_chunked_server(total: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else { return };
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let chunk = vec![b' '; 16 * 1024];
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        // The client hangs up once it has seen enough; a failed write ends the answer early.
        let answered = socket.write_all(head.as_bytes()).is_ok()
            && (0..total.div_ceil(chunk.len())).all(|_| socket.write_all(&frame).is_ok());
        if answered {
            let _ = socket.write_all(b"0\r\n\r\n");
        }
    });
    format!("http://{address}")
}
