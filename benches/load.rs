//! Load benchmark: `cargo bench --bench load`. Starts the release `offstage serve` as its own
//! process on loopback and drives it with rmcp clients, measuring
//!
//! 1. offstage beside a bare rmcp server (`load/bare.rs`, a child process of this benchmark),
//!    same client, same run: `generate_image` and `job_status` calls/s, p50/p99 and server CPU
//!    per call (from /proc) at 16 and 1 clients, for legacy sessions and 2026-07-28 stateless
//!    requests, with the ratios; and the memory of an idle legacy session on each;
//! 2. push while 8 image jobs a second finish against a stand-in provider (our own cost), and
//!    the sketch provider's drawing time beside it; then the older completion →
//!    `notifications/resources/updated` table with jobs of 200 ms;
//! 3. with a PostgreSQL server (`BENCH_PG`, default the machine's on 127.0.0.1:5432 as
//!    `postgres`; each run makes a fresh database and drops it): the same replies on the
//!    PostgreSQL store next to SQLite, the delay from completion on one instance to the
//!    notification on another, and the time from kill -9 of an instance to the last of its
//!    jobs taken over.
//!
//! `BENCH_SECONDS` sets the length of each throughput run (default 10); `BENCH_ONLY=side`,
//! `sessions` (the idle-session memory alone), `push` or `stores` runs only that part; `BENCH_OFFSTAGE=<path>` measures another build of
//! `offstage` (an earlier commit's) against the same baseline.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::disallowed_methods, reason = "BENCH_SECONDS is the benchmark's own knob")]

#[path = "load/bare.rs"]
mod bare;
mod common;
#[path = "load/push_under_load.rs"]
mod push_under_load;
#[path = "load/side_by_side.rs"]
mod side_by_side;
#[path = "load/stores.rs"]
mod stores;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientConfig, Implementation, JsonObject, ProtocolVersion,
        ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
        ServerNotification, SubscribeRequestParams, SubscriptionFilter,
    },
    service::{NotificationContext, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::ServerProcess;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Legacy,
    Stateless,
}

impl Era {
    fn label(self) -> &'static str {
        match self {
            Era::Legacy => "legacy session (2025-11-25)",
            Era::Stateless => "stateless (2026-07-28)",
        }
    }
}

#[derive(Clone)]
struct Handler {
    updates: mpsc::UnboundedSender<(String, i64)>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(Default::default(), Implementation::new("offstage-bench", "0"))
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send((params.uri, now_micros()));
    }
}

type Client = RunningService<RoleClient, Handler>;

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

async fn start_server(sketch_latency: &str) -> ServerProcess {
    start_server_with(sketch_latency, &[]).await
}

async fn start_server_with(sketch_latency: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![
        ("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", sketch_latency),
        // Measure admission and reply, not the "busy" path: let every call in.
        ("OFFSTAGE_JOBS__QUEUE", "10000000"),
        ("OFFSTAGE_JOBS__CONCURRENCY", "64"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(tempfile::tempdir().unwrap(), &["--provider", "sketch"], &env).await
}

async fn connect(url: &str, era: Era) -> (Client, mpsc::UnboundedReceiver<(String, i64)>) {
    let (updates, receiver) = mpsc::unbounded_channel();
    let handler = Handler { updates };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    let client = match era {
        Era::Legacy => handler.serve(transport).await.expect("connect"),
        Era::Stateless => handler
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("connect"),
    };
    (client, receiver)
}

fn arguments(value: Value) -> JsonObject {
    value.as_object().unwrap().clone()
}

async fn call(client: &Client, tool: &str, args: &JsonObject) -> Value {
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args.clone()))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result.structured_content.unwrap_or_default()
}

