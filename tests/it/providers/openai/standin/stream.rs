//! The stand-in's Server-Sent Events answers to generations with `stream: true`, shaped like
//! openai-python's `ImageGenPartialImageEvent` and `ImageGenCompletedEvent`, plus the faults a
//! real stream can have: an error event part-way, a body that ends before the final image, and
//! an event larger than any image.

use std::convert::Infallible;

use axum::{
    body::{Body, Bytes},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Rejection, png, unix_now};

/// One scripted event of a streamed answer; the body ends after the last one.
#[derive(Debug, Clone)]
pub(crate) enum Streamed {
    /// `image_generation.partial_image` with this index and [`partial_png`] as its image.
    Partial(u32),
    /// `image_generation.completed` with the final image ([`png`]).
    Completed,
    /// `event: error` whose data is `{"error": {"type", "code", "message", "param"}}`.
    Error { kind: &'static str, code: Option<&'static str>, message: &'static str },
    /// A partial image event whose data is this many bytes of base64 filler.
    Oversized(usize),
}

/// What a partial image with `index` looks like: the final gradient, still washed out, so that
/// each partial differs from the others and from the final image.
pub(crate) fn partial_png(width: u32, height: u32, index: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, _| {
        let level = (x * 255 / width.max(1)) as u8 / 4 + 40 * (index as u8 + 1);
        image::Rgb([level, level, 128])
    });
    let mut encoded = std::io::Cursor::new(Vec::new());
    image.write_to(&mut encoded, image::ImageFormat::Png).expect("encode a partial PNG");
    encoded.into_inner()
}

/// `stream` and `partial_images` as the real endpoint checks them. `Some(partials)` when the
/// request asks for a stream.
pub(super) fn validate(body: &Value) -> Result<Option<u32>, Rejection> {
    let stream = match body.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            let message = "Invalid type for 'stream': expected a boolean.".to_owned();
            return Err(Rejection::bad(message, "stream", "invalid_type"));
        }
    };
    let partials = match body.get("partial_images") {
        None | Some(Value::Null) => 0,
        Some(value) => match value.as_u64() {
            Some(count) if count <= 3 => count as u32,
            _ => {
                let message = "Invalid 'partial_images': integer above maximum value. \
                               Expected a value <= 3."
                    .to_owned();
                return Err(Rejection::bad(message, "partial_images", "integer_above_max_value"));
            }
        },
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    if stream && !model.starts_with("gpt-image") {
        let message = format!("Streaming is not supported for model '{model}'.");
        return Err(Rejection::bad(message, "stream", "unsupported_value"));
    }
    Ok(stream.then_some(partials))
}

/// What the real API streams for a successful generation: the partial images asked for, then
/// the final image.
pub(super) fn image_events(partials: u32, width: u32, height: u32) -> Response {
    let mut events: Vec<Streamed> = (0..partials).map(Streamed::Partial).collect();
    events.push(Streamed::Completed);
    let size = format!("{width}x{height}");
    respond(&events, width, height, &size)
}

/// Exactly the scripted events, sized as the request asked.
pub(super) fn scripted(events: &[Streamed], request: &Value) -> Response {
    let size = request.get("size").and_then(Value::as_str).unwrap_or("1024x1024");
    let (width, height) = size
        .split_once('x')
        .and_then(|(width, height)| Some((width.parse().ok()?, height.parse().ok()?)))
        .unwrap_or((1024, 1024));
    respond(events, width, height, size)
}

fn respond(events: &[Streamed], width: u32, height: u32, size: &str) -> Response {
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let common = |kind: &str, image: String| {
        json!({
            "type": kind,
            "b64_json": image,
            "background": "opaque",
            "created_at": unix_now(),
            "output_format": "png",
            "quality": "medium",
            "size": size,
        })
    };
    let frames: Vec<Result<Bytes, Infallible>> = events
        .iter()
        .map(|event| {
            let (name, data) = match event {
                Streamed::Partial(index) => {
                    let name = "image_generation.partial_image";
                    let mut data = common(name, base64(&partial_png(width, height, *index)));
                    data["partial_image_index"] = json!(index);
                    (name, data)
                }
                Streamed::Oversized(bytes) => {
                    let name = "image_generation.partial_image";
                    let mut data = common(name, "A".repeat(*bytes));
                    data["partial_image_index"] = json!(0);
                    (name, data)
                }
                Streamed::Completed => {
                    let name = "image_generation.completed";
                    let mut data = common(name, base64(&png(width, height)));
                    data["usage"] = json!({
                        "input_tokens": 12,
                        "input_tokens_details": { "image_tokens": 0, "text_tokens": 12 },
                        "output_tokens": 1056,
                        "total_tokens": 1068,
                    });
                    (name, data)
                }
                Streamed::Error { kind, code, message } => {
                    let error =
                        json!({ "type": kind, "code": code, "message": message, "param": null });
                    ("error", json!({ "error": error }))
                }
            };
            Ok(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
        })
        .collect();
    let mut response =
        (StatusCode::OK, Body::from_stream(futures::stream::iter(frames))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
