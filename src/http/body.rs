//! Reads MCP request bodies whole before rmcp sees them, within a size and a time bound: a
//! body that breaks off, lies about its length or trickles in is the client's error (400, 408
//! or 413), never a 500, and a slow client cannot hold a request open. The answers are plain
//! text, like rmcp's own rejections, so `mcp_errors` gives them the same JSON-RPC body.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};

#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub max_bytes: usize,
    pub within: Duration,
}

pub(super) async fn buffer(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, limits.max_bytes).collect();
    let bytes = match tokio::time::timeout(limits.within, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            let message =
                format!("Payload Too Large: request body exceeds {} bytes", limits.max_bytes);
            return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        Ok(Err(error)) => {
            let message = format!("Bad Request: the request body broke off ({error})");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
        Err(_) => {
            let message = format!(
                "Request Timeout: the request body did not arrive within {}",
                humantime::format_duration(limits.within)
            );
            return (StatusCode::REQUEST_TIMEOUT, message).into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
