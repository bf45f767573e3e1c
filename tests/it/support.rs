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
pub(crate) const SKETCH_LATENCY: Duration = Duration::from_millis(400);
/// Upper bound for anything that should happen "soon"; generous for a loaded 2-core CI box.
pub(crate) const SOON: Duration = Duration::from_secs(15);

/// A server running in this process, with its own data directory.
pub(crate) struct TestServer {
    pub server: Server,
    pub dir: TempDir,
    pub config: Config,
}

pub(crate) fn test_config(dir: &Path) -> Config {
    let mut config = Config::for_data_dir(dir);
    config.providers.sketch.latency = SKETCH_LATENCY.into();
    // Event sequences in tests are exact; `partial_images.rs` turns previews on.
    config.providers.sketch.partial_images = false;
    config.jobs.lease = Duration::from_secs(1).into();
    config
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = Server::start(config.clone()).await.expect("server starts");
        TestServer { server, dir, config }
    }

    /// Stops the server gracefully and starts it again on the same address and data directory.
    pub(crate) async fn restart(self) -> TestServer {
        let TestServer { server, dir, mut config } = self;
        config.listen = server.local_addr();
        server.stop().await;
        let server = Server::start(config.clone()).await.expect("server starts again");
        TestServer { server, dir, config }
    }

    /// Opens `GET /v1/events` with a query string (may be empty) and optional `Last-Event-ID`.
    pub(crate) async fn events(
        &self,
        token: Option<&str>,
        query: &str,
        last_event_id: Option<i64>,
    ) -> SseReader {
        SseReader::new(
            self.events_request(token, query, last_event_id).send().await.expect("GET /v1/events"),
        )
    }

    pub(crate) fn events_request(
        &self,
        token: Option<&str>,
        query: &str,
        last_event_id: Option<i64>,
    ) -> reqwest::RequestBuilder {
        let mut request = reqwest::Client::new().get(self.http(&format!("/v1/events{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        request
    }

    /// `GET /v1/jobs/{id}` as `token`: (status, JSON body).
    pub(crate) async fn job_json(&self, token: Option<&str>, id: &str) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(self.http(&format!("/v1/jobs/{id}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("GET /v1/jobs/{id}");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Polls `GET /v1/jobs/{id}` (which tells no conversation anything) until the job ended.
    pub(crate) async fn wait_ended_quietly(&self, token: Option<&str>, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let (status, view) = self.job_json(token, id).await;
            assert_eq!(status, 200, "{view}");
            if view["status"] != "working" {
                return view;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {id} still working");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self) -> String {
        self.server.mcp_url()
    }

    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// What a client received from the server without asking.
pub(crate) struct Inbox {
    pub updates: mpsc::UnboundedReceiver<String>,
    pub progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    /// One entry per `notifications/tools/list_changed` (legacy sessions).
    pub tools_changed: mpsc::UnboundedReceiver<()>,
}

impl Inbox {
    /// The next `resources/updated` URI, or a test failure after [`SOON`].
    pub(crate) async fn next_update(&mut self) -> String {
        tokio::time::timeout(SOON, self.updates.recv())
            .await
            .expect("a resources/updated notification arrives")
            .expect("client still running")
    }

    /// Waits for the next `notifications/tools/list_changed`, or fails after [`SOON`].
    pub(crate) async fn next_tools_changed(&mut self) {
        tokio::time::timeout(SOON, self.tools_changed.recv())
            .await
            .expect("a tools/list_changed notification arrives")
            .expect("client still running");
    }
}

/// A client handler that forwards pushed notifications to an [`Inbox`].
#[derive(Clone)]
pub(crate) struct Recorder {
    info: ClientConfig,
    updates: mpsc::UnboundedSender<String>,
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    tools_changed: mpsc::UnboundedSender<()>,
}

impl Recorder {
    pub(crate) fn new(info: ClientConfig) -> (Recorder, Inbox) {
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let (tools_tx, tools_changed) = mpsc::unbounded_channel();
        let recorder =
            Recorder { info, updates: updates_tx, progress: progress_tx, tools_changed: tools_tx };
        (recorder, Inbox { updates, progress, tools_changed })
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

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tools_changed.send(());
    }
}

pub(crate) type Client = RunningService<RoleClient, Recorder>;

fn transport(url: &str, token: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    transport_with(url, token, &[])
}

fn transport_with(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect();
    StreamableHttpClientTransport::from_config(config.custom_headers(headers))
}

/// A legacy-era client whose every request carries `headers` (a host app naming its
/// conversation, say).
pub(crate) async fn legacy_client_with(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (Client, Inbox) {
    let (recorder, inbox) = Recorder::new(client_info());
    let client =
        recorder.serve(transport_with(url, token, headers)).await.expect("legacy client connects");
    (client, inbox)
}

/// A 2026-07-28 client whose every request carries `headers`.
pub(crate) async fn modern_client_with(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (Client, Inbox) {
    let (recorder, inbox) = Recorder::new(client_info());
    let lifecycle =
        ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let client = recorder
        .serve_with_lifecycle(transport_with(url, token, headers), lifecycle)
        .await
        .expect("modern client connects");
    (client, inbox)
}

pub(crate) fn client_info() -> ClientConfig {
    ClientConfig::new(Default::default(), Implementation::new("offstage-tests", "0"))
}

/// A legacy-era client: `initialize`, a session, pushes on the session's GET stream.
pub(crate) async fn legacy_client(url: &str, token: Option<&str>) -> (Client, Inbox) {
    legacy_client_at(url, token, ProtocolVersion::V_2025_11_25).await
}

pub(crate) async fn legacy_client_at(
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
pub(crate) async fn modern_client(url: &str, token: Option<&str>) -> (Client, Inbox) {
    let (recorder, inbox) = Recorder::new(client_info());
    let lifecycle =
        ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let client = recorder
        .serve_with_lifecycle(transport(url, token), lifecycle)
        .await
        .expect("modern client connects");
    (client, inbox)
}

pub(crate) fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        other => panic!("arguments must be an object, got {other}"),
    }
}

pub(crate) async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|error| panic!("tools/call {tool} failed at protocol level: {error}"))
}

/// All text content of a result, joined by newlines.
pub(crate) fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn structured(result: &CallToolResult) -> &Value {
    result.structured_content.as_ref().expect("structuredContent is present")
}

pub(crate) fn job_id(result: &CallToolResult) -> String {
    structured(result)["job_id"].as_str().expect("job_id is a string").to_owned()
}

/// Calls `job_status` with a wait until the job has ended; returns its structured view.
pub(crate) async fn wait_until_ended(client: &Client, job_id: &str) -> Value {
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
pub(crate) async fn fetch_image(url: &str) -> (String, String, image::DynamicImage) {
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
pub(crate) async fn count_jobs(data_dir: &Path) -> i64 {
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

/// One Server-Sent Event as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is JSON ({e}): {}", self.data))
    }

    /// The data as a job event, checked against its schema (`schemas/event.json`): every
    /// required field present, no unknown one.
    pub(crate) fn event(&self) -> offstage::push::event::EventBody {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not a job event ({e}): {}", self.data))
    }
}

/// Reads an SSE response event by event (comments and `retry:` lines skipped).
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen so far (keep-alives).
    pub comments: usize,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response) -> SseReader {
        assert!(response.status().is_success(), "SSE request failed: {}", response.status());
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "not an event stream: {kind}");
        SseReader { response, buffer: String::new(), comments: 0 }
    }

    /// The next event, or `None` if none arrives within `wait` (or the stream ends).
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { id: None, event: None, data: String::new() };
                let mut has_data = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => event.id = Some(value.to_owned()),
                            "event" => event.event = Some(value.to_owned()),
                            "data" => {
                                if has_data {
                                    event.data.push('\n');
                                }
                                event.data.push_str(value);
                                has_data = true;
                            }
                            _ => {}
                        }
                    }
                }
                if has_data {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?;
            match chunk.expect("stream readable") {
                Some(bytes) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
                }
                None => return None,
            }
        }
    }

    pub(crate) async fn next(&mut self) -> SseEvent {
        self.next_within(SOON).await.expect("an event arrives")
    }
}

