//! A local stand-in for OpenAI's Images API (`POST /v1/images/generations`, streamed or not, and
//! `POST /v1/images/edits`): it answers from a script, validates requests the way the real API
//! does, and records them for assertions.
//!
//! Bodies follow the documented shapes: `ImagesResponse` (`created`, `data[].b64_json`,
//! `usage`, ...) from openai-python `types/images_response.py`, and errors as
//! `{"error": {"message", "type", "param", "code"}}` with the types and codes OpenAI sends.
//! Streams are in [`stream`], edits in [`edits`].

mod edits;
mod stream;

pub(crate) use stream::{Streamed, partial_png};

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use serde_json::{Value, json};

pub(crate) use crate::providers::standin::png;
use crate::providers::standin::{self, NOT_AN_IMAGE, Recorded, Scripted};

/// What the stand-in answers to one request that passed validation.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with a real PNG of this size (0x0: the size asked for) in `data[0].b64_json`, plus
    /// `created` and `usage`.
    Image { width: u32, height: u32 },
    /// An OpenAI error body. An empty `code` is sent as `null`, as OpenAI does for 5xx.
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
        /// The raw `Retry-After` header value, if any.
        retry_after: Option<&'static str>,
    },
    /// Never answers (sleeps for an hour, or until the stand-in is dropped).
    Hang,
    /// 200 whose `data[0].b64_json` is valid base64 of [`NOT_AN_IMAGE`].
    Garbage,
    /// 200 with `data: []`.
    NoData,
    /// 200 whose `data[0].b64_json` is exactly these bytes (a crafted image).
    Bytes(Arc<Vec<u8>>),
    /// A `text/event-stream` answer with exactly these events, then the end of the body; only
    /// for requests with `stream: true`. (`Image` answers a stream with the partial images
    /// asked for, then the final image.)
    Stream(Vec<Streamed>),
}

impl Reply {
    /// An image at the size the request asked for.
    pub(crate) const ASKED: Reply = Reply::Image { width: 0, height: 0 };

    pub(crate) fn image(width: u32, height: u32) -> Self {
        Self::Image { width, height }
    }

    /// 429 `rate_limit_exceeded` (type `requests`), retryable after the given wait.
    pub(crate) fn rate_limited(retry_after: Option<&'static str>) -> Self {
        Self::Error {
            status: 429,
            code: "rate_limit_exceeded",
            message: "Rate limit reached for gpt-image-1 in organization org-standin on images \
                      per min (IPM): Limit 5, Used 5, Requested 1. Please try again in 12s. \
                      Visit https://platform.openai.com/account/rate-limits to learn more.",
            retry_after,
        }
    }

    /// 429 `insufficient_quota`: the account is out of credit; retrying cannot help.
    pub(crate) fn insufficient_quota() -> Self {
        Self::Error {
            status: 429,
            code: "insufficient_quota",
            message: "You exceeded your current quota, please check your plan and billing \
                      details. For more information on this error, read the docs: \
                      https://platform.openai.com/docs/guides/error-codes/api-errors.",
            retry_after: None,
        }
    }

    /// 400 `moderation_blocked` (type `image_generation_user_error`) from gpt-image's safety
    /// system.
    pub(crate) fn moderation_blocked() -> Self {
        Self::Error {
            status: 400,
            code: "moderation_blocked",
            message: "Your request was rejected by the safety system. If you believe this is an \
                      error, contact us at help.openai.com and include the request ID \
                      req_standin. safety_violations=[violence].",
            retry_after: None,
        }
    }

    /// 400 `content_policy_violation`, DALL·E's safety refusal.
    pub(crate) fn content_policy_violation() -> Self {
        Self::Error {
            status: 400,
            code: "content_policy_violation",
            message: "Your request was rejected as a result of our safety system. Your prompt \
                      may contain text that is not allowed by our safety system.",
            retry_after: None,
        }
    }

    /// 401 `invalid_api_key`; like OpenAI, the message echoes a masked key.
    pub(crate) fn unauthorized() -> Self {
        Self::Error {
            status: 401,
            code: "invalid_api_key",
            message: "Incorrect API key provided: sk-stand*****-key. You can find your API key \
                      at https://platform.openai.com/account/api-keys.",
            retry_after: None,
        }
    }

    /// A 5xx with type `server_error` and a `null` code.
    pub(crate) fn server_error(status: u16) -> Self {
        let message = match status {
            503 => "The server is overloaded or not ready yet.",
            _ => "The server had an error while processing your request. Sorry about that!",
        };
        Self::Error { status, code: "", message, retry_after: None }
    }
}

