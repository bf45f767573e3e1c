//! Test support: a real server on an ephemeral port, real rmcp clients of both protocol eras
//! that record what the server pushes, and small helpers to read results.

#![allow(dead_code)] // Each test module uses a different subset.

use std::{path::Path, time::Duration};

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientConfig, Implementation, JsonObject,
        ProgressNotificationParam, ProtocolVersion, ResourceUpdatedNotificationParam,
    },
    service::{NotificationContext, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc;

use offstage::{config::Config, server::Server};

/// Long enough to observe `working`, short enough to keep the suite fast.
pub const SKETCH_LATENCY: Duration = Duration::from_millis(400);
/// Upper bound for anything that should happen "soon"; generous for a loaded 2-core CI box.
pub const SOON: Duration = Duration::from_secs(15);

/// A server running in this process, with its own data directory.
pub struct TestServer {
    pub server: Server,
    pub dir: TempDir,
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::for_data_dir(dir);
    config.providers.sketch.latency = SKETCH_LATENCY;
    config.jobs.lease = Duration::from_secs(1);
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = Server::start(config).await.expect("server starts");
        TestServer { server, dir }
    }

    pub fn url(&self) -> String {
        self.server.mcp_url()
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// What a client received from the server without asking.
pub struct Inbox {
    pub updates: mpsc::UnboundedReceiver<String>,
    pub progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
}

impl Inbox {
    /// The next `resources/updated` URI, or a test failure after [`SOON`].
    pub async fn next_update(&mut self) -> String {
        tokio::time::timeout(SOON, self.updates.recv())
            .await
            .expect("a resources/updated notification arrives")
            .expect("client still running")
    }
}

/// A client handler that forwards pushed notifications to an [`Inbox`].
#[derive(Clone)]
pub struct Recorder {
    info: ClientConfig,
    updates: mpsc::UnboundedSender<String>,
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl Recorder {
    pub fn new(info: ClientConfig) -> (Recorder, Inbox) {
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let (progress_tx, progress) = mpsc::unbounded_channel();
        (Recorder { info, updates: updates_tx, progress: progress_tx }, Inbox { updates, progress })
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }
}

pub type Client = RunningService<RoleClient, Recorder>;

fn transport(url: &str, token: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    StreamableHttpClientTransport::from_config(config)
}

pub fn client_info() -> ClientConfig {
    ClientConfig::new(Default::default(), Implementation::new("offstage-tests", "0"))
}

/// A legacy-era client: `initialize`, a session, pushes on the session's GET stream.
pub async fn legacy_client(url: &str, token: Option<&str>) -> (Client, Inbox) {
    legacy_client_at(url, token, ProtocolVersion::V_2025_11_25).await
}

pub async fn legacy_client_at(
    url: &str,
    token: Option<&str>,
    version: ProtocolVersion,
) -> (Client, Inbox) {
    let mut info = client_info();
    info.protocol_version = version;
    let (recorder, inbox) = Recorder::new(info);
    let client = recorder.serve(transport(url, token)).await.expect("legacy client connects");
    (client, inbox)
}

/// A 2026-07-28 client: no handshake, per-request metadata, pushes via `subscriptions/listen`.
pub async fn modern_client(url: &str, token: Option<&str>) -> (Client, Inbox) {
    let (recorder, inbox) = Recorder::new(client_info());
    let lifecycle =
        ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let client = recorder
        .serve_with_lifecycle(transport(url, token), lifecycle)
        .await
        .expect("modern client connects");
    (client, inbox)
}

pub fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        other => panic!("arguments must be an object, got {other}"),
    }
}

pub async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|error| panic!("tools/call {tool} failed at protocol level: {error}"))
}

/// All text content of a result, joined by newlines.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn structured(result: &CallToolResult) -> &Value {
    result.structured_content.as_ref().expect("structuredContent is present")
}

pub fn job_id(result: &CallToolResult) -> String {
    structured(result)["job_id"].as_str().expect("job_id is a string").to_owned()
}

/// Calls `job_status` with a wait until the job has ended; returns its structured view.
pub async fn wait_until_ended(client: &Client, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let result =
            call(client, "job_status", serde_json::json!({"job_id": job_id, "wait_ms": 5000}))
                .await;
        let view = structured(&result).clone();
        if view["status"] != "working" {
            return view;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job_id} still working: {view}");
    }
}

/// Downloads a URL and decodes it as an image, returning (content-type, cache-control, image).
pub async fn fetch_image(url: &str) -> (String, String, image::DynamicImage) {
    let response = reqwest::get(url).await.expect("image URL answers");
    assert_eq!(response.status(), 200, "GET {url}");
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    let (content_type, cache) = (header("content-type"), header("cache-control"));
    let bytes = response.bytes().await.expect("image body");
    let image = image::load_from_memory(&bytes).expect("body decodes as an image");
    (content_type, cache, image)
}

/// Counts job rows straight from the database file, bypassing the server.
pub async fn count_jobs(data_dir: &Path) -> i64 {
    use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};
    let mut connection = SqliteConnectOptions::new()
        .filename(data_dir.join("offstage.db"))
        .read_only(true)
        .connect()
        .await
        .expect("open database read-only");
    let count: (i64,) = sqlx::query_as("SELECT count(*) FROM jobs")
        .fetch_one(&mut connection)
        .await
        .expect("count jobs");
    let _ = connection.close().await;
    count.0
}
