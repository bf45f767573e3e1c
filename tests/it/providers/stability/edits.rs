//! Stability edits against the stand-in: image-to-image on the `sd3` endpoint with the source as
//! the `image` file part, and the same answer and error handling as generations.

use std::time::Duration;

use offstage::{
    images::ImageFormat,
    providers::stability::StabilityConfig,
    providers::{EditRequest, ProviderError},
};

use super::standin::{self, Reply};
use super::{KEY, assert_no_key, config, png_size, provider};

fn source_png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(96, 128, |x, y| image::Rgb([x as u8, y as u8, 60]));
    let mut encoded = std::io::Cursor::new(Vec::new());
    image.write_to(&mut encoded, image::ImageFormat::Png).expect("encode the source");
    encoded.into_inner()
}

fn edit_request() -> EditRequest {
    EditRequest {
        image: source_png().into(),
        format: ImageFormat::Png,
        instruction: "make it night".to_owned(),
        width: 1024,
        height: 1536,
        seed: 42,
    }
}

#[tokio::test]
async fn edit_sends_image_to_image_to_sd3_and_returns_the_png() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let provider = provider(config(&stand_in.base_url));
    assert!(provider.can_edit());
    let image = provider.edit(&edit_request()).await.expect("an edited image");

    assert_eq!(image.model, "sd3.5-large", "core cannot take an image; SD3 edits for it");
    assert_eq!(png_size(&image.bytes), (96, 128), "image-to-image keeps the source's shape");
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v2beta/stable-image/generate/sd3");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("accept"), Some("image/*"));
    assert_eq!(sent.field("mode"), Some("image-to-image"));
    assert_eq!(sent.field("prompt"), Some("make it night"));
    assert_eq!(sent.field("strength"), Some("0.6"));
    assert_eq!(sent.field("model"), Some("sd3.5-large"));
    assert_eq!(sent.field("output_format"), Some("png"));
    assert_eq!(sent.field("seed"), Some("42"));
    assert_eq!(sent.field("aspect_ratio"), None, "only valid for text-to-image");
    let [file] = sent.files.as_slice() else { panic!("one file part: {:?}", sent.files) };
    assert_eq!(file.name, "image");
    assert_eq!(file.file_name.as_deref(), Some("image.png"));
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    assert_eq!(file.bytes, source_png(), "the source goes out byte for byte");
}

#[tokio::test]
async fn edits_use_the_configured_sd3_model() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let config = StabilityConfig { model: "sd3.5-medium".to_owned(), ..config(&stand_in.base_url) };
    let image = provider(config).edit(&edit_request()).await.expect("an edited image");
    assert_eq!(image.model, "sd3.5-medium");
    assert_eq!(stand_in.requests()[0].field("model"), Some("sd3.5-medium"));
}

#[tokio::test]
async fn a_moderated_or_filtered_edit_is_a_refusal() {
    let script = vec![Reply::content_moderation(), Reply::Filtered];
    let stand_in = standin::spawn(script).await;
    let provider = provider(config(&stand_in.base_url));
    for expected in ["content moderation", "CONTENT_FILTERED"] {
        let error = provider.edit(&edit_request()).await.expect_err("refused");
        assert_no_key(&error);
        let ProviderError::Refused { reason } = &error else { panic!("a refusal: {error:?}") };
        assert!(reason.contains(expected), "{reason}");
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn a_rate_limited_edit_is_retryable_after_the_wait() {
    let stand_in = standin::spawn(vec![Reply::rate_limited(Some("5"))]).await;
    let error =
        provider(config(&stand_in.base_url)).edit(&edit_request()).await.expect_err("rate limited");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::RateLimited { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn the_stand_in_rejects_an_image_that_is_not_what_it_claims() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let mut request = edit_request();
    request.format = ImageFormat::Webp;
    let error = provider(config(&stand_in.base_url)).edit(&request).await.expect_err("rejected");
    let ProviderError::BadRequest(message) = &error else { panic!("a bad request: {error:?}") };
    assert!(message.contains("image: must be"), "{message}");
}
