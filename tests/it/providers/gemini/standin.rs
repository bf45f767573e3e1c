//! A local stand-in for the Gemini API's `POST /v1beta/models/{model}:generateContent` with image
//! output: it answers from a script, validates requests the way Google does, and records them.
//!
//! Bodies follow Google's documented shapes: `GenerateContentResponse` (`candidates[].content.
//! parts[].inlineData`, `finishReason`, `promptFeedback.blockReason`, `usageMetadata`) from the
//! API reference, the pixel size of each `imageConfig.aspectRatio` from the image-generation
//! guide, and errors as `{"error": {"code", "message", "status", "details"}}` with the
//! `google.rpc` detail types and messages Google sends. Edits are the same call with the
//! source image as an `inlineData` part; the stand-in checks every such part is a real image of
//! its declared type.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::providers::standin::{self, NOT_AN_IMAGE, Recorded, Scripted, png};

/// The image models the stand-in serves; any other model is 404 as on the real API.
pub(crate) const MODELS: &[&str] =
    &["gemini-2.5-flash-image", "gemini-2.5-flash-image-preview", "gemini-3-pro-image-preview"];

/// `imageConfig.aspectRatio` values and the size gemini-2.5-flash-image draws for each.
pub(crate) const ASPECT_SIZES: [(&str, u32, u32); 10] = [
    ("1:1", 1024, 1024),
    ("2:3", 832, 1248),
    ("3:2", 1248, 832),
    ("3:4", 864, 1184),
    ("4:3", 1184, 864),
    ("4:5", 896, 1152),
    ("5:4", 1152, 896),
    ("9:16", 768, 1344),
    ("16:9", 1344, 768),
    ("21:9", 1536, 672),
];

/// The pixel size Gemini draws for an aspect ratio.
pub(crate) fn size_for(aspect_ratio: &str) -> Option<(u32, u32)> {
    ASPECT_SIZES.iter().find(|(name, ..)| *name == aspect_ratio).map(|&(_, w, h)| (w, h))
}

/// What the stand-in answers to one request that passed validation.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with a real PNG, sized for the requested aspect ratio, as `inlineData`.
    Image,
    /// Like `Image`, with a text part first and snake_case field names, as some proxies send.
    ImageWithTextSnakeCase,
    /// A Google error body, with an optional raw `Retry-After` header.
    Error { status: u16, body: Value, retry_after: Option<&'static str> },
    /// 200 without candidates: `promptFeedback.blockReason` says the prompt was blocked.
    Blocked { reason: &'static str },
    /// 200 with one candidate that has no image, only this `finishReason` and optional text.
    NoImage { finish_reason: &'static str, text: Option<&'static str> },
    /// 200 whose `inlineData.data` is valid base64 of [`NOT_AN_IMAGE`].
    Garbage,
    /// Never answers (sleeps for an hour, or until the stand-in is dropped).
    Hang,
}

impl Reply {
    /// 400 INVALID_ARGUMENT as Google words a bad field value.
    pub(crate) fn invalid_argument() -> Self {
        error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            vec![bad_request("generation_config", "The prompt could not be processed.")],
        )
    }

    /// 400 FAILED_PRECONDITION: the free tier is not offered where the caller is.
    pub(crate) fn failed_precondition() -> Self {
        error(
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use without a billing account linked.",
            Vec::new(),
        )
    }

    /// 400 INVALID_ARGUMENT with `ErrorInfo.reason = API_KEY_INVALID`: Google's answer to a
    /// wrong key.
    pub(crate) fn api_key_invalid() -> Self {
        let message = "API key not valid. Please pass a valid API key.";
        error(
            400,
            "INVALID_ARGUMENT",
            message,
            vec![
                error_info("API_KEY_INVALID"),
                json!({
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                }),
            ],
        )
    }

    /// 403 PERMISSION_DENIED, for a key without access to the API or model.
    pub(crate) fn permission_denied() -> Self {
        error(
            403,
            "PERMISSION_DENIED",
            "Your API key doesn't have the required permissions.",
            vec![error_info("SERVICE_DISABLED")],
        )
    }

    /// 429 RESOURCE_EXHAUSTED for a per-minute quota, with a `RetryInfo` delay such as `"37s"`.
    pub(crate) fn resource_exhausted(retry_delay: &str) -> Self {
        error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For \
             more information on this error, head to: \
             https://ai.google.dev/gemini-api/docs/rate-limits.",
            vec![
                quota_failure("GenerateRequestsPerMinutePerProjectPerModel", "10"),
                json!({
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }],
                }),
                json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": retry_delay,
                }),
            ],
        )
    }

    /// The same error with a `Retry-After` header, as a proxy in front of Google may add.
    pub(crate) fn with_retry_after(mut self, value: &'static str) -> Self {
        if let Reply::Error { retry_after, .. } = &mut self {
            *retry_after = Some(value);
        }
        self
    }

    /// 429 RESOURCE_EXHAUSTED for the free tier's daily quota: nothing helps until tomorrow.
    pub(crate) fn daily_quota_exhausted() -> Self {
        error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            vec![
                quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "100"),
                json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "52s",
                }),
            ],
        )
    }

    /// 500 INTERNAL, 503 UNAVAILABLE or 504 DEADLINE_EXCEEDED with Google's messages.
    pub(crate) fn server_error(status: u16) -> Self {
        let (grpc_status, message) = match status {
            503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
            _ => (
                "INTERNAL",
                "An internal error has occurred. Please retry or report in \
                               https://developers.generativeai.google/guide/troubleshooting",
            ),
        };
        error(status, grpc_status, message, Vec::new())
    }

    /// A candidate stopped by the image safety filter, with no image and no text.
    pub(crate) fn image_safety() -> Self {
        Self::NoImage { finish_reason: "IMAGE_SAFETY", text: None }
    }

    /// A candidate that only talks: `STOP` with a text part and no image.
    pub(crate) fn text_only() -> Self {
        Self::NoImage {
            finish_reason: "STOP",
            text: Some("I can describe a lighthouse for you, but here is no picture."),
        }
    }
}