/// A running OpenAI stand-in; its state is the script and the log of requests.
pub(crate) type StandIn = standin::StandIn<Data>;
pub(crate) type Data = Scripted<Reply>;
type Shared = standin::Shared<Data>;

/// Starts a stand-in on an ephemeral loopback port. Each valid request takes the next reply;
/// once the script is down to one reply, that reply repeats.
pub(crate) async fn spawn(script: Vec<Reply>) -> StandIn {
    let app = Router::new()
        .route("/v1/images/generations", post(generations))
        .route("/v1/images/edits", post(edits::handle))
        .fallback(unknown_route);
    standin::spawn(|_| Scripted::new(script), app).await
}

async fn generations(State(shared): State<Arc<Shared>>, request: Recorded) -> Response {
    shared.log.push(request.clone());
    let json = request.body;
    let checked = check_auth(&request.headers)
        .and_then(|()| validate(&json))
        .and_then(|()| stream::validate(&json));
    let streaming = match checked {
        Ok(streaming) => streaming,
        Err(rejection) => return rejection.into_response(),
    };
    match (shared.script.next(), streaming) {
        (Reply::Image { width, height }, Some(partials)) => {
            let (width, height) = drawn_size(width, height, &json);
            stream::image_events(partials, width, height)
        }
        (Reply::Stream(events), Some(_)) => stream::scripted(&events, &json),
        (Reply::Stream(_), None) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The stand-in was scripted to stream, but the request did not ask to.",
            None,
            None,
        ),
        (reply, _) => answer(&shared, reply, &json).await,
    }
}

/// The size a scripted image is drawn at: as scripted, or the size asked for when scripted
/// as 0x0 ([`Reply::ASKED`]).
fn drawn_size(width: u32, height: u32, body: &Value) -> (u32, u32) {
    let asked = body.get("size").and_then(Value::as_str);
    let asked = asked.and_then(|size| size.split_once('x'));
    match asked.map(|(w, h)| (w.parse(), h.parse())) {
        Some((Ok(w), Ok(h))) if (width, height) == (0, 0) => (w, h),
        _ if (width, height) == (0, 0) => (1024, 1024),
        _ => (width, height),
    }
}

