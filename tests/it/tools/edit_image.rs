//! `edit_image` end to end: editing an earlier picture by job id (even one still being made),
//! editing one at a URL, and the URL guard refusing private addresses (literal, by DNS name,
//! by redirect), oversized bodies and things that are not images.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::{Value, json};

use crate::support::{
    TestServer, call, fetch_image, job_id, modern_client, structured, text, wait_until_ended,
};

/// A small web server with the bodies `edit_image` meets in the field, counting its hits.
struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Origin {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

async fn origin(redirect_to: Option<String>) -> Origin {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = |hits: &Arc<AtomicUsize>| {
        let hits = hits.clone();
        move || {
            hits.fetch_add(1, Ordering::SeqCst);
        }
    };
    let (photo, huge, page, moved) =
        (counted(&hits), counted(&hits), counted(&hits), counted(&hits));
    let app = Router::new()
        .route(
            "/photo.png",
            get(move || async move {
                photo();
                ([(header::CONTENT_TYPE, "image/png")], png(300, 200))
            }),
        )
        .route(
            "/huge.png",
            get(move || async move {
                huge();
                ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 21 * 1024 * 1024])
            }),
        )
        .route(
            "/page.png",
            get(move || async move {
                page();
                ([(header::CONTENT_TYPE, "image/png")], "<html>not a picture</html>")
            }),
        )
        .route(
            "/moved.png",
            get(move || {
                let target = redirect_to.clone().unwrap_or_default();
                async move {
                    moved();
                    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Origin { addr, hits }
}

/// A server whose `edit_image` may fetch from `allowed` (an operator's own image host).
async fn server(allowed: Vec<SocketAddr>) -> TestServer {
    TestServer::start_with(move |config| {
        config.tools.image_hosts = allowed;
        config.providers.sketch.latency = Duration::from_millis(200).into();
    })
    .await
}

async fn edit(server: &TestServer, image: &str) -> Value {
    let (client, _) = modern_client(&server.url(), None).await;
    let started =
        call(&client, "edit_image", json!({"image": image, "instruction": "make it blue"})).await;
    assert_eq!(started.is_error, Some(false), "{}", text(&started));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits for the edit");
    let view = wait_until_ended(&client, &job_id(&started)).await;
    client.cancel().await.unwrap();
    view
}

#[tokio::test]
async fn an_earlier_picture_is_edited_by_its_job_id_even_while_it_is_being_made() {
    let server = server(vec![]).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let made =
        call(&client, "generate_image", json!({"prompt": "a fox", "size": "portrait"})).await;
    let source = job_id(&made);
    let started =
        call(&client, "edit_image", json!({"image": source, "instruction": "add a hat"})).await;
    assert_eq!(started.is_error, Some(false), "{}", text(&started));
    let edited = wait_until_ended(&client, &job_id(&started)).await;
    assert_eq!(edited["status"], "completed", "{edited}");
    assert_eq!(edited["tool"], "edit_image");
    let original = wait_until_ended(&client, &source).await;
    let (_, _, before) = fetch_image(original["image_url"].as_str().unwrap()).await;
    let (_, _, after) = fetch_image(edited["image_url"].as_str().unwrap()).await;
    assert_eq!((after.width(), after.height()), (1024, 1536), "the source's portrait shape");
    assert_ne!(before.to_rgb8().into_raw(), after.to_rgb8().into_raw(), "the edit changed it");
    assert_eq!(edited["provider"]["name"], "sketch");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_picture_at_an_allowed_url_is_edited() {
    let origin = origin(None).await;
    let server = server(vec![origin.addr]).await;
    let view = edit(&server, &origin.url("/photo.png")).await;
    assert_eq!(view["status"], "completed", "{view}");
    let (_, _, edited) = fetch_image(view["image_url"].as_str().unwrap()).await;
    assert_eq!((edited.width(), edited.height()), (1536, 1024), "3:2 becomes landscape");
    assert_eq!(origin.hits.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_literal_by_name_and_by_redirect() {
    let private = origin(None).await;
    let hop = origin(Some(private.url("/photo.png"))).await;
    // Only the hop is allowed; the private origin behind it is not.
    let server = server(vec![hop.addr]).await;
    let localhost = format!("http://localhost:{}/photo.png", private.addr.port());
    for url in [private.url("/photo.png"), localhost, hop.url("/moved.png")] {
        let view = edit(&server, &url).await;
        assert_eq!(view["status"], "failed", "{url}: {view}");
        let error = view["error"].as_str().unwrap();
        assert!(error.contains("private network"), "{url}: {error}");
        assert!(!error.contains("127.0.0.1"), "no internal address is spoken: {error}");
    }
    assert_eq!(private.hits.load(Ordering::SeqCst), 0, "the private origin was never contacted");
    assert_eq!(hop.hits.load(Ordering::SeqCst), 1, "the allowed hop was, once");
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_non_image_bodies_are_refused() {
    let origin = origin(None).await;
    let server = server(vec![origin.addr]).await;
    for (path, phrase) in [("/huge.png", "too large"), ("/page.png", "not a PNG, JPEG or WebP")] {
        let view = edit(&server, &origin.url(path)).await;
        assert_eq!(view["status"], "failed", "{path}: {view}");
        let error = view["error"].as_str().unwrap();
        assert!(error.contains(phrase), "{path}: `{error}` should say `{phrase}`");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_sources_are_tool_errors_the_model_can_act_on() {
    let server = server(vec![]).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let cases = [
        (json!({"image": "file:///etc/passwd", "instruction": "x"}), "http(s) link"),
        (json!({"image": "01jabcdefghjkmnpqrstvwxyz0", "instruction": "x"}), "no job"),
        (json!({"image": "https://example.com/a.png", "instruction": " "}), "empty"),
        (json!({"image": "https://example.com/a.png"}), "instruction"),
    ];
    for (arguments, phrase) in cases {
        let result = call(&client, "edit_image", arguments.clone()).await;
        assert_eq!(result.is_error, Some(true), "{arguments}");
        let said = text(&result);
        assert!(
            said.to_lowercase().contains(phrase),
            "{arguments}: `{said}` should say `{phrase}`"
        );
    }
    let cancelled = call(&client, "generate_image", json!({"prompt": "a fox"})).await;
    let id = job_id(&cancelled);
    call(&client, "cancel_job", json!({"job_id": id})).await;
    let result = call(&client, "edit_image", json!({"image": id, "instruction": "x"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("nothing to edit"), "{}", text(&result));
    client.cancel().await.unwrap();
    server.stop().await;
}