/// The `_meta` every 2026-07-28 request carries, declaring `capabilities`.
pub(crate) fn modern_meta(capabilities: Value) -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "offstage-tests", "version": "0"},
    })
}

/// Sends one raw 2026-07-28 request to `/mcp`.
pub(crate) fn raw_request(
    url: &str,
    token: Option<&str>,
    method: &str,
    name: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(body.to_string());
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
}

/// The JSON-RPC reply in a response to [`raw_request`], sent as JSON or as one SSE `data:`.
pub(crate) async fn rpc_reply(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("a body");
    text.lines()
        .find_map(|line| line.strip_prefix("data: "))
        .map_or_else(|| serde_json::from_str(&text), serde_json::from_str)
        .unwrap_or_else(|error| panic!("not a JSON-RPC reply ({error}): {text}"))
}

pub(crate) fn tasks_capabilities() -> rmcp::model::ClientCapabilities {
    rmcp::model::ClientCapabilities::builder().enable_tasks().build()
}

/// A 2026-07-28 client that declares the tasks extension on every request.
pub(crate) async fn tasks_client(url: &str, token: Option<&str>) -> (Client, Inbox) {
    let info = ClientConfig::new(tasks_capabilities(), Implementation::new("offstage-tests", "0"));
    let (recorder, inbox) = Recorder::new(info);
    let lifecycle =
        ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let client = recorder
        .serve_with_lifecycle(transport(url, token), lifecycle)
        .await
        .expect("tasks client connects");
    (client, inbox)
}