/// The plain (not streamed) answer a reply stands for; `asked` is the JSON body, if any.
async fn answer(shared: &Shared, reply: Reply, asked: &Value) -> Response {
    match reply {
        Reply::Image { width, height } => {
            let (width, height) = drawn_size(width, height, asked);
            image_response(&png(width, height), &format!("{width}x{height}"))
        }
        Reply::Garbage => image_response(NOT_AN_IMAGE, "1024x1024"),
        Reply::NoData => ok_json(json!({ "created": unix_now(), "data": [] })),
        Reply::Bytes(bytes) => image_response(&bytes, "1024x1024"),
        Reply::Stream(_) => unreachable!("streams are answered by `stream`"),
        Reply::Error { status, code, message, retry_after } => {
            let status = StatusCode::from_u16(status).expect("a valid scripted status");
            let code = Some(code).filter(|c| !c.is_empty());
            let mut response = error(status, message, None, code);
            if let Some(value) = retry_after {
                let value = HeaderValue::from_static(value);
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Reply::Hang => {
            shared.hang().await;
            error(StatusCode::GATEWAY_TIMEOUT, "The stand-in hung on purpose.", None, None)
        }
    }
}

/// OpenAI answers unknown routes with 404 `Invalid URL (METHOD /path)`.
async fn unknown_route(State(shared): State<Arc<Shared>>, request: Recorded) -> Response {
    let message = format!("Invalid URL ({} {})", request.method, request.path);
    shared.log.push(request);
    error(StatusCode::NOT_FOUND, &message, None, None)
}

/// Why a request was turned away, before it becomes an error response.
struct Rejection {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl Rejection {
    /// A 400 about one parameter, as the real API words most of them.
    fn bad(message: String, param: &'static str, code: &'static str) -> Self {
        Rejection { status: StatusCode::BAD_REQUEST, message, param: Some(param), code: Some(code) }
    }

    fn into_response(self) -> Response {
        error(self.status, &self.message, self.param, self.code)
    }
}

/// The real API wants `Authorization: Bearer <key>` and answers 401 without it.
fn check_auth(headers: &HeaderMap) -> Result<(), Rejection> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(token) if !token.is_empty() => Ok(()),
        _ => Err(Rejection {
            status: StatusCode::UNAUTHORIZED,
            message: "You didn't provide an API key. You need to provide your API key in an \
                      Authorization header using Bearer auth (i.e. Authorization: Bearer \
                      YOUR_KEY)."
                .to_owned(),
            param: None,
            code: Some("invalid_api_key"),
        }),
    }
}

/// The checks the real endpoint makes on the fields we send, with its messages and codes.
/// Stricter in one way: `model` and `size` are required, because our provider always sends them.
fn validate(body: &Value) -> Result<(), Rejection> {
    let bad = |message: String, param: &'static str, code: &'static str| Rejection {
        status: StatusCode::BAD_REQUEST,
        message,
        param: Some(param),
        code: Some(code),
    };
    let Some(fields) = body.as_object() else {
        return Err(Rejection {
            status: StatusCode::BAD_REQUEST,
            message: "We could not parse the JSON body of your request. (HINT: This likely \
                      means you aren't using your HTTP library correctly. The OpenAI API \
                      expects a JSON payload.)"
                .to_owned(),
            param: None,
            code: None,
        });
    };
    for name in ["model", "prompt", "size"] {
        match fields.get(name) {
            None => {
                let message = format!("Missing required parameter: '{name}'.");
                return Err(bad(message, name, "missing_required_parameter"));
            }
            Some(value) if !value.is_string() => {
                let message = format!("Invalid type for '{name}': expected a string.");
                return Err(bad(message, name, "invalid_type"));
            }
            Some(_) => {}
        }
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let model = text("model").unwrap_or_default();
    if text("prompt").is_some_and(|prompt| prompt.trim().is_empty()) {
        let message = "Invalid 'prompt': string too short. Expected a string with minimum \
                       length 1, but got an empty string instead.";
        return Err(bad(message.to_owned(), "prompt", "string_below_min_length"));
    }
    let sizes: &[&str] = match model {
        "dall-e-2" => &["256x256", "512x512", "1024x1024"],
        "dall-e-3" => &["1024x1024", "1792x1024", "1024x1792"],
        _ => &["1024x1024", "1024x1536", "1536x1024", "auto"],
    };
    let size = text("size").unwrap_or_default();
    if !sizes.contains(&size) {
        let message = format!("Invalid value: '{size}'. Supported values are: {sizes:?}.");
        return Err(bad(message, "size", "invalid_value"));
    }
    if fields.get("n").is_some_and(|n| !n.as_u64().is_some_and(|n| (1..=10).contains(&n))) {
        let message = "Invalid 'n': expected an integer from 1 to 10.".to_owned();
        return Err(bad(message, "n", "invalid_value"));
    }
    if model.starts_with("gpt-image") {
        // gpt-image always returns base64 and rejects the dall-e-only `response_format`.
        if fields.contains_key("response_format") {
            let message = "Unknown parameter: 'response_format'.".to_owned();
            return Err(bad(message, "response_format", "unknown_parameter"));
        }
        let allowed = |name: &str, values: &[&str]| {
            fields.get(name).is_none_or(|v| v.as_str().is_some_and(|v| values.contains(&v)))
        };
        for (name, values) in [
            ("quality", &["low", "medium", "high", "auto"][..]),
            ("output_format", &["png", "jpeg", "webp"][..]),
        ] {
            if !allowed(name, values) {
                let message =
                    format!("Invalid value for '{name}'. Supported values are: {values:?}.");
                return Err(bad(message, name, "invalid_value"));
            }
        }
    }
    Ok(())
}

/// `ImagesResponse` as gpt-image-1 returns it.
fn image_response(image: &[u8], size: &str) -> Response {
    ok_json(json!({
        "created": unix_now(),
        "background": "opaque",
        "data": [{ "b64_json": base64::engine::general_purpose::STANDARD.encode(image) }],
        "output_format": "png",
        "quality": "medium",
        "size": size,
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": { "image_tokens": 0, "text_tokens": 12 },
            "output_tokens": 1056,
            "total_tokens": 1068,
        },
    }))
}

fn ok_json(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({
        "error": {
            "message": message,
            "type": error_type(status, code.unwrap_or_default()),
            "param": param,
            "code": code,
        }
    });
    (status, axum::Json(body)).into_response()
}

/// The `type` OpenAI pairs with each code.
fn error_type(status: StatusCode, code: &str) -> &'static str {
    match code {
        "rate_limit_exceeded" => "requests",
        "insufficient_quota" => "insufficient_quota",
        "moderation_blocked" => "image_generation_user_error",
        _ if status.is_server_error() => "server_error",
        _ => "invalid_request_error",
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}