struct Run {
    histogram: Histogram<u64>,
    calls: u64,
    elapsed: Duration,
    /// The server process's CPU time (user + system) over the timed part.
    cpu: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_call_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

/// Each call's arguments: a prompt made unique per call, so a legacy session (its own
/// conversation) never hits duplicate-call detection and every call starts a real job.
fn unique(args: &JsonObject, n: u64) -> JsonObject {
    let mut args = args.clone();
    if let Some(Value::String(prompt)) = args.get_mut("prompt") {
        prompt.push_str(&format!(" #{n}"));
    }
    args
}

/// `concurrency` clients call `tool` in a loop for `seconds`; latencies in microseconds.
async fn throughput(
    server: &ServerProcess,
    era: Era,
    concurrency: usize,
    tool: &str,
    args: JsonObject,
    seconds: u64,
) -> Run {
    let url = server.mcp();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(Arc::new(connect(&url, era).await.0));
    }
    // Warm up connections and code paths.
    for client in &clients {
        for n in 0..20 {
            call(client, tool, &unique(&args, n)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cpu_before = server.cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in &clients {
        let client = client.clone();
        let args = args.clone();
        let tool = tool.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut n = 1_000;
            while Instant::now() < deadline {
                let args = unique(&args, n);
                n += 1;
                let sent = Instant::now();
                call(&client, &tool, &args).await;
                histogram.record(sent.elapsed().as_micros() as u64).unwrap();
            }
            histogram
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        histogram.add(task.await.unwrap()).unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu().saturating_sub(cpu_before);
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            let _ = client.cancel().await;
        }
    }
    Run { calls: histogram.len(), histogram, elapsed, cpu }
}

fn finished_at_micros(view: &Value) -> i64 {
    let text = view["finished_at"].as_str().expect("finished_at");
    let time = humantime::parse_rfc3339(text).expect("RFC 3339");
    time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

async fn read_job(client: &Client, uri: &str) -> Value {
    let read = client.read_resource(ReadResourceRequestParams::new(uri.to_owned())).await.unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else { panic!() };
    serde_json::from_str(text).unwrap()
}

/// Subscribes to `uri` in `era`'s way and waits for its `resources/updated`; when it arrived,
/// in µs since the epoch.
async fn await_update(
    client: &Client,
    updates: &mut mpsc::UnboundedReceiver<(String, i64)>,
    era: Era,
    uri: &str,
) -> i64 {
    match era {
        Era::Legacy => {
            #[allow(deprecated)]
            client.subscribe(SubscribeRequestParams::new(uri.to_owned())).await.unwrap();
            let (got, at) = updates.recv().await.unwrap();
            assert_eq!(got, uri);
            at
        }
        Era::Stateless => {
            let filter =
                SubscriptionFilter::builder().resource_subscription(uri.to_owned()).build();
            let mut subscription = client.listen(filter).await.unwrap();
            let notification = subscription.next().await.unwrap().unwrap();
            let at = now_micros();
            assert!(matches!(notification, ServerNotification::ResourceUpdatedNotification(_)));
            let _ = subscription.cancel().await;
            at
        }
    }
}

/// Completion → notification delay over `jobs` jobs, `workers` at a time.
async fn push_delay(url: &str, era: Era, jobs: usize, workers: usize) -> Histogram<u64> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let (client, mut updates) = connect(&url, era).await;
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let args = arguments(json!({"prompt": "a benchmark"}));
            for n in 0..jobs / workers {
                let job = call(&client, "generate_image", &unique(&args, n as u64)).await;
                let uri = format!("offstage://jobs/{}", job["job_id"].as_str().unwrap());
                let received = await_update(&client, &mut updates, era, &uri).await;
                let view = read_job(&client, &uri).await;
                assert_eq!(view["status"], "completed");
                let delay = (received - finished_at_micros(&view)).max(1) as u64;
                histogram.record(delay).unwrap();
            }
            let _ = client.cancel().await;
            histogram
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        histogram.add(task.await.unwrap()).unwrap();
    }
    histogram
}

#[tokio::main]
async fn main() {
    if std::env::var(bare::ROLE).is_ok_and(|role| role == "bare") {
        bare::serve().await;
        return;
    }
    let seconds: u64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    match only.as_str() {
        "side" => return side_by_side::run(seconds).await,
        "sessions" => return side_by_side::sessions().await,
        "push" => return push_under_load::run(seconds).await,
        "stores" => return stores::run(seconds).await,
        _ => {}
    }
    side_by_side::run(seconds).await;
    push_under_load::run(seconds).await;

    println!("\n## Job completion → notifications/resources/updated (µs)\n");
    println!("| client | jobs in flight | jobs | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    // Long enough that the subscription is always in place before the job ends.
    let server = start_server("200ms").await;
    for (era, workers) in
        [(Era::Legacy, 1), (Era::Stateless, 1), (Era::Legacy, 4), (Era::Stateless, 4)]
    {
        let histogram = push_delay(&server.mcp(), era, 100 * workers, workers).await;
        println!(
            "| {} | {workers} | {} | {} | {} | {} |",
            era.label(),
            histogram.len(),
            histogram.value_at_quantile(0.50),
            histogram.value_at_quantile(0.99),
            histogram.max()
        );
    }

    stores::run(seconds).await;
}