fn error(status: u16, grpc_status: &str, message: &str, details: Vec<Value>) -> Reply {
    let mut error = json!({ "code": status, "message": message, "status": grpc_status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    Reply::Error { status, body: json!({ "error": error }), retry_after: None }
}

fn error_info(reason: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": { "service": "generativelanguage.googleapis.com" },
    })
}

fn quota_failure(quota_id: &str, value: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": quota_id,
            "quotaDimensions": { "location": "global", "model": "gemini-2.5-flash-image" },
            "quotaValue": value,
        }],
    })
}

fn bad_request(field: &str, description: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{ "field": field, "description": description }],
    })
}

/// The `inlineData` parts of the first turn of a request, as (MIME type, decoded bytes).
pub(crate) fn inline_images(request: &Recorded) -> Vec<(String, Vec<u8>)> {
    let parts = request.body.pointer("/contents/0/parts").and_then(Value::as_array);
    parts
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("inlineData").or_else(|| part.get("inline_data")))
        .map(|blob| {
            let text = |names: [&str; 2]| {
                names.iter().find_map(|name| blob.get(*name).and_then(Value::as_str))
            };
            let mime = text(["mimeType", "mime_type"]).unwrap_or_default().to_owned();
            let data = blob.get("data").and_then(Value::as_str).unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD.decode(data);
            (mime, bytes.expect("the stand-in accepted only base64"))
        })
        .collect()
}

/// A running Gemini stand-in; its state is the script and the log of requests.
pub(crate) type StandIn = standin::StandIn<Scripted<Reply>>;
type Shared = standin::Shared<Scripted<Reply>>;

/// Starts a stand-in on an ephemeral loopback port. Each valid request takes the next reply;
/// once the script is down to one reply, that reply repeats.
pub(crate) async fn spawn(script: Vec<Reply>) -> StandIn {
    // `{model}:generateContent` is one path segment, so one handler reads every path itself.
    standin::spawn(|_| Scripted::new(script), Router::new().fallback(handle)).await
}

