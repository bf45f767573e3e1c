//! The MCP face of offstage: an rmcp [`ServerHandler`] serving both protocol eras (2026-07-28
//! stateless requests and legacy `initialize` sessions) over Streamable HTTP and stdio.
//!
//! This is the only module that imports `rmcp::model`. It translates requests into tool calls
//! and job reads, and job events into `notifications/resources/updated`.

pub(crate) mod convert;
pub(crate) mod list_changed;
mod progress;
mod prompts;
pub(crate) mod subscriptions;
pub(crate) mod tasks;

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult,
        GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, Implementation,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
        UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
};
use tokio_util::sync::CancellationToken;

/// Task ids a `subscriptions/listen` request asked for (`notifications.taskIds`), lifted off the
/// request body by the HTTP layer because rmcp's filter type has no field for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListenTaskIds(pub Vec<String>);

/// The tool profile a request was made to (`/mcp/{profile}` or the profile header), set by the
/// HTTP layer after checking it exists. Absent (stdio): the default profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProfileName(pub Arc<str>);

use crate::{
    jobs::Job,
    tools::{
        Caller, JobView, Links, ProgressSink, Registry, Services, ToolCall, ToolError, ToolOutput,
    },
};
pub(crate) use list_changed::ToolListeners;
pub(crate) use subscriptions::Subscriptions;

/// Job URIs one `subscriptions/listen` stream may watch; each costs a store read to open.
const MAX_LISTEN_URIS: usize = 256;

const INSTRUCTIONS: &str = "Slow tools such as generate_image answer at once with a job and \
finish in the background; the result arrives on its own. Never call a tool again while its job \
is working. Use job_status only when the user asks, and cancel_job when they change their mind.";

/// Shared by every session and stateless request (rmcp builds one handler per session).
#[derive(Debug)]
pub(crate) struct McpState {
    pub registry: Arc<Registry>,
    pub services: Arc<Services>,
    pub subscriptions: Arc<Subscriptions>,
    pub listeners: Arc<ToolListeners>,
    /// Ends open `subscriptions/listen` streams gracefully on shutdown.
    pub shutdown: CancellationToken,
}

impl McpState {
    pub(crate) fn new(
        registry: Arc<Registry>,
        services: Arc<Services>,
        subscriptions: Arc<Subscriptions>,
        shutdown: CancellationToken,
    ) -> McpState {
        let listeners = Arc::new(ToolListeners::default());
        listeners.clone().spawn(registry.changes(), shutdown.clone());
        McpState { registry, services, subscriptions, listeners, shutdown }
    }
}

/// The profile this request was made to.
fn profile(ctx: &RequestContext<RoleServer>, registry: &Registry) -> Arc<str> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ProfileName>())
        .map_or_else(|| registry.catalog().default_profile().into(), |name| name.0.clone())
}

#[derive(Debug, Clone)]
pub(crate) struct OffstageServer {
    state: Arc<McpState>,
}

impl OffstageServer {
    pub(crate) fn new(state: Arc<McpState>) -> OffstageServer {
        OffstageServer { state }
    }
}

/// The authenticated caller: set by the HTTP auth layer, or the local user on stdio.
///
/// Its conversation is the one the app named in a header; failing that, the MCP session (a
/// legacy HTTP session, or the one stdio connection), so piggy-backing and duplicate detection
/// also work for clients that send no header. Stateless requests without the header have none.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    let mut caller =
        match ctx.extensions.get::<http::request::Parts>() {
            None => Caller::local(),
            // Over HTTP the auth layer always attaches a caller; its absence is a wiring bug, and
            // answering as "local" would let any request read local jobs.
            Some(parts) => parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
                McpError::internal_error("request reached MCP unauthenticated", None)
            })?,
        };
    if caller.conversation.is_none() {
        caller.conversation = session_key(ctx);
        // An HTTP session's id exists only in this process; stdio's name outlives a restart.
        caller.local_conversation = caller.conversation.as_deref().is_some_and(|c| c != "stdio");
    }
    // An id, not content: anything longer is not a realtime call id and is not stored.
    caller.call_id = ctx
        .meta
        .get(CALL_ID_META)
        .and_then(|id| id.as_str())
        .filter(|id| !id.is_empty() && id.len() <= MAX_CALL_ID_LEN)
        .map(str::to_owned);
    Ok(caller)
}

