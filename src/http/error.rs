//! HTTP errors: every 4xx/5xx we produce carries a JSON body `{"error": {"code", "message"}}`.
//! Internal causes are logged once here and never sent to the client.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("missing or invalid bearer token; send `Authorization: Bearer <token>`")]
    Unauthorized { challenge: String },
    #[error("the access token was refused: {reason}")]
    InvalidToken { reason: String, challenge: String },
    #[error("the access token lacks the scope `{scope}` this needs")]
    InsufficientScope { scope: String, challenge: String },
    #[error("Host `{0}` is not allowed; add it to allowed_hosts to serve it")]
    ForbiddenHost(String),
    #[error("Origin `{0}` is not allowed; add it to allowed_origins to serve it")]
    ForbiddenOrigin(String),
    #[error("missing Host header")]
    MissingHost,
    #[error("{0}")]
    BadHost(String),
    #[error("{0}")]
    BadHeader(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("no job {0}")]
    JobNotFound(String),
    #[error("no tool profile `{name}`; this server has: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("no route for {0}; see /healthz, /mcp and /v1/jobs/{{job_id}}")]
    NoRoute(String),
    #[error("method not allowed here")]
    MethodNotAllowed,
    #[error("{0}")]
    Busy(&'static str),
    #[error("{0}")]
    TooMany(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } | ApiError::InvalidToken { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ApiError::ForbiddenHost(_) | ApiError::ForbiddenOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::MissingHost
            | ApiError::BadHost(_)
            | ApiError::BadHeader(_)
            | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::JobNotFound(_) | ApiError::NoRoute(_) | ApiError::UnknownProfile { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::InvalidToken { .. } => "invalid_token",
            ApiError::InsufficientScope { .. } => "insufficient_scope",
            ApiError::ForbiddenHost(_) => "forbidden_host",
            ApiError::ForbiddenOrigin(_) => "forbidden_origin",
            ApiError::MissingHost => "missing_host",
            ApiError::BadHost(_) => "bad_host",
            ApiError::BadHeader(_) => "bad_header",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::JobNotFound(_) => "job_not_found",
            ApiError::UnknownProfile { .. } => "unknown_profile",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Busy(_) => "busy",
            ApiError::TooMany(_) => "too_many",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ApiError::Unauthorized { challenge }
        | ApiError::InvalidToken { challenge, .. }
        | ApiError::InsufficientScope { challenge, .. } = &self
            && let Ok(value) = HeaderValue::from_str(challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if matches!(self, ApiError::Busy(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}
