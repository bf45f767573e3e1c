//! OAuth protected resource metadata (RFC 9728): where an MCP client learns which
//! authorization server issues tokens for this server, and which scopes mean what. Served
//! without authentication, at the well-known path and at its `/mcp` form.

use std::sync::Arc;

use axum::{Extension, Json, http::header, response::IntoResponse};
use serde_json::json;

use super::guard::Authenticator;

pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

pub(crate) async fn metadata(Extension(auth): Extension<Arc<Authenticator>>) -> impl IntoResponse {
    let Some(verifier) = auth.verifier() else {
        return super::ApiError::NoRoute(format!("GET {METADATA_PATH}; OAuth is not configured"))
            .into_response();
    };
    let config = verifier.config();
    let body = json!({
        "resource": config.audience,
        "authorization_servers": [config.issuer],
        "scopes_supported": [config.tools_scope, config.operator_scope],
        "bearer_methods_supported": ["header"],
        "resource_name": "offstage",
    });
    ([(header::CACHE_CONTROL, "max-age=300")], Json(body)).into_response()
}
