//! Lifts `notifications.taskIds` off `subscriptions/listen` request bodies into a request
//! extension, because rmcp 3.11's filter type has no field for them and would drop them.
//! Only requests that announce themselves as `subscriptions/listen` (the `Mcp-Method` header
//! every 2026-07-28 request carries) are buffered; everything else streams through untouched.

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};

use crate::mcp::ListenTaskIds;

pub(super) async fn lift(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    let is_listen = request.method() == Method::POST
        && request
            .headers()
            .get("mcp-method")
            .is_some_and(|method| method.as_bytes() == b"subscriptions/listen");
    if !is_listen {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    // Over the limit: pass an empty body on and let rmcp answer with its own error.
    let bytes = to_bytes(body, max_body).await.unwrap_or_default();
    let task_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|body| {
            let ids = body.pointer("/params/notifications/taskIds")?.as_array()?.clone();
            Some(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        })
        .unwrap_or_default();
    if !task_ids.is_empty() {
        parts.extensions.insert(ListenTaskIds(task_ids));
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
