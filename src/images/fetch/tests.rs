//! Fetches against local axum servers: what gets through, and every way a URL is refused.

use std::{convert::Infallible, io::Cursor, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Redirect},
    routing::get,
};

use super::*;

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb([200, 100, 50]));
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// A valid PNG whose IHDR claims `width` x `height`; decoding it would need gigabytes.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Serves the routes every test uses on an ephemeral loopback port.
async fn serve() -> SocketAddr {
    let router = Router::new()
        .route("/x.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(8, 6)) }))
        .route("/hop", get(|| async { Redirect::temporary("/x.png") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route("/big", get(|| async { vec![0u8; 4096] }))
        .route(
            "/chunked",
            get(|| async {
                let chunks = (0..8).map(|_| Ok::<_, Infallible>(Bytes::from(vec![0u8; 1024])));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/fake.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], "<html>hi</html>") }),
        )
        .route("/bomb.png", get(|| async { png_claiming(100_000, 100_000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                png(1, 1)
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND.into_response() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// A server whose only route redirects to `target`.
async fn serve_redirect(target: &'static str) -> SocketAddr {
    let router = Router::new().route("/", get(move || async move { Redirect::temporary(target) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

fn permissive() -> ImageFetcher {
    ImageFetcher::new(FetchLimits { allow_private: true, ..FetchLimits::default() }).unwrap()
}

fn guarded() -> ImageFetcher {
    ImageFetcher::new(FetchLimits::default()).unwrap()
}

#[tokio::test]
async fn png_is_fetched_and_sniffed() {
    let address = serve().await;
    let image = permissive().fetch(&format!("http://{address}/x.png")).await.unwrap();
    assert_eq!(image.format, image::ImageFormat::Png);
    assert_eq!((image.width, image.height), (8, 6));
    assert_eq!(image.final_url.path(), "/x.png");
}

#[tokio::test]
async fn private_destinations_are_refused_by_default() {
    let address = serve().await;
    let port = address.port();
    for url in [
        format!("http://127.0.0.1:{port}/x.png"),
        format!("http://localhost:{port}/x.png"),
        format!("http://[::1]:{port}/x.png"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/x.png".to_owned(),
    ] {
        let error = guarded().fetch(&url).await.unwrap_err();
        assert!(matches!(error, FetchError::PrivateAddress { .. }), "{url}: {error:?}");
        assert_eq!(error.code(), "private_address");
    }
}

#[tokio::test]
async fn non_http_schemes_and_credentials_are_refused() {
    for url in ["ftp://example.com/x.png", "file:///etc/passwd"] {
        let error = permissive().fetch(url).await.unwrap_err();
        assert!(matches!(error, FetchError::NotHttp { .. }), "{url}: {error:?}");
    }
    let error = permissive().fetch("http://user:pw@127.0.0.1/x.png").await.unwrap_err();
    assert!(matches!(error, FetchError::Credentials), "{error:?}");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let address = serve().await;
    let image = permissive().fetch(&format!("http://{address}/hop")).await.unwrap();
    assert_eq!(image.final_url.path(), "/x.png");
    let error = permissive().fetch(&format!("http://{address}/loop")).await.unwrap_err();
    assert!(matches!(error, FetchError::TooManyRedirects { limit: 3 }), "{error:?}");
}

#[tokio::test]
async fn redirect_from_allowed_origin_to_private_one_is_refused() {
    let private = serve().await;
    let target: &'static str = format!("http://{private}/x.png").leak();
    for target in [target, "http://169.254.169.254/latest/meta-data"] {
        let origin = serve_redirect(target).await;
        let fetcher = ImageFetcher::new(FetchLimits {
            private_allowlist: vec![origin],
            ..FetchLimits::default()
        })
        .unwrap();
        let error = fetcher.fetch(&format!("http://{origin}/")).await.unwrap_err();
        assert!(matches!(error, FetchError::PrivateAddress { .. }), "{target}: {error:?}");
    }
    // The same chain succeeds when the target is allowlisted too, so the hop was the refusal.
    let origin = serve_redirect(target).await;
    let fetcher = ImageFetcher::new(FetchLimits {
        private_allowlist: vec![origin, private],
        ..FetchLimits::default()
    })
    .unwrap();
    assert!(fetcher.fetch(&format!("http://{origin}/")).await.is_ok());
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_or_without_length() {
    let address = serve().await;
    let fetcher = ImageFetcher::new(FetchLimits {
        max_bytes: 2048,
        allow_private: true,
        ..Default::default()
    })
    .unwrap();
    for path in ["big", "chunked"] {
        let error = fetcher.fetch(&format!("http://{address}/{path}")).await.unwrap_err();
        assert!(matches!(error, FetchError::TooLarge { limit: 2048 }), "{path}: {error:?}");
    }
}

#[tokio::test]
async fn html_served_as_png_is_not_an_image() {
    let address = serve().await;
    let error = permissive().fetch(&format!("http://{address}/fake.png")).await.unwrap_err();
    assert!(matches!(error, FetchError::NotAnImage), "{error:?}");
}

#[tokio::test]
async fn pixel_bomb_is_refused_from_its_header() {
    let address = serve().await;
    let error = permissive().fetch(&format!("http://{address}/bomb.png")).await.unwrap_err();
    assert!(
        matches!(error, FetchError::TooManyPixels { width: 100_000, height: 100_000 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let address = serve().await;
    let fetcher = ImageFetcher::new(FetchLimits {
        timeout: Duration::from_millis(300),
        allow_private: true,
        ..FetchLimits::default()
    })
    .unwrap();
    let error = fetcher.fetch(&format!("http://{address}/slow")).await.unwrap_err();
    assert!(matches!(error, FetchError::Timeout), "{error:?}");
}

#[tokio::test]
async fn error_status_is_reported() {
    let address = serve().await;
    let error = permissive().fetch(&format!("http://{address}/missing")).await.unwrap_err();
    assert!(matches!(error, FetchError::Status(404)), "{error:?}");
}

#[test]
fn formats_the_pipeline_cannot_decode_are_not_images() {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[4, 0, 3, 0, 0, 0, 0]);
    assert!(matches!(sniff(&gif, 40_000_000), Err(FetchError::NotAnImage)));
}
