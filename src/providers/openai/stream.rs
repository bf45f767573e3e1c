//! The Server-Sent Events answer to `stream: true`: partial images go to the caller's sink as
//! they arrive, and the `image_generation.completed` event is the result.
//!
//! Event shapes follow openai-python's `types/image_gen_partial_image_event.py` and
//! `image_gen_completed_event.py` (`type`, `b64_json`, `partial_image_index`); errors inside a
//! stream follow its `_streaming.py`: an `error` event, or any event whose data holds an
//! `error` object, ends the stream. Framing is `sse-stream`'s (already under rmcp); this file
//! only bounds what it may buffer and reads the events.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sse_stream::{Sse, SseStream};

use super::{
    super::http::{Api, transport_error},
    status_error,
};
use crate::providers::{PartialImage, Partials, ProviderError};

/// What one stream may make us read.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamLimits {
    /// Bytes between two events; the completed event carries a whole image in base64.
    pub(super) event: usize,
    /// Bytes of the whole stream: every partial image and the final one.
    pub(super) total: usize,
}

/// Reads events until the final image and returns its bytes, handing partial images to
/// `partials` on the way. A stream that ends without the final image is a broken connection.
pub(super) async fn read_image(
    response: reqwest::Response,
    limits: StreamLimits,
    partials: &Partials,
    api: &Api,
) -> Result<Bytes, ProviderError> {
    let since_event = Arc::new(AtomicUsize::new(0));
    let chunks = capped_chunks(response, limits, Arc::clone(&since_event));
    let mut events = std::pin::pin!(SseStream::from_bytes_stream(chunks));
    let mut last_index: Option<u32> = None;
    while let Some(event) = events.next().await {
        since_event.store(0, Ordering::Relaxed);
        let event = event.map_err(sse_error)?;
        match read_event(&event, api)? {
            Event::Partial { index, bytes } => {
                let index = index.unwrap_or_else(|| last_index.map_or(0, |last| last + 1));
                // Partials are previews: an out-of-order one would only replace a newer one.
                if last_index.is_none_or(|last| index > last) {
                    last_index = Some(index);
                    partials.send(PartialImage { index, bytes });
                }
            }
            Event::Completed(bytes) => return Ok(bytes),
            Event::Done => break,
            Event::Other => {}
        }
    }
    Err(ProviderError::Connect("the image stream ended before the final image".to_owned()))
}

/// What one event means to us.
enum Event {
    Partial {
        index: Option<u32>,
        bytes: Bytes,
    },
    Completed(Bytes),
    /// `data: [DONE]`, which some compatible servers send last.
    Done,
    /// Keep-alives and event types we do not use.
    Other,
}

/// The fields of the image events we read; everything else is ignored.
#[derive(Deserialize)]
struct EventData {
    #[serde(rename = "type")]
    kind: Option<String>,
    b64_json: Option<String>,
    partial_image_index: Option<u32>,
}

fn read_event(event: &Sse, api: &Api) -> Result<Event, ProviderError> {
    let Some(data) = event.data.as_deref().map(str::trim).filter(|data| !data.is_empty()) else {
        return Ok(Event::Other);
    };
    if data.starts_with("[DONE]") {
        return Ok(Event::Done);
    }
    let value: Value = serde_json::from_str(data).map_err(|error| {
        ProviderError::InvalidResponse(format!("an event is not the documented JSON: {error}"))
    })?;
    let named_error = event.event.as_deref() == Some("error")
        || value.get("type").and_then(Value::as_str) == Some("error");
    if named_error || value.get("error").is_some_and(|error| !error.is_null()) {
        return Err(stream_error(&value, api));
    }
    let parsed: EventData = serde_json::from_value(value).map_err(|error| {
        ProviderError::InvalidResponse(format!("an event is not the documented JSON: {error}"))
    })?;
    let kind = parsed.kind.as_deref().or(event.event.as_deref()).unwrap_or_default();
    let image = || {
        let encoded = parsed.b64_json.as_deref().unwrap_or_default();
        let standard = &base64::engine::general_purpose::STANDARD;
        let bytes = super::super::decode_base64(standard, encoded.trim()).map_err(|error| {
            ProviderError::InvalidResponse(format!("`b64_json` is not base64: {error}"))
        })?;
        if bytes.is_empty() {
            return Err(ProviderError::InvalidResponse("an event has no `b64_json`".to_owned()));
        }
        Ok(Bytes::from(bytes))
    };
    match kind {
        "image_generation.completed" | "image_edit.completed" => Ok(Event::Completed(image()?)),
        "image_generation.partial_image" | "image_edit.partial_image" => match image() {
            Ok(bytes) => Ok(Event::Partial { index: parsed.partial_image_index, bytes }),
            Err(error) => {
                // A broken preview is no reason to lose the final image.
                tracing::debug!(%error, "skipping an unusable partial image");
                Ok(Event::Other)
            }
        },
        _ => Ok(Event::Other),
    }
}