/// `_meta` key a realtime app may set on `tools/call` with the model's function call id, so
/// Gemini Live payloads can answer that exact call.
pub(crate) const CALL_ID_META: &str = "offstage/call_id";

/// Longest call id kept (Gemini's are short; this only bounds what a client can make us store).
const MAX_CALL_ID_LEN: usize = 256;

/// Identifies a session: a legacy HTTP session by its id, or the stdio connection.
fn session_key(ctx: &RequestContext<RoleServer>) -> Option<String> {
    session_key_of(&ctx.extensions)
}

fn session_key_of(extensions: &rmcp::model::Extensions) -> Option<String> {
    match extensions.get::<http::request::Parts>() {
        None => Some("stdio".to_owned()),
        Some(parts) => parts
            .headers
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .map(|id| format!("session:{id}")),
    }
}

impl OffstageServer {
    /// The caller's job behind a task id; anything else is an unknown task (-32602).
    async fn owned_task(
        &self,
        ctx: &RequestContext<RoleServer>,
        task_id: &str,
    ) -> Result<Job, McpError> {
        let caller = caller(ctx)?;
        self.state.services.job_for(&caller, task_id).await.map_err(|_| {
            McpError::invalid_params(
                format!("no task `{task_id}`; use the taskId exactly as returned"),
                None,
            )
        })
    }

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
            .enable_tool_list_changed()
            .enable_tasks()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("offstage", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A legacy session: it hears of tool list changes on its GET stream.
        if let Some(key) = session_key_of(&context.extensions) {
            self.state.listeners.add_session(key, context.peer);
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let profile = profile(&ctx, &self.state.registry);
        let catalog = self.state.registry.catalog();
        let tools = catalog.definitions(&profile).unwrap_or_default();
        Ok(ListToolsResult::with_all_items(tools.into_iter().map(convert::tool).collect())
            .with_ttl_ms(convert::TOOLS_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        // Without a request there is no profile: answer for every tool the server has.
        let catalog = self.state.registry.catalog();
        catalog
            .tools()
            .find(|tool| &*tool.definition().name == name)
            .map(|t| convert::tool(t.definition()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let profile = profile(&ctx, &self.state.registry);
        let catalog = self.state.registry.catalog();
        let Some(tool) = catalog.get(&profile, &request.name) else {
            let known = catalog.names(&profile).join(", ");
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`; this server has: {known}", request.name),
                None,
            ));
        };
        let progress = ctx.meta.get_progress_token().map(|token| {
            Arc::new(progress::PeerProgress::new(ctx.peer.clone(), token)) as Arc<dyn ProgressSink>
        });
        let caller = caller(&ctx)?;
        let call = ToolCall {
            caller: caller.clone(),
            arguments: request.arguments.unwrap_or_default(),
            progress,
        };
        let services = &self.state.services;
        let wants_task = tasks::wanted(&ctx);
        // Taken before the call runs, so they are the jobs that ended before it: a fast job
        // this very call starts can never be announced as news in its own reply.
        let mut earlier = if wants_task { Vec::new() } else { services.piggyback(&caller).await };
        // No call may outlive its caller's budget, whatever the tool or its arguments ask for:
        // framework clients give up after 5 s and drop the answer.
        let within = services.reply_within;
        let result = tokio::time::timeout(within, tool.call(call)).await.unwrap_or_else(|_| {
            Err(ToolError::Timeout { tool: request.name.to_string(), after: within })
        });
        if wants_task && let Ok(ToolOutput { job: Some(job), text, .. }) = &result {
            // The job is durably stored before this returns, as SEP-2663 requires. The tool's
            // own line ("being made, don't call again") is the best status message to start with.
            let view = JobView::of(job, &services.links);
            let task = tasks::task(job, &view, services.runner.retention())
                .with_status_message(text.clone());
            return Ok(CreateTaskResult::new(task).into());
        }
        if wants_task {
            earlier = services.piggyback(&caller).await;
        }
        // A result never repeats, as news, the job it is itself about (`job_status` of a job
        // that just ended): the model would hear the same ending twice.
        let about = result.as_ref().ok().and_then(|output| output.structured.get("job_id"));
        let earlier: Vec<String> = earlier
            .into_iter()
            .filter(|(job, _)| about.and_then(serde_json::Value::as_str) != Some(job.as_str()))
            .map(|(_, line)| line)
            .collect();
        Ok(convert::call_result(result, &request.name, &earlier).into())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let job = self.owned_task(&ctx, &request.task_id).await?;
        let view = self.state.services.view(&job).await.map_err(convert::internal)?;
        if job.status.is_terminal() {
            self.state.services.mark_announced(&job).await;
        }
        let ttl = self.state.services.runner.retention();
        Ok(GetTaskResult::new(tasks::detailed(&job, &view, ttl)))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let job = self.owned_task(&ctx, &request.task_id).await?;
        let reason = crate::jobs::JobError {
            detail: None,
            code: "cancelled".to_owned(),
            message: "Cancelled at the user's request.".to_owned(),
        };
        // Cancelling an ended task is acknowledged too: cancellation is cooperative and
        // eventually consistent, and `tasks/get` shows how it really ended.
        self.state.services.runner.cancel(&job.id, reason).await.map_err(convert::internal)?;
        Ok(())
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let job = self.owned_task(&ctx, &request.task_id).await?;
        Err(McpError::invalid_params(
            format!("task {} never asks for input, so there is nothing to update", job.id),
            None,
        ))
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
        let view = self.state.services.view(&job).await.map_err(convert::internal)?;
        Ok(convert::job_resource(&request.uri, &view).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let job = self.owned_job(&caller(&ctx)?, &request.uri).await?;
        let session = session_key(&ctx).unwrap_or_else(|| "sessionless".to_owned());
        self.state.subscriptions.add_session(job.id.clone(), &session, ctx.peer.clone());
        // A job that ended before the subscription would otherwise never be announced.
        if job.status.is_terminal() {
            self.state.subscriptions.notify_one_session(ctx.peer.clone(), &job);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let (Some(id), Some(session)) =
            (Links::parse_resource_uri(&request.uri), session_key(&ctx))
        {
            self.state.subscriptions.remove(&id, &session);
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Only job resources can change; ownership is checked per URI once the stream opens.
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed.filter(|wanted| *wanted);
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
        if ctx.accepted().tools_list_changed == Some(true) {
            self.state.listeners.add_stream(key.clone(), ctx.sink().clone());
        }
        let mut watched = Vec::new();
        for uri in &uris {
            // Someone else's job is silently not watched, exactly like a missing one.
            let Ok(job) = self.owned_job(&caller, uri).await else { continue };
            self.state.subscriptions.add_listen(job.id.clone(), &key, ctx.sink().clone());
            if job.status.is_terminal() {
                self.state.subscriptions.notify_one_listen(ctx.sink().clone(), &job);
            }
            watched.push(job.id);
        }
        // Task ids are not part of rmcp's filter type; the HTTP layer lifted them off the body.
        let task_ids = ctx
            .request_context()
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<ListenTaskIds>())
            .map(|ids| ids.0.clone())
            .unwrap_or_default();
        let peer = ctx.request_context().peer.clone();
        let subscription = ctx.sink().id().clone();
        for task_id in task_ids.iter().take(MAX_LISTEN_URIS) {
            let Ok(job) = self.state.services.job_for(&caller, task_id).await else { continue };
            self.state.subscriptions.add_task(
                job.id.clone(),
                &key,
                peer.clone(),
                subscription.clone(),
            );
            if job.status.is_terminal() {
                self.state.subscriptions.notify_one_task(peer.clone(), subscription.clone(), &job);
            }
            watched.push(job.id);
        }
        tokio::select! {
            () = ctx.cancelled() => {}
            () = self.state.shutdown.cancelled() => {}
        }
        self.state.listeners.remove_stream(&key);
        for id in &watched {
            self.state.subscriptions.remove(id, &key);
            self.state.subscriptions.remove(id, &format!("{key}:task"));
        }
        Ok(())
    }
}
