//! The image pipeline over HTTP: the ThumbHash preview in the job JSON, renditions by query
//! (`?w=&format=`) rendered once and cached, clear 400s for unknown ones, and images a
//! provider must not get past (decompression bombs, broken bytes).

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{
    providers::openai::standin::{self as openai_standin, Reply},
    support::{TestServer, call, job_id, modern_client, wait_until_ended},
};

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("image URL answers")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Decodes a 200 image body, checking its declared type.
async fn image_of(response: reqwest::Response, mime: &str) -> image::DynamicImage {
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), mime);
    let bytes = response.bytes().await.unwrap();
    let format = image::guess_format(&bytes).unwrap();
    assert_eq!(format.to_mime_type(), mime, "the body is what the header says");
    image::load_from_memory(&bytes).unwrap()
}

async fn finished_landscape(server: &TestServer) -> Value {
    let (client, _) = modern_client(&server.url(), None).await;
    let started =
        call(&client, "generate_image", json!({"prompt": "a lighthouse", "size": "landscape"}))
            .await;
    let view = wait_until_ended(&client, &job_id(&started)).await;
    client.cancel().await.unwrap();
    assert_eq!(view["status"], "completed", "{view}");
    view
}

#[tokio::test]
async fn finished_jobs_carry_a_thumbhash_preview() {
    let server = TestServer::start().await;
    let view = finished_landscape(&server).await;
    let preview = view["preview"].as_str().expect("a completed image job has a preview");
    let hash = base64::engine::general_purpose::STANDARD.decode(preview).unwrap();
    assert!(hash.len() <= 25, "a ThumbHash is tiny: {} bytes", hash.len());
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).unwrap();
    assert!((ratio - 1.5).abs() < 0.15, "the preview has the landscape shape: {ratio}");
    let job: Value = get(&server.http(&format!("/v1/jobs/{}", view["job_id"].as_str().unwrap())))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["preview"], view["preview"]);
    server.stop().await;
}

#[tokio::test]
async fn renditions_are_served_by_query_rendered_once_and_cached() {
    let server = TestServer::start().await;
    let view = finished_landscape(&server).await;
    let url = view["image_url"].as_str().unwrap();

    // The default prerendered rendition is already there.
    let prerendered = get(&format!("{url}?w=512&format=webp")).await;
    assert_eq!(header(&prerendered, "offstage-rendition"), "hit");
    assert_eq!(header(&prerendered, "cache-control"), "public, max-age=86400, immutable");
    let webp = image_of(prerendered, "image/webp").await;
    assert_eq!((webp.width(), webp.height()), (512, 341));

    // Six viewers ask for a new rendition at once: one render, six identical answers.
    let small = format!("{url}?format=jpeg&w=256");
    let asks = (0..6).map(|_| get(&small));
    let answers = futures::future::join_all(asks).await;
    let misses = answers.iter().filter(|r| header(r, "offstage-rendition") == "miss").count();
    assert_eq!(misses, 1, "rendered once");
    let etag = header(&answers[0], "etag");
    let mut bodies = Vec::new();
    for answer in answers {
        assert_eq!(header(&answer, "etag"), etag);
        bodies.push(answer.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    let jpeg = image::load_from_memory(&bodies[0]).unwrap();
    assert_eq!((jpeg.width(), jpeg.height()), (256, 170));
    let again = get(&format!("{url}?w=256&format=jpeg&v=2")).await;
    assert_eq!(header(&again, "offstage-rendition"), "hit", "cache busters share the file");
    let revalidated = reqwest::Client::new()
        .get(format!("{url}?w=256&format=jpeg"))
        .header("if-none-match", &etag);
    assert_eq!(revalidated.send().await.unwrap().status(), 304);

    // The original stays itself: its own ETag, and a wider ask never enlarges it.
    let original = get(url).await;
    assert_ne!(header(&original, "etag"), etag);
    let original = image_of(original, "image/png").await;
    assert_eq!((original.width(), original.height()), (1536, 1024));
    let wider = image_of(get(&format!("{url}?w=2048")).await, "image/png").await;
    assert_eq!(wider.width(), 1536);
    let full_webp = image_of(get(&format!("{url}?format=webp")).await, "image/webp").await;
    assert_eq!((full_webp.width(), full_webp.height()), (1536, 1024));

    let stored = server.dir.path().join("images/renditions").join(view["job_id"].as_str().unwrap());
    let mut names: Vec<String> = std::fs::read_dir(&stored)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["w1536.webp", "w256.jpg", "w512.webp"]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_widths_and_formats_get_a_json_400_that_names_the_choices() {
    let server = TestServer::start().await;
    let view = finished_landscape(&server).await;
    let url = view["image_url"].as_str().unwrap();
    for (query, says) in [
        ("w=500", "64, 128, 256, 384, 512, 768, 1024, 1536, 2048"),
        ("w=big", "not an offered width"),
        ("format=gif", "use webp, png or jpeg"),
        ("w=64&w=128", "given twice"),
    ] {
        let response = get(&format!("{url}?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_query", "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    server.stop().await;
}

/// A working job answers any rendition query with its placeholder, never an error.
#[tokio::test]
async fn working_jobs_answer_rendition_queries_with_the_placeholder() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = std::time::Duration::from_secs(30).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started = call(&client, "generate_image", json!({"prompt": "slow"})).await;
    let url = crate::support::structured(&started)["image_url"].as_str().unwrap().to_owned();
    let response = get(&format!("{url}?w=256&format=webp")).await;
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(header(&response, "offstage-job-status"), "working");
    image_of(response, "image/png").await;
    client.cancel().await.unwrap();
    server.stop().await;
}

/// A 10000 x 10000 PNG is a few hundred kilobytes from the provider, 400 MB once decoded.
fn bomb() -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    let pixels = vec![0_u8; 10_000 * 10_000];
    image::ImageEncoder::write_image(
        encoder,
        &pixels,
        10_000,
        10_000,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    out
}

#[tokio::test]
async fn bombs_and_broken_images_from_a_provider_fail_the_job_and_store_nothing() {
    let bomb = tokio::task::spawn_blocking(bomb).await.unwrap();
    let stand_in = openai_standin::spawn(vec![Reply::Bytes(Arc::new(bomb)), Reply::Garbage]).await;
    let base_url = stand_in.base_url.clone();
    let server = TestServer::start_with(move |config| {
        config.provider = "openai";
        config.providers.openai.api_key = Some("sk-test".into());
        config.providers.openai.base_url = base_url;
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    for prompt in ["a bomb", "a broken one"] {
        let started = call(&client, "generate_image", json!({ "prompt": prompt })).await;
        let view = wait_until_ended(&client, &job_id(&started)).await;
        assert_eq!(view["status"], "failed", "{view}");
        assert!(view["error"].as_str().unwrap().contains("broken image"), "{view}");
        assert!(view.get("preview").is_none());
        let placeholder = get(view["image_url"].as_str().unwrap()).await;
        assert_eq!(header(&placeholder, "offstage-job-status"), "failed");
    }
    let images = server.dir.path().join("images");
    let left: Vec<_> = std::fs::read_dir(&images).unwrap().collect();
    assert!(left.is_empty(), "nothing stored: {left:?}");
    client.cancel().await.unwrap();
    server.stop().await;
}