/// Maps an error inside a stream. The status line already said 200, so the error's code and
/// type stand in for the status the same failure has as a plain answer; the mapping is then
/// exactly that of plain answers.
fn stream_error(data: &Value, api: &Api) -> ProviderError {
    // `{"error": {...}}` as `_streaming.py` reads it, or the fields at the top level as in the
    // Responses API's `error` event.
    let detail = match data.get("error") {
        Some(detail @ Value::Object(_)) => detail,
        _ => data,
    };
    let text = |name: &str| detail.get(name).and_then(Value::as_str).unwrap_or_default();
    let status = match (text("code"), text("type")) {
        ("rate_limit_exceeded" | "insufficient_quota", _)
        | (_, "requests" | "tokens" | "insufficient_quota") => 429,
        ("invalid_api_key", _) | (_, "authentication_error") => 401,
        ("moderation_blocked" | "content_policy_violation", _)
        | (_, "invalid_request_error" | "image_generation_user_error") => 400,
        _ => 500,
    };
    let status = StatusCode::from_u16(status).expect("the statuses above are valid");
    let body = serde_json::to_vec(&json!({ "error": detail })).unwrap_or_default();
    status_error(status, None, &body, api)
}

/// Why the bytes under the SSE parser stopped early.
#[derive(Debug, thiserror::Error)]
enum Cut {
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error("an event exceeds {0} bytes")]
    EventTooLarge(usize),
    #[error("the event stream exceeds {0} bytes")]
    StreamTooLarge(usize),
}

/// The response body as a stream of chunks that fails once more than `limits.event` bytes
/// arrive between two events (`since_event`, reset by the reader) or more than `limits.total`
/// in all. The parser buffers at most one event, so this bounds memory; an event can pass its
/// cap by the part of it that came in the chunk before the last event was taken.
fn capped_chunks(
    response: reqwest::Response,
    limits: StreamLimits,
    since_event: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Bytes, Cut>> {
    stream::unfold(Some((response, 0_usize)), move |state| {
        let since_event = Arc::clone(&since_event);
        async move {
            let (mut response, total) = state?;
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return None,
                Err(error) => return Some((Err(Cut::Transport(error)), None)),
            };
            let total = total + chunk.len();
            let pending = since_event.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if pending > limits.event {
                return Some((Err(Cut::EventTooLarge(limits.event)), None));
            }
            if total > limits.total {
                return Some((Err(Cut::StreamTooLarge(limits.total)), None));
            }
            Some((Ok(chunk), Some((response, total))))
        }
    })
}

fn sse_error(error: sse_stream::Error) -> ProviderError {
    match error {
        sse_stream::Error::Body(cause) => match cause.downcast::<Cut>() {
            Ok(cut) => match *cut {
                Cut::Transport(error) => transport_error(error),
                too_large => ProviderError::InvalidResponse(too_large.to_string()),
            },
            Err(other) => ProviderError::InvalidResponse(format!("unreadable stream: {other}")),
        },
        other => ProviderError::InvalidResponse(format!("not a valid event stream: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn key() -> Api {
        crate::providers::http::test_api("sk-secret")
    }

    fn event(name: Option<&str>, data: &str) -> Sse {
        Sse { event: name.map(str::to_owned), data: Some(data.to_owned()), ..Sse::default() }
    }

    #[test]
    fn errors_in_a_stream_map_like_plain_answers() {
        let error = |data: Value| read_event(&event(Some("error"), &data.to_string()), &key());
        let refused = error(json!({"error": {"code": "moderation_blocked", "message": "no",
            "type": "image_generation_user_error"}}));
        assert!(matches!(refused, Err(ProviderError::Refused { .. })), "{:?}", refused.err());
        let limited = error(json!({"type": "error", "code": "rate_limit_exceeded",
            "message": "slow down"}));
        assert!(matches!(limited, Err(ProviderError::RateLimited { .. })), "{:?}", limited.err());
        let server = error(json!({"error": {"type": "server_error", "message": "oops"}}));
        assert!(matches!(server, Err(ProviderError::Unavailable { status: 500, .. })));
        let leaked = error(json!({"error": {"type": "invalid_request_error",
            "message": "bad key sk-secret"}}));
        let Err(ProviderError::BadRequest(message)) = leaked else { panic!("{:?}", leaked.err()) };
        assert_eq!(message, "bad key <redacted>");
    }

    #[test]
    fn an_error_field_without_an_error_event_still_ends_the_stream() {
        let data = json!({"error": {"code": "insufficient_quota", "message": "pay"}}).to_string();
        let result = read_event(&event(None, &data), &key());
        assert!(matches!(result, Err(ProviderError::QuotaExhausted)), "{:?}", result.err());
    }

    #[test]
    fn unknown_events_and_done_are_not_images() {
        let other = read_event(&event(Some("ping"), r#"{"type":"ping"}"#), &key());
        assert!(matches!(other, Ok(Event::Other)));
        assert!(matches!(read_event(&event(None, "[DONE]"), &key()), Ok(Event::Done)));
        let garbled = read_event(&event(None, "{not json"), &key());
        assert!(matches!(garbled, Err(ProviderError::InvalidResponse(_))));
    }

    #[test]
    fn the_type_comes_from_the_data_or_else_the_event_name() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"png bytes");
        let data = json!({"b64_json": png, "partial_image_index": 1}).to_string();
        let partial = read_event(&event(Some("image_generation.partial_image"), &data), &key());
        assert!(matches!(partial, Ok(Event::Partial { index: Some(1), .. })));
        let data = json!({"type": "image_generation.completed", "b64_json": png}).to_string();
        let Ok(Event::Completed(bytes)) = read_event(&event(None, &data), &key()) else {
            panic!("a completed event")
        };
        assert_eq!(&bytes[..], b"png bytes");
    }
}
