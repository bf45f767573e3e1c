//! `partial_images` streaming against the stand-in: partial images reach the sink in order and
//! the final image is the result; without a sink nothing streams; every way a stream can go
//! wrong maps onto a `ProviderError`.

use std::sync::{Arc, Mutex};

use offstage::{
    providers::openai::OpenAiConfig,
    providers::{ImageProvider, Partials, ProviderError},
};

use super::standin::{self, Reply, Streamed, partial_png};
use super::{assert_no_key, config, provider, request};

/// Every partial image a sink was handed, as (index, bytes), in order.
type Seen = Arc<Mutex<Vec<(u32, Vec<u8>)>>>;

/// A sink that keeps every partial image it is handed, in order.
fn collecting() -> (Partials, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let partials = Partials::new(move |partial| {
        sink.lock().unwrap().push((partial.index, partial.bytes.to_vec()));
    });
    (partials, seen)
}

/// Runs one streamed 1024x1024 generation against `script`, with a provider body limit.
async fn stream_with(
    script: Vec<Reply>,
    body_limit: usize,
) -> (Result<Vec<u8>, ProviderError>, Vec<(u32, Vec<u8>)>) {
    let stand_in = standin::spawn(script).await;
    let (partials, seen) = collecting();
    let provider = provider(&config(&stand_in.base_url)).with_body_limit(body_limit);
    let result = provider.generate_with_partials(&request(1024, 1024), &partials).await;
    let seen = seen.lock().unwrap().clone();
    (result.map(|image| image.bytes.to_vec()), seen)
}

#[tokio::test]
async fn partials_arrive_in_order_and_the_final_image_is_the_result() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let (partials, seen) = collecting();
    let image = provider(&config(&stand_in.base_url))
        .generate_with_partials(&request(1024, 1024), &partials)
        .await
        .expect("an image");

    assert_eq!(&image.bytes[..], standin::png(1024, 1024));
    let seen = seen.lock().unwrap().clone();
    let indices: Vec<u32> = seen.iter().map(|(index, _)| *index).collect();
    assert_eq!(indices, [0, 1], "the default for gpt-image is two partial images");
    for (index, bytes) in &seen {
        assert_eq!(bytes, &partial_png(1024, 1024, *index), "partial {index}");
    }
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["partial_images"], 2);
    assert_eq!(sent.body["size"], "1024x1024");
}

#[tokio::test]
async fn the_configured_number_of_partials_is_asked_for() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let config = OpenAiConfig { partial_images: Some(3), ..config(&stand_in.base_url) };
    let (partials, seen) = collecting();
    provider(&config).generate_with_partials(&request(1024, 1024), &partials).await.unwrap();
    assert_eq!(stand_in.requests()[0].body["partial_images"], 3);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn without_a_sink_or_with_zero_partials_nothing_streams() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let streaming = provider(&config(&stand_in.base_url));
    let image = streaming
        .generate_with_partials(&request(1024, 1024), &Partials::default())
        .await
        .expect("an image");
    assert_eq!(&image.bytes[..], standin::png(1024, 1024));
    let zero = OpenAiConfig { partial_images: Some(0), ..config(&stand_in.base_url) };
    let (partials, seen) = collecting();
    provider(&zero).generate_with_partials(&request(1024, 1024), &partials).await.unwrap();

    assert!(seen.lock().unwrap().is_empty());
    for sent in stand_in.requests() {
        assert!(sent.body.get("stream").is_none(), "{}", sent.body);
        assert!(sent.body.get("partial_images").is_none(), "{}", sent.body);
        assert_eq!(sent.body["prompt"], "a lighthouse at dusk", "otherwise the usual request");
    }
}

#[tokio::test]
async fn an_error_event_part_way_is_mapped_after_the_partials_before_it() {
    let server_error = Streamed::Error {
        kind: "server_error",
        code: None,
        message: "The server had an error while processing your request.",
    };
    let (result, seen) =
        stream_with(vec![Reply::Stream(vec![Streamed::Partial(0), server_error])], 1 << 24).await;
    let error = result.expect_err("the stream failed");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(seen.len(), 1, "the partial before the error still arrived");
}

#[tokio::test]
async fn a_moderation_error_event_is_a_refusal() {
    let blocked = Streamed::Error {
        kind: "image_generation_user_error",
        code: Some("moderation_blocked"),
        message: "Your request was rejected by the safety system.",
    };
    let (result, _) = stream_with(vec![Reply::Stream(vec![blocked])], 1 << 24).await;
    let error = result.expect_err("refused");
    assert!(matches!(error, ProviderError::Refused { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_stream_that_ends_before_the_final_image_is_a_retryable_break() {
    let cut = Reply::Stream(vec![Streamed::Partial(0), Streamed::Partial(1)]);
    let (result, seen) = stream_with(vec![cut], 1 << 24).await;
    let error = result.expect_err("no final image");
    assert!(matches!(error, ProviderError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn an_event_over_the_cap_is_an_invalid_response() {
    let oversized = Reply::Stream(vec![Streamed::Oversized(512 * 1024), Streamed::Completed]);
    let (result, seen) = stream_with(vec![oversized], 64 * 1024).await;
    let error = result.expect_err("over the cap");
    assert!(
        matches!(&error, ProviderError::InvalidResponse(message) if message.contains("an event exceeds")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(seen.is_empty());
}

#[tokio::test]
async fn a_stream_over_its_total_cap_is_an_invalid_response() {
    // Each event fits the 64 KiB cap; with two partials the stream may hold three events' worth.
    let many = Reply::Stream(vec![Streamed::Oversized(40 * 1024); 6]);
    let (result, _) = stream_with(vec![many], 64 * 1024).await;
    let error = result.expect_err("over the total cap");
    assert!(
        matches!(&error, ProviderError::InvalidResponse(message) if message.contains("stream exceeds")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_error_status_before_the_stream_maps_as_for_plain_requests() {
    let (result, seen) = stream_with(vec![Reply::rate_limited(Some("2"))], 1 << 24).await;
    let error = result.expect_err("rate limited");
    assert!(matches!(error, ProviderError::RateLimited { .. }), "{error:?}");
    assert!(seen.is_empty());
}
