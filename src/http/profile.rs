//! Which tool profile an MCP request is for: `/mcp/{profile}`, else the profile header on
//! `/mcp`, else the default. Unknown profiles are a 404 here, before MCP sees the request.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::HeaderName,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::{mcp::ProfileName, tools::Registry};

#[derive(Debug)]
pub(super) struct ProfileSelector {
    pub registry: Arc<Registry>,
    pub header: HeaderName,
}

pub(super) async fn select(
    State(selector): State<Arc<ProfileSelector>>,
    mut request: Request,
    next: Next,
) -> Response {
    let catalog = selector.registry.catalog();
    let from_path =
        request.uri().path().strip_prefix("/mcp/").map(|rest| rest.trim_end_matches('/'));
    let name = match from_path {
        Some(name) => name.to_owned(),
        None => match request.headers().get(&selector.header).map(|value| value.to_str()) {
            Some(Ok(name)) => name.trim().to_owned(),
            Some(Err(_)) => {
                let message = format!("{} must be a profile name", selector.header);
                return ApiError::BadHeader(message).into_response();
            }
            None => catalog.default_profile().to_owned(),
        },
    };
    if !catalog.has_profile(&name) {
        let known = catalog.profiles().collect::<Vec<_>>().join(", ");
        return ApiError::UnknownProfile { name, known }.into_response();
    }
    request.extensions_mut().insert(ProfileName(name.into()));
    next.run(request).await
}
