//! Gemini edits against the stand-in: `generateContent` with the instruction and the source as
//! an `inlineData` part, and the same answer and error handling as generations.

use std::time::Duration;

use offstage::{
    images::ImageFormat,
    providers::{EditRequest, ProviderError},
};

use super::standin::{self, Reply};
use super::{KEY, assert_no_key, config, png_size, provider};

fn source_png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(120, 80, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut encoded = std::io::Cursor::new(Vec::new());
    image.write_to(&mut encoded, image::ImageFormat::Png).expect("encode the source");
    encoded.into_inner()
}

fn edit_request(width: u32, height: u32) -> EditRequest {
    EditRequest {
        image: source_png().into(),
        format: ImageFormat::Png,
        instruction: "make it night".to_owned(),
        width,
        height,
        seed: 7,
    }
}

#[tokio::test]
async fn edit_sends_the_instruction_then_the_image_and_returns_the_png() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let provider = provider(config(&stand_in.base_url));
    assert!(provider.can_edit());
    let image = provider.edit(&edit_request(1920, 1080)).await.expect("an edited image");

    assert_eq!(image.model, "gemini-2.5-flash-image");
    assert_eq!(png_size(&image.bytes), (1344, 768), "Gemini's size for 16:9");
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash-image:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert_eq!(sent.body["contents"][0]["role"], "user");
    assert_eq!(sent.body["contents"][0]["parts"][0]["text"], "make it night");
    assert_eq!(standin::inline_images(sent), [("image/png".to_owned(), source_png())]);
    assert_eq!(sent.body["generationConfig"]["responseModalities"], serde_json::json!(["IMAGE"]));
    assert_eq!(sent.body["generationConfig"]["imageConfig"]["aspectRatio"], "16:9");
}

#[tokio::test]
async fn an_edit_stopped_by_image_safety_is_a_refusal() {
    let stand_in = standin::spawn(vec![Reply::image_safety()]).await;
    let error = provider(config(&stand_in.base_url))
        .edit(&edit_request(1024, 1024))
        .await
        .expect_err("refused");
    assert_no_key(&error);
    assert!(matches!(&error, ProviderError::Refused { reason } if reason.contains("IMAGE_SAFETY")));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_edit_over_the_per_minute_quota_is_retryable_after_the_delay() {
    let stand_in = standin::spawn(vec![Reply::resource_exhausted("4s")]).await;
    let error = provider(config(&stand_in.base_url))
        .edit(&edit_request(1024, 1024))
        .await
        .expect_err("rate limited");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::RateLimited { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(4)));
}

#[tokio::test]
async fn the_stand_in_rejects_an_inline_image_that_is_not_what_it_claims() {
    let stand_in = standin::spawn(vec![Reply::Image]).await;
    let mut request = edit_request(1024, 1024);
    request.format = ImageFormat::Jpeg;
    let error = provider(config(&stand_in.base_url)).edit(&request).await.expect_err("rejected");
    let ProviderError::BadRequest(message) = &error else { panic!("a bad request: {error:?}") };
    assert!(message.contains("Unable to process input image"), "{message}");
}
