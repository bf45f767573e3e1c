//! `POST /v1/images/edits` against the stand-in: the multipart request (the source as a file
//! part, the nearest size) and the same error mapping as generations.

use offstage::{
    images::ImageFormat,
    providers::openai::OpenAiConfig,
    providers::{EditRequest, ImageProvider, ProviderError},
};

use super::standin::{self, Reply};
use super::{KEY, assert_no_key, config, provider};

fn source_png() -> Vec<u8> {
    standin::partial_png(96, 64, 0)
}

fn edit_request(image: Vec<u8>, format: ImageFormat, width: u32, height: u32) -> EditRequest {
    let instruction = "make it night".to_owned();
    EditRequest { image: image.into(), format, instruction, width, height, seed: 7 }
}

#[tokio::test]
async fn edit_sends_the_source_as_a_file_part_and_returns_the_image() {
    let stand_in = standin::spawn(vec![Reply::image(1536, 1024)]).await;
    let provider = provider(&config(&stand_in.base_url));
    assert!(provider.can_edit());
    let source = source_png();
    let image = provider
        .edit(&edit_request(source.clone(), ImageFormat::Png, 1920, 1080))
        .await
        .expect("an edited image");

    assert_eq!(image.model, "gpt-image-1");
    assert_eq!(&image.bytes[..], standin::png(1536, 1024));
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/images/edits");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(sent.header("content-type").is_some_and(|v| v.starts_with("multipart/form-data")));
    assert_eq!(sent.field("model"), Some("gpt-image-1"));
    assert_eq!(sent.field("prompt"), Some("make it night"));
    assert_eq!(sent.field("n"), Some("1"));
    assert_eq!(sent.field("size"), Some("1536x1024"), "16:9 asked, the nearest size sent");
    assert_eq!(sent.field("quality"), Some("auto"));
    assert_eq!(sent.field("output_format"), Some("png"));
    assert_eq!(sent.field("response_format"), None, "gpt-image rejects response_format");
    let [file] = sent.files.as_slice() else { panic!("one file part: {:?}", sent.files) };
    assert_eq!(file.name, "image");
    assert_eq!(file.file_name.as_deref(), Some("image.png"));
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    assert_eq!(file.bytes, source, "the source goes out byte for byte");
}

#[tokio::test]
async fn a_jpeg_source_is_named_and_typed_as_one() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(80, 80, image::Rgb([200, 40, 40]))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("encode a JPEG");
    let request = edit_request(jpeg.into_inner(), ImageFormat::Jpeg, 1024, 1024);
    provider(&config(&stand_in.base_url)).edit(&request).await.expect("an edited image");

    let file = &stand_in.requests()[0].files[0];
    assert_eq!(file.file_name.as_deref(), Some("image.jpg"));
    assert_eq!(file.content_type.as_deref(), Some("image/jpeg"));
}

#[tokio::test]
async fn dall_e_2_edits_ask_for_b64_json_at_its_square_size() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let config = OpenAiConfig { model: "dall-e-2".to_owned(), ..config(&stand_in.base_url) };
    let request = edit_request(source_png(), ImageFormat::Png, 1536, 1024);
    provider(&config).edit(&request).await.expect("an edited image");

    let sent = &stand_in.requests()[0];
    assert_eq!(sent.field("response_format"), Some("b64_json"));
    assert_eq!(sent.field("size"), Some("1024x1024"));
    assert_eq!(sent.field("quality"), None, "dall-e-2 knows only `standard`");
    assert_eq!(sent.field("output_format"), None);
}

#[tokio::test]
async fn dall_e_3_cannot_edit_and_sends_nothing() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let config = OpenAiConfig { model: "dall-e-3".to_owned(), ..config(&stand_in.base_url) };
    let provider = provider(&config);
    assert!(!provider.can_edit());
    let error = provider
        .edit(&edit_request(source_png(), ImageFormat::Png, 1024, 1024))
        .await
        .expect_err("dall-e-3 has no edit endpoint");
    assert!(matches!(error, ProviderError::Unsupported(_)), "{error:?}");
    assert_eq!(stand_in.hits(), 0);
}

#[tokio::test]
async fn an_edit_the_safety_system_blocks_is_a_refusal() {
    let stand_in = standin::spawn(vec![Reply::moderation_blocked()]).await;
    let error = provider(&config(&stand_in.base_url))
        .edit(&edit_request(source_png(), ImageFormat::Png, 1024, 1024))
        .await
        .expect_err("blocked");
    assert_no_key(&error);
    let ProviderError::Refused { reason } = &error else { panic!("a refusal, got {error:?}") };
    assert!(reason.contains("rejected by the safety system"), "{reason}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_rate_limited_edit_is_retryable_after_the_wait() {
    let stand_in = standin::spawn(vec![Reply::rate_limited(Some("3"))]).await;
    let error = provider(&config(&stand_in.base_url))
        .edit(&edit_request(source_png(), ImageFormat::Png, 1024, 1024))
        .await
        .expect_err("rate limited");
    assert_no_key(&error);
    assert!(matches!(error, ProviderError::RateLimited { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(std::time::Duration::from_secs(3)));
}

#[tokio::test]
async fn the_stand_in_rejects_an_edit_whose_image_is_not_what_it_claims() {
    let stand_in = standin::spawn(vec![Reply::image(1024, 1024)]).await;
    let request = edit_request(b"not an image at all".to_vec(), ImageFormat::Png, 1024, 1024);
    let error = provider(&config(&stand_in.base_url)).edit(&request).await.expect_err("rejected");
    let ProviderError::BadRequest(message) = &error else { panic!("a bad request: {error:?}") };
    assert!(message.contains("Invalid file 'image'"), "{message}");
}
