//! The baseline the load benchmark measures offstage against: a bare rmcp server on the same
//! rmcp and axum, with TCP_NODELAY, serving both protocol eras, whose `generate_image` spawns an
//! in-memory task and persists nothing, and whose `job_status` reads that task's entry. It is
//! the floor: the protocol's own cost on this machine, with none of our layers.
//!
//! The benchmark binary runs it in a child process of its own ([`spawn`] re-executes the
//! benchmark with `OFFSTAGE_BENCH_ROLE=bare`), so its CPU and memory are read from /proc apart
//! from the load driver's, exactly as offstage's are.

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::serve::ListenerExt as _;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

use crate::common::ServerProcess;

/// The variable that makes the benchmark binary serve the baseline instead of driving load.
pub(crate) const ROLE: &str = "OFFSTAGE_BENCH_ROLE";

/// How long a baseline job "runs": longer than any benchmark row, as offstage's do.
const JOB_RUNS: Duration = Duration::from_secs(600);

/// Starts the baseline on a free loopback port as a child process; returns once it answers.
pub(crate) async fn spawn() -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(std::env::current_exe().expect("the benchmark's own path"));
    command.env(ROLE, "bare").env("OFFSTAGE_BENCH_PORT", port.to_string()).stdout(Stdio::null());
    ServerProcess::spawn(command, port, tempfile::tempdir().unwrap()).await
}

/// Serves the baseline until killed (the child process's whole life).
pub(crate) async fn serve() {
    let port: u16 = std::env::var("OFFSTAGE_BENCH_PORT").unwrap().parse().unwrap();
    let jobs = Jobs::default();
    let config = StreamableHttpServerConfig::default().with_legacy_session_mode(true);
    let service = StreamableHttpService::new(
        move || Ok(Bare { jobs: jobs.clone() }),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .route_service("/mcp", service)
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    // rmcp writes a reply in several small pieces; without this, Nagle's algorithm holds the
    // last one for the delayed ACK (tens of ms a call).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app).await.unwrap();
}

/// Each job's status, by id, in memory only.
#[derive(Clone, Default)]
struct Jobs(Arc<Mutex<HashMap<String, &'static str>>>);

#[derive(Clone)]
struct Bare {
    jobs: Jobs,
}

impl Bare {
    fn generate_image(&self, arguments: &JsonObject) -> Result<Value, String> {
        let prompt = arguments.get("prompt").and_then(Value::as_str).unwrap_or_default();
        if prompt.trim().is_empty() {
            return Err("`prompt` is required".to_owned());
        }
        let id = format!("{:032x}", rand::random::<u128>());
        self.jobs.0.lock().unwrap().insert(id.clone(), "working");
        let jobs = self.jobs.clone();
        let finished = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(JOB_RUNS).await;
            jobs.0.lock().unwrap().insert(finished, "completed");
        });
        Ok(json!({ "job_id": id, "status": "working", "say": "Making the image now." }))
    }

    fn job_status(&self, arguments: &JsonObject) -> Result<Value, String> {
        let id = arguments.get("job_id").and_then(Value::as_str).unwrap_or_default();
        let status = self.jobs.0.lock().unwrap().get(id).copied();
        let status = status.ok_or_else(|| format!("no job `{id}`"))?;
        Ok(json!({ "job_id": id, "status": status }))
    }
}

fn tool(name: &'static str, description: &'static str, property: &str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": { property: { "type": "string" } },
        "required": [property],
    });
    let Value::Object(schema) = schema else { unreachable!() };
    Tool::new(name, description, schema)
}

impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bare-rmcp", "0"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("generate_image", "Start drawing an image.", "prompt"),
            tool("job_status", "How a job is doing.", "job_id"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.unwrap_or_default();
        let answer = match &*request.name {
            "generate_image" => self.generate_image(&arguments),
            "job_status" => self.job_status(&arguments),
            other => return Err(McpError::invalid_params(format!("no tool `{other}`"), None)),
        };
        Ok(match answer {
            Ok(value) => CallToolResult::structured(value),
            Err(message) => CallToolResult::structured_error(json!({ "error": message })),
        }
        .into())
    }
}
