//! The HTTP face: one axum router with the MCP endpoint at `/mcp` (and `/mcp/{profile}` per
//! tool profile), job views under `/v1`, and
//! `/healthz`. The only module that imports axum.
//!
//! Every route sits behind the Host/Origin guard; `/mcp` and the job JSON also behind bearer
//! authentication. The image route is a capability URL (see `jobs.rs`).

mod body;
mod caps;
mod error;
mod events;
pub(crate) mod guard;
mod image;
mod jobs;
mod listen_tasks;
mod mcp_errors;
pub(crate) mod oauth;
mod profile;
mod serve;
mod tools;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request},
    middleware::from_fn_with_state,
    response::IntoResponse,
    routing::get,
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub(crate) use error::ApiError;
use guard::{Authenticator, OriginGuard, Scope, authenticate, check_origin};
pub(crate) use serve::{ConnectionLimits, serve};

use crate::{
    config::Config,
    mcp::{McpState, OffstageServer},
};

/// Builds the whole HTTP surface.
pub(crate) fn router(mcp: Arc<McpState>, config: &Config, shutdown: &CancellationToken) -> Router {
    let (security, tools) = (&config.security, &config.tools);
    let services = mcp.services.clone();
    let registry = mcp.registry.clone();
    let selector = Arc::new(profile::ProfileSelector {
        registry: mcp.registry.clone(),
        header: guard::header_name(&tools.profile_header),
    });
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_sse_keep_alive(Some(crate::config::MCP_STREAM_KEEP_ALIVE))
        .with_allowed_hosts(security.allowed_hosts.clone())
        .with_allowed_origins(security.allowed_origins.clone())
        .with_max_request_body_bytes(security.max_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    let mut sessions = LocalSessionManager::default();
    // Voice calls can be quiet for long stretches; rmcp's own default (5 min) would end them.
    sessions.session_config.keep_alive = Some(*config.limits.session_idle_timeout);
    let sessions = Arc::new(sessions);
    let caps = Arc::new(caps::Caps::new(config.limits.clone()));
    caps.spawn_sweeper(sessions.clone(), shutdown.clone());
    let mcp_service: StreamableHttpService<OffstageServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(OffstageServer::new(mcp.clone())),
            sessions,
            mcp_config,
        );
    let authenticator = Arc::new(Authenticator::new(
        security,
        &services.push,
        reqwest::Client::new(),
        services.links.base(),
    ));
    let streams = events::Streams::spawn(
        services.runner.events(),
        services.runner.store().clone(),
        shutdown.clone(),
    );
    let mcp_route = Router::new()
        .route_service("/mcp", mcp_service.clone())
        .route_service("/mcp/{profile}", mcp_service)
        .layer(from_fn_with_state(selector, profile::select))
        .layer(from_fn_with_state(caps.clone(), caps::mcp))
        .layer(from_fn_with_state(security.max_body_bytes, listen_tasks::lift))
        .layer(from_fn_with_state(
            body::BodyLimits {
                max_bytes: security.max_body_bytes,
                within: *config.limits.body_timeout,
            },
            body::buffer,
        ))
        .layer(axum::middleware::from_fn(mcp_errors::jsonify))
        .layer(axum::middleware::from_fn(mcp_errors::ended_session));
    let for_tools = Router::new()
        .route("/v1/jobs/{id}", get(jobs::job))
        .route("/v1/events", get(events::events).layer(from_fn_with_state(caps, caps::events)))
        .merge(mcp_route)
        .route_layer(from_fn_with_state((authenticator.clone(), Scope::Tools), authenticate));
    let for_operators = Router::new()
        .route("/v1/tools", get(tools::tools))
        .route_layer(from_fn_with_state((authenticator.clone(), Scope::Operator), authenticate));
    Router::new()
        .route("/healthz", get(health))
        .route(oauth::METADATA_PATH, get(oauth::metadata))
        .route(&format!("{}/mcp", oauth::METADATA_PATH), get(oauth::metadata))
        .route("/v1/jobs/{id}/image", get(image::image))
        .merge(for_tools)
        .merge(for_operators)
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(Arc::new(OriginGuard::new(security)), check_origin))
        .layer(DefaultBodyLimit::max(security.max_body_bytes))
        .layer(axum::Extension(streams))
        .layer(axum::Extension(registry))
        .layer(axum::Extension(authenticator))
        .with_state(services)
}

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute(format!("{} {}", request.method(), request.uri().path()))
}
