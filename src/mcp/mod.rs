//! The MCP face of offstage: an rmcp [`ServerHandler`] serving both protocol eras (2026-07-28
//! stateless requests and legacy `initialize` sessions) over Streamable HTTP and stdio.
//!
//! This is the only module that imports `rmcp::model`. It translates requests into tool calls
//! and job reads, and job events into `notifications/resources/updated`.

pub mod convert;
mod progress;
mod prompts;
pub mod subscriptions;

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, GetPromptRequestParams,
        GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
        SubscriptionFilter, Tool, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext},
};
use tokio_util::sync::CancellationToken;

use crate::{
    jobs::Job,
    tools::{Caller, JobView, Links, ProgressSink, Services, ToolCall, ToolRegistry},
};
pub use subscriptions::Subscriptions;

/// Job URIs one `subscriptions/listen` stream may watch; each costs a store read to open.
const MAX_LISTEN_URIS: usize = 256;

const INSTRUCTIONS: &str = "Slow tools such as generate_image answer at once with a job and \
finish in the background; the result arrives on its own. Never call a tool again while its job \
is working. Use job_status only when the user asks, and cancel_job when they change their mind.";

/// Shared by every session and stateless request (rmcp builds one handler per session).
#[derive(Debug)]
pub struct McpState {
    pub registry: ToolRegistry,
    pub services: Arc<Services>,
    pub subscriptions: Arc<Subscriptions>,
    /// Ends open `subscriptions/listen` streams gracefully on shutdown.
    pub shutdown: CancellationToken,
    /// `tools/list` converted once: definitions do not change while running.
    tools: Vec<Tool>,
}

impl McpState {
    pub fn new(
        registry: ToolRegistry,
        services: Arc<Services>,
        subscriptions: Arc<Subscriptions>,
        shutdown: CancellationToken,
    ) -> McpState {
        let tools = registry.iter().map(|tool| convert::tool(tool.definition())).collect();
        McpState { registry, services, subscriptions, shutdown, tools }
    }
}

#[derive(Debug, Clone)]
pub struct OffstageServer {
    state: Arc<McpState>,
}

impl OffstageServer {
    pub fn new(state: Arc<McpState>) -> OffstageServer {
        OffstageServer { state }
    }
}

/// The authenticated caller: set by the HTTP auth layer, or the local user on stdio.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    match ctx.extensions.get::<http::request::Parts>() {
        None => Ok(Caller::local()),
        // Over HTTP the auth layer always attaches a caller; its absence is a wiring bug, and
        // answering as "local" would let any request read local jobs.
        Some(parts) => {
            parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
                McpError::internal_error("request reached MCP unauthenticated", None)
            })
        }
    }
}

/// Identifies a legacy session for `resources/subscribe` bookkeeping.
fn session_key(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| "stdio".to_owned(), |id| format!("session:{id}"))
}

impl OffstageServer {
    /// The caller's job behind a job resource URI. Anything else — another scheme, a malformed
    /// id, a missing job or someone else's — is the same "resource not found".
    async fn owned_job(&self, caller: &Caller, uri: &str) -> Result<Job, McpError> {
        let not_found = || {
            McpError::resource_not_found(
                format!(
                    "no such resource `{uri}`; job resources look like offstage://jobs/<job_id>"
                ),
                None,
            )
        };
        let id = Links::parse_resource_uri(uri).ok_or_else(not_found)?;
        self.state.services.job_for(caller, id.as_str()).await.map_err(|_| not_found())
    }
}

impl ServerHandler for OffstageServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("offstage", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.state.tools.clone())
            .with_ttl_ms(convert::TOOLS_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.state.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(tool) = self.state.registry.get(&request.name) else {
            let known = self.state.registry.names().join(", ");
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`; this server has: {known}", request.name),
                None,
            ));
        };
        let progress = ctx.meta.get_progress_token().map(|token| {
            Arc::new(progress::PeerProgress::new(ctx.peer.clone(), token)) as Arc<dyn ProgressSink>
        });
        let call = ToolCall {
            caller: caller(&ctx)?,
            arguments: request.arguments.unwrap_or_default(),
            progress,
        };
        let result = tool.call(call).await;
        Ok(convert::call_result(result, &request.name).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts::list())
            .with_ttl_ms(convert::TOOLS_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        prompts::get(&request.name).map(Into::into).ok_or_else(|| {
            McpError::invalid_params(
                format!("unknown prompt `{}`; this server has: {}", request.name, prompts::NAME),
                None,
            )
        })
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        // Jobs are reached through the template and the links tools return; listing every
        // caller's jobs would be both large and a leak.
        Ok(ListResourcesResult::with_all_items(Vec::new())
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![convert::job_template()])
            .with_ttl_ms(convert::TOOLS_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let job = self.owned_job(&caller(&ctx)?, &request.uri).await?;
        let view = JobView::of(&job, &self.state.services.links);
        Ok(convert::job_resource(&request.uri, &view).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let job = self.owned_job(&caller(&ctx)?, &request.uri).await?;
        self.state.subscriptions.add_session(job.id.clone(), &session_key(&ctx), ctx.peer.clone());
        // A job that ended before the subscription would otherwise never be announced.
        if job.status.is_terminal() {
            Subscriptions::notify_one_session(ctx.peer.clone(), &job.id);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Some(id) = Links::parse_resource_uri(&request.uri) {
            self.state.subscriptions.remove(&id, &session_key(&ctx));
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Only job resources can change; ownership is checked per URI once the stream opens.
        let mut accepted = SubscriptionFilter::new();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|uri| Links::parse_resource_uri(uri).is_some())
                .take(MAX_LISTEN_URIS)
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), McpError> {
        let caller = caller(ctx.request_context())?;
        let key: Arc<str> = format!("listen:{}", ulid::Ulid::generate()).into();
        let uris = ctx.accepted().resource_subscriptions.clone().unwrap_or_default();
        let mut watched = Vec::new();
        for uri in &uris {
            // Someone else's job is silently not watched, exactly like a missing one.
            let Ok(job) = self.owned_job(&caller, uri).await else { continue };
            self.state.subscriptions.add_listen(job.id.clone(), &key, ctx.sink().clone());
            if job.status.is_terminal() {
                Subscriptions::notify_one_listen(ctx.sink().clone(), &job.id);
            }
            watched.push(job.id);
        }
        tokio::select! {
            () = ctx.cancelled() => {}
            () = self.state.shutdown.cancelled() => {}
        }
        for id in &watched {
            self.state.subscriptions.remove(id, &key);
        }
        Ok(())
    }
}
