//! A local stand-in for Stability AI's `POST /v2beta/stable-image/generate/{core|ultra|sd3}`:
//! it parses the multipart body, validates it the way the real API does, answers from a script
//! and records what it received.
//!
//! Shapes follow Stability's API reference: a 200 with `accept: image/*` is the image itself with
//! `finish-reason` and `seed` headers; errors are `{"id", "name", "errors": [...]}`. The `sd3`
//! endpoint's `mode=image-to-image` takes an `image` file part and a `strength`, refuses
//! `aspect_ratio`, and draws in the source's shape (here: at the source's size).

#![allow(
    clippy::result_large_err,
    reason = "a rejection is the HTTP response the stand-in sends; boxing it would only add noise"
)]
use std::sync::Arc;

use axum::{
    Router,
    extract::{Multipart, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::providers::standin::{self, Recorded, Scripted, png, read_parts};

/// `aspect_ratio` values and the pixel size Stable Image Core draws for each.
pub(crate) const ASPECT_SIZES: [(&str, u32, u32); 9] = [
    ("1:1", 1024, 1024),
    ("16:9", 1344, 768),
    ("21:9", 1536, 640),
    ("2:3", 832, 1216),
    ("3:2", 1216, 832),
    ("4:5", 896, 1088),
    ("5:4", 1088, 896),
    ("9:16", 768, 1344),
    ("9:21", 640, 1536),
];

/// The models the `sd3` endpoint accepts in its `model` field.
pub(crate) const SD3_MODELS: &[&str] =
    &["sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"];

/// The seed the stand-in reports when the request left it to chance.
pub(crate) const RANDOM_SEED: u64 = 1_234_567;

/// The pixel size drawn for an aspect ratio.
pub(crate) fn size_for(aspect_ratio: &str) -> Option<(u32, u32)> {
    ASPECT_SIZES.iter().find(|(name, ..)| *name == aspect_ratio).map(|&(_, w, h)| (w, h))
}

/// What the stand-in answers to one request that passed validation.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with a real PNG sized for the requested ratio and `finish-reason: SUCCESS`.
    Image,
    /// 200 with a (stand-in for a) blurred PNG and `finish-reason: CONTENT_FILTERED`.
    Filtered,
    /// An error body with an optional raw `Retry-After` header.
    Error { status: u16, body: Value, retry_after: Option<&'static str> },
    /// Never answers (sleeps for an hour, or until the stand-in is dropped).
    Hang,
}

impl Reply {
    pub(crate) fn bad_request(message: &str) -> Self {
        error(400, "bad_request", &[message])
    }

    pub(crate) fn unauthorized() -> Self {
        error(401, "unauthorized", &["authorization: invalid or missing header value"])
    }

    pub(crate) fn payment_required() -> Self {
        error(
            402,
            "payment_required",
            &["You lack sufficient credits to make this request. Please purchase more credits."],
        )
    }

    pub(crate) fn content_moderation() -> Self {
        error(
            403,
            "content_moderation",
            &["Your request was flagged by our content moderation system, as a result your \
               request was denied and you were not charged."],
        )
    }

    pub(crate) fn payload_too_large() -> Self {
        error(413, "payload_too_large", &["body: payloads cannot be larger than 10MiB in size"])
    }

    pub(crate) fn rate_limited(retry_after: Option<&'static str>) -> Self {
        let mut reply = error(
            429,
            "rate_limit_exceeded",
            &["You have exceeded the rate limit of 150 requests within a 10 second period."],
        );
        if let Reply::Error { retry_after: header, .. } = &mut reply {
            *header = retry_after;
        }
        reply
    }

    pub(crate) fn server_error(status: u16) -> Self {
        error(
            status,
            "server_error",
            &["An unexpected server error has occurred, please try again later."],
        )
    }
}

fn error(status: u16, name: &str, errors: &[&str]) -> Reply {
    let body = json!({ "id": "0e5c1a9f4b7d2e8a6c3f1b0d9e7a5c2f", "name": name, "errors": errors });
    Reply::Error { status, body, retry_after: None }
}

/// A running Stability stand-in; its state is the script and the log of requests.
pub(crate) type StandIn = standin::StandIn<Scripted<Reply>>;
type Shared = standin::Shared<Scripted<Reply>>;

/// Starts a stand-in on an ephemeral loopback port. Each valid request takes the next reply;
/// once the script is down to one reply, that reply repeats.
pub(crate) async fn spawn(script: Vec<Reply>) -> StandIn {
    standin::spawn(|_| Scripted::new(script), Router::new().fallback(handle)).await
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    // A body that is not multipart is recorded with no fields and rejected below.
    let parts = match multipart {
        Ok(multipart) => read_parts(multipart).await,
        Err(_) => Err("content-type: must be multipart/form-data".to_owned()),
    };
    let mut request = Recorded::new(&method, &uri, &headers, &[]);
    (request.fields, request.files) = parts.clone().unwrap_or_default();
    shared.log.push(request.clone());
    let checked = check_route(&method, uri.path())
        .and_then(|endpoint| check_headers(&headers).map(|()| endpoint))
        .and_then(|endpoint| {
            parts.map_err(|message| rejection(400, "bad_request", &message))?;
            validate(&endpoint, &request)
        });
    let ((width, height), seed) = match checked {
        Ok(found) => found,
        Err(rejection) => return rejection,
    };
    match shared.script.next() {
        Reply::Image => image_response(png(width, height), "SUCCESS", seed),
        Reply::Filtered => image_response(png(width / 8, height / 8), "CONTENT_FILTERED", seed),
        Reply::Error { status, body, retry_after } => {
            standin::json_error(status, body, retry_after)
        }
        Reply::Hang => {
            shared.hang().await;
            let Reply::Error { status, body, .. } = Reply::server_error(500) else {
                unreachable!()
            };
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
    }
}

fn rejection(status: u16, name: &str, message: &str) -> Response {
    let Reply::Error { status, body, .. } = error(status, name, &[message]) else {
        unreachable!("`error` builds an error reply")
    };
    (StatusCode::from_u16(status).expect("a valid status"), axum::Json(body)).into_response()
}

/// Only `POST /v2beta/stable-image/generate/{core|ultra|sd3}` exists here.
fn check_route(method: &Method, path: &str) -> Result<String, Response> {
    let endpoint = path.strip_prefix("/v2beta/stable-image/generate/").unwrap_or_default();
    if method != Method::POST || !matches!(endpoint, "core" | "ultra" | "sd3") {
        return Err(rejection(404, "not_found", &format!("{method} {path}: route not found")));
    }
    Ok(endpoint.to_owned())
}

/// `authorization: Bearer <key>` and an `accept` the endpoint can honour.
fn check_headers(headers: &HeaderMap) -> Result<(), Response> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let key = header(header::AUTHORIZATION).and_then(|value| value.strip_prefix("Bearer "));
    if key.is_none_or(|key| key.trim().is_empty()) {
        let Reply::Error { body, .. } = Reply::unauthorized() else { unreachable!() };
        return Err((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    // The provider always asks for raw bytes; the real API also allows `application/json`.
    if !matches!(header(header::ACCEPT), Some("image/*" | "application/json")) {
        return Err(rejection(
            400,
            "bad_request",
            "accept: must be either `image/*` or `application/json`",
        ));
    }
    Ok(())
}

/// The checks Stability makes on the fields we send. Returns the size to draw and the seed.
fn validate(endpoint: &str, request: &Recorded) -> Result<((u32, u32), u64), Response> {
    let invalid = |message: String| rejection(400, "bad_request", &message);
    for (name, _) in &request.fields {
        let known = [
            "prompt",
            "negative_prompt",
            "aspect_ratio",
            "seed",
            "output_format",
            "style_preset",
            "model",
            "mode",
            "cfg_scale",
            "strength",
        ];
        if !known.contains(&name.as_str()) {
            return Err(invalid(format!("{name}: unknown field")));
        }
    }
    if let Some(file) = request.files.iter().find(|file| file.name != "image") {
        return Err(invalid(format!("{}: unknown field", file.name)));
    }
    let prompt = request.field("prompt").unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(invalid("prompt: is required".to_owned()));
    }
    if prompt.chars().count() > 10_000 {
        return Err(invalid("prompt: must be at most 10000 characters".to_owned()));
    }
    let source = image_to_image(endpoint, request)?;
    let aspect_ratio = request.field("aspect_ratio").unwrap_or("1:1");
    if size_for(aspect_ratio).is_none() {
        return Err(invalid(format!(
            "aspect_ratio: must be one of 16:9, 1:1, 21:9, 2:3, 3:2, 4:5, 5:4, 9:16, 9:21 \
             (got {aspect_ratio})"
        )));
    }
    let output_format = request.field("output_format").unwrap_or("png");
    if !matches!(output_format, "png" | "jpeg" | "webp") {
        return Err(invalid("output_format: must be one of png, jpeg, webp".to_owned()));
    }
    let seed = match request.field("seed") {
        None => RANDOM_SEED,
        Some(seed) => match seed.parse::<u64>() {
            Ok(0) => RANDOM_SEED,
            Ok(seed) if seed <= 4_294_967_294 => seed,
            _ => return Err(invalid("seed: must be an integer in [0, 4294967294]".to_owned())),
        },
    };
    match (endpoint, request.field("model")) {
        ("sd3", Some(model)) if !SD3_MODELS.contains(&model) => {
            return Err(invalid(format!("model: must be one of {}", SD3_MODELS.join(", "))));
        }
        ("core" | "ultra", Some(_)) => {
            return Err(invalid("model: is only accepted by the sd3 endpoint".to_owned()));
        }
        _ => {}
    }
    let size = source.unwrap_or_else(|| size_for(aspect_ratio).expect("checked above"));
    Ok((size, seed))
}

/// `mode` and its fields on the `sd3` endpoint. Returns the source's size for image-to-image.
fn image_to_image(endpoint: &str, request: &Recorded) -> Result<Option<(u32, u32)>, Response> {
    let invalid = |message: &str| rejection(400, "bad_request", message);
    let image = request.files.iter().find(|file| file.name == "image");
    let mode = request.field("mode");
    if mode.is_some() && endpoint != "sd3" {
        return Err(invalid("mode: is only accepted by the sd3 endpoint"));
    }
    match mode.unwrap_or("text-to-image") {
        "text-to-image" => {
            if image.is_some() || request.field("strength").is_some() {
                return Err(invalid("image, strength: are only valid for image-to-image requests"));
            }
            Ok(None)
        }
        "image-to-image" => {
            let Some(image) = image else {
                return Err(invalid("image: is required for image-to-image requests"));
            };
            let strength = request.field("strength").and_then(|value| value.parse::<f64>().ok());
            if !strength.is_some_and(|strength| (0.0..=1.0).contains(&strength)) {
                return Err(invalid("strength: must be a number in [0, 1]"));
            }
            if request.field("aspect_ratio").is_some() {
                return Err(invalid("aspect_ratio: is only valid for text-to-image requests"));
            }
            let declared = image.content_type.as_deref().unwrap_or_default();
            let sniffed =
                image::guess_format(&image.bytes).ok().map(|format| format.to_mime_type());
            if !matches!(declared, "image/png" | "image/jpeg" | "image/webp")
                || sniffed != Some(declared)
            {
                return Err(invalid("image: must be a png, jpeg or webp image"));
            }
            let decoded = image::load_from_memory(&image.bytes)
                .map_err(|_| invalid("image: could not be decoded"))?;
            if decoded.width() < 64 || decoded.height() < 64 {
                return Err(invalid("image: every side must be at least 64 pixels"));
            }
            Ok(Some((decoded.width(), decoded.height())))
        }
        other => {
            Err(invalid(&format!("mode: must be text-to-image or image-to-image (got {other})")))
        }
    }
}

fn image_response(bytes: Vec<u8>, finish_reason: &'static str, seed: u64) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert("finish-reason", HeaderValue::from_static(finish_reason));
    headers.insert("seed", HeaderValue::from(seed));
    response
}