async fn handle(State(shared): State<Arc<Shared>>, request: Recorded) -> Response {
    shared.log.push(request.clone());
    let checked = check_route(&request.method, &request.path)
        .and_then(|()| check_key(&request.headers))
        .and_then(|()| validate(&request.raw, &request.body));
    let aspect_ratio = match checked {
        Ok(aspect_ratio) => aspect_ratio,
        Err(rejection) => return rejection.into_response(),
    };
    let (width, height) = size_for(&aspect_ratio).expect("validated aspect ratio");
    match shared.script.next() {
        Reply::Image => ok_json(json!({
            "candidates": [{
                "content": {
                    "parts": [{ "inlineData": { "mimeType": "image/png", "data": base64(&png(width, height)) } }],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": usage(1290),
            "modelVersion": "gemini-2.5-flash-image",
            "responseId": "standin-response",
        })),
        Reply::ImageWithTextSnakeCase => ok_json(json!({
            "candidates": [{
                "content": {
                    "parts": [
                        { "text": "Here is a lighthouse at dusk." },
                        { "inline_data": { "mime_type": "image/png", "data": base64(&png(width, height)) } },
                    ],
                    "role": "model",
                },
                "finish_reason": "STOP",
            }],
        })),
        Reply::Garbage => ok_json(json!({
            "candidates": [{
                "content": {
                    "parts": [{ "inlineData": { "mimeType": "image/png", "data": base64(NOT_AN_IMAGE) } }],
                    "role": "model",
                },
                "finishReason": "STOP",
            }],
        })),
        Reply::Blocked { reason } => ok_json(json!({
            "promptFeedback": { "blockReason": reason },
            "usageMetadata": usage(0),
            "modelVersion": "gemini-2.5-flash-image",
        })),
        Reply::NoImage { finish_reason, text } => {
            let parts: Vec<Value> = text.into_iter().map(|text| json!({ "text": text })).collect();
            let content = if parts.is_empty() {
                json!({})
            } else {
                json!({ "parts": parts, "role": "model" })
            };
            ok_json(json!({
                "candidates": [{ "content": content, "finishReason": finish_reason, "index": 0 }],
                "usageMetadata": usage(0),
                "modelVersion": "gemini-2.5-flash-image",
            }))
        }
        Reply::Error { status, body, retry_after } => {
            standin::json_error(status, body, retry_after)
        }
        Reply::Hang => {
            shared.hang().await;
            let Reply::Error { status, body, .. } = Reply::server_error(504) else {
                unreachable!()
            };
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
    }
}

/// Why a request was turned away, before it becomes a Google error response.
struct Rejection {
    status: u16,
    grpc_status: &'static str,
    message: String,
}

fn reject(status: u16, grpc_status: &'static str, message: &str) -> Rejection {
    Rejection { status, grpc_status, message: message.to_owned() }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let Reply::Error { status, body, .. } =
            error(self.status, self.grpc_status, &self.message, Vec::new())
        else {
            unreachable!("`error` builds an error reply")
        };
        (StatusCode::from_u16(status).expect("a valid status"), axum::Json(body)).into_response()
    }
}

/// Only `POST /v1beta/models/{known model}:generateContent` exists here.
fn check_route(method: &Method, path: &str) -> Result<(), Rejection> {
    let Some(call) = path.strip_prefix("/v1beta/models/") else {
        return Err(reject(404, "NOT_FOUND", &format!("Invalid path: {path}")));
    };
    let (model, action) = call.split_once(':').unwrap_or((call, ""));
    if action != "generateContent" || method != Method::POST {
        return Err(reject(404, "NOT_FOUND", &format!("Method not found: {method} {path}")));
    }
    if !MODELS.contains(&model) {
        let message = format!(
            "models/{model} is not found for API version v1beta, or is not supported for \
             generateContent. Call ListModels to see the list of available models and their \
             supported methods."
        );
        return Err(reject(404, "NOT_FOUND", &message));
    }
    Ok(())
}

/// The real API wants `x-goog-api-key` (or `?key=`); without one it answers 403.
fn check_key(headers: &HeaderMap) -> Result<(), Rejection> {
    let key = headers.get("x-goog-api-key").and_then(|value| value.to_str().ok());
    match key.map(str::trim) {
        Some(key) if !key.is_empty() => Ok(()),
        _ => Err(reject(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )),
    }
}

/// The checks Google makes on the fields we send, with its messages. Returns the requested
/// aspect ratio. Stricter in one way: `imageConfig.aspectRatio` is required, because our
/// provider always sends it.
fn validate(raw: &[u8], body: &Value) -> Result<String, Rejection> {
    let invalid = |message: String| reject(400, "INVALID_ARGUMENT", &message);
    let Some(fields) = body.as_object() else {
        let preview = String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned();
        return Err(invalid(format!(
            "Invalid JSON payload received. Unexpected token.\n{preview}\n^"
        )));
    };
    for name in fields.keys() {
        let known = ["contents", "generationConfig", "safetySettings", "systemInstruction"];
        if !known.contains(&name.as_str()) {
            return Err(invalid(format!(
                "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
            )));
        }
    }
    let contents = fields.get("contents").and_then(Value::as_array);
    let Some(first) = contents.and_then(|contents| contents.first()) else {
        return Err(invalid(
            "* GenerateContentRequest.contents: contents is not specified\n".to_owned(),
        ));
    };
    if first.get("role").is_some_and(|role| !matches!(role.as_str(), Some("user" | "model"))) {
        return Err(invalid("Please use a valid role: user, model.".to_owned()));
    }
    let text = first.pointer("/parts/0/text").and_then(Value::as_str);
    if text.is_none_or(|text| text.trim().is_empty()) {
        return Err(invalid(
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n"
                .to_owned(),
        ));
    }
    check_parts(first)?;
    let config = fields.get("generationConfig").cloned().unwrap_or_default();
    let modalities = config.get("responseModalities").and_then(Value::as_array);
    for (index, modality) in modalities.into_iter().flatten().enumerate() {
        if !matches!(modality.as_str(), Some("TEXT" | "IMAGE")) {
            return Err(invalid(format!(
                "Invalid value at 'generation_config.response_modalities[{index}]' \
                 (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), {modality}"
            )));
        }
    }
    if !modalities.is_some_and(|modalities| modalities.iter().any(|m| m == "IMAGE")) {
        return Err(invalid(
            "The requested combination of response modalities (TEXT) is not supported by the \
             model. Supported combinations: [TEXT, IMAGE], [IMAGE]"
                .to_owned(),
        ));
    }
    let aspect_ratio = config.pointer("/imageConfig/aspectRatio").and_then(Value::as_str);
    match aspect_ratio {
        Some(ratio) if size_for(ratio).is_some() => Ok(ratio.to_owned()),
        _ => Err(invalid(format!(
            "Unsupported aspect ratio: {}. Supported values are 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, \
             5:4, 9:16, 16:9, 21:9.",
            aspect_ratio.unwrap_or("(none)")
        ))),
    }
}

/// Every part is text or an image Google can read: `inlineData` with a supported image type
/// and base64 data that really is an image of that type.
fn check_parts(content: &Value) -> Result<(), Rejection> {
    let unreadable = || {
        reject(
            400,
            "INVALID_ARGUMENT",
            "Unable to process input image. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
        )
    };
    let parts = content.get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
    for (index, part) in parts.iter().enumerate() {
        if part.get("text").is_some_and(Value::is_string) {
            continue;
        }
        let Some(blob) = part.get("inlineData").or_else(|| part.get("inline_data")) else {
            return Err(reject(
                400,
                "INVALID_ARGUMENT",
                &format!(
                    "* GenerateContentRequest.contents[0].parts[{index}].data: required oneof field 'data' must have one initialized field\n"
                ),
            ));
        };
        let mime = blob.get("mimeType").or_else(|| blob.get("mime_type")).and_then(Value::as_str);
        let supported = ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"];
        let Some(mime) = mime.filter(|mime| supported.contains(mime)) else {
            return Err(reject(
                400,
                "INVALID_ARGUMENT",
                &format!("Unsupported MIME type: {}", mime.unwrap_or("(none)")),
            ));
        };
        let data = blob.get("data").and_then(Value::as_str).unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| {
            reject(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid value at 'contents[0].parts[{index}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"),
            )
        })?;
        let sniffed = image::guess_format(&bytes).ok().map(|format| format.to_mime_type());
        if sniffed != Some(mime) {
            return Err(unreadable());
        }
    }
    Ok(())
}

fn usage(image_tokens: u32) -> Value {
    json!({
        "promptTokenCount": 7,
        "candidatesTokenCount": image_tokens,
        "totalTokenCount": 7 + image_tokens,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": 7 }],
    })
}

fn ok_json(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
