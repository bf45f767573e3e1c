//! Mends what rmcp's Streamable HTTP transport answers: its rejections get a JSON-RPC error
//! body and the right status, and a session DELETE gets the status clients expect.
//!
//! rmcp answers some malformed requests with `text/plain` bodies, and a body that is not valid
//! JSON with 415 even when its Content-Type was JSON. Clients and operators get a uniform
//! `{"jsonrpc":"2.0","id":null,"error":{...}}` instead: -32700 (parse error, 400) when the JSON
//! itself is broken, -32600 (invalid request) otherwise. JSON and SSE responses pass untouched.

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use serde_json::json;

/// rmcp answers a session DELETE with 202 Accepted; the Python SDK (mcp 2.x, under openai-agents,
/// pipecat and LiveKit) takes only 200 or 204 and logs "Session termination failed: 202" on
/// every close. The session is gone when the answer leaves, so 204 No Content is the truth.
pub(super) async fn ended_session(request: Request, next: Next) -> Response {
    let delete = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.body_mut() = Body::empty();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response.headers_mut().remove(header::CONTENT_TYPE);
    }
    response
}

/// Error bodies are one line of text; anything bigger is not one of rmcp's rejections.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(super) async fn jsonify(request: Request, next: Next) -> Response {
    let sent_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    let response = next.run(request).await;
    let status = response.status();
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !is_text {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let parse_error = status == StatusCode::UNSUPPORTED_MEDIA_TYPE && sent_json;
    let (status, code) =
        if parse_error { (StatusCode::BAD_REQUEST, -32700) } else { (status, -32600) };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body =
        json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    parts.status = status;
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}
