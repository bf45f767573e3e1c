//! Push benchmark: `cargo bench --bench push`. Starts the release `offstage serve` as its own
//! process on loopback and measures what host apps see:
//!
//! 1. the delay from a job's completion (`finished_at`, stamped when the result is committed)
//!    to its `job.completed` event arriving on a `GET /v1/events` stream, and to its signed
//!    webhook arriving at a local receiver;
//! 2. how many events per second one server delivers to 1,000 concurrent SSE subscribers, and
//!    how late (receive time minus the event's commit stamp).
//!
//! `BENCH_SECONDS` sets the length of each fan-out run (default 10), `BENCH_SUBSCRIBERS` the
//! number of streams (default 1000) and `BENCH_RATES` the offered event rates (default
//! `100,200,400,800` per second).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::disallowed_methods, reason = "BENCH_* are the benchmark's own knobs")]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use hdrhistogram::Histogram;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::common::{Client, ServerProcess};

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

fn rfc3339_micros(text: &str) -> i64 {
    let time = humantime::parse_rfc3339(text).expect("RFC 3339");
    time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap()
}

async fn start_server(sketch_latency: &str, webhook: Option<&str>) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let mut file = "[push]\nallow_private_webhooks = true\n".to_owned();
    if let Some(url) = webhook {
        file += &format!(
            "[[push.webhooks]]\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        );
    }
    let config = dir.path().join("offstage.toml");
    std::fs::write(&config, file).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let env = [
        ("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", sketch_latency),
        ("OFFSTAGE_JOBS__QUEUE", "10000000"),
        ("OFFSTAGE_JOBS__CONCURRENCY", "64"),
    ];
    ServerProcess::start(dir, &["--provider", "sketch", "--config", &config], &env).await
}

async fn connect(base: &str) -> Client {
    common::stateless_client(&format!("{base}/mcp")).await
}

async fn generate(client: &Client, prompt: &str) -> String {
    let arguments = json!({"prompt": prompt}).as_object().unwrap().clone();
    let result = client
        .call_tool(CallToolRequestParams::new("generate_image").with_arguments(arguments))
        .await
        .expect("tools/call");
    result.structured_content.unwrap()["job_id"].as_str().unwrap().to_owned()
}

/// Reads `data:` payloads off an SSE response, calling `each` with (receive time, data).
async fn read_sse(mut response: reqwest::Response, mut each: impl FnMut(i64, &str) -> bool) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let at = now_micros();
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|line| line.strip_prefix("data: "))
                && !each(at, data)
            {
                return;
            }
        }
    }
}

async fn open_stream(base: &str) -> reqwest::Response {
    let response = reqwest::Client::new().get(format!("{base}/v1/events")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
}

/// A webhook receiver that reports (arrival time, body) of each delivery.
async fn start_receiver() -> (String, mpsc::UnboundedReceiver<(i64, Value)>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    async fn accept(
        State(sender): State<mpsc::UnboundedSender<(i64, Value)>>,
        body: Bytes,
    ) -> StatusCode {
        let at = now_micros();
        let _ = sender.send((at, serde_json::from_slice(&body).unwrap()));
        StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(accept)).with_state(sender);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

/// Part 1: `jobs` jobs, `workers` in flight; completion → SSE and → webhook delays.
async fn completion_delays(workers: usize, jobs: usize) -> (Histogram<u64>, Histogram<u64>) {
    let (hook, mut deliveries) = start_receiver().await;
    // Long enough that a worker is always waiting before its job ends.
    let server = start_server("200ms", Some(&hook)).await;
    let (completed_tx, _) = broadcast::channel::<String>(4096);
    let sse = Arc::new(std::sync::Mutex::new(histogram()));
    let stream = open_stream(&server.base).await;
    let reader = {
        let (sse, completed) = (sse.clone(), completed_tx.clone());
        tokio::spawn(read_sse(stream, move |at, data| {
            let event: Value = serde_json::from_str(data).unwrap();
            if event["type"] == "job.completed" {
                let finished = rfc3339_micros(event["job"]["finished_at"].as_str().unwrap());
                sse.lock().unwrap().record((at - finished).max(1) as u64).unwrap();
                let _ = completed.send(event["job"]["job_id"].as_str().unwrap().to_owned());
            }
            true
        }))
    };
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (base, completed) = (server.base.clone(), completed_tx.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect(&base).await;
            for n in 0..jobs / workers {
                let mut done = completed.subscribe();
                let id = generate(&client, &format!("benchmark {worker}-{n}")).await;
                while done.recv().await.unwrap() != id {}
            }
            let _ = client.cancel().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut webhook = histogram();
    while webhook.len() < (jobs / workers * workers) as u64 {
        let (at, body) = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
            .await
            .expect("every webhook arrives")
            .unwrap();
        let finished = rfc3339_micros(body["data"]["job"]["finished_at"].as_str().unwrap());
        webhook.record((at - finished).max(1) as u64).unwrap();
    }
    reader.abort();
    let sse = sse.lock().unwrap().clone();
    (sse, webhook)
}

/// The commit stamp of an event without parsing the whole payload: keys are serialised in
/// order, so the event's own `created_at` comes before the job's (checked at start).
fn event_stamp(data: &str) -> i64 {
    const KEY: &str = "\"created_at\":\"";
    let start = data.find(KEY).expect("created_at") + KEY.len();
    let end = start + data[start..].find('"').unwrap();
    rfc3339_micros(&data[start..end])
}

/// Part 2: `subscribers` streams while 8 clients create jobs at `rate` per second in total.
async fn fan_out(subscribers: usize, rate: u32, seconds: u64) {
    // Jobs never finish during the run: every event is a `job.created`, so the cores go to
    // fan-out rather than to drawing images.
    let server = start_server("600s", None).await;
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let stream = open_stream(&server.base).await;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut delays = histogram();
            let mut count = 0u64;
            read_sse(stream, |at, data| {
                delays.record((at - event_stamp(data)).max(1) as u64).unwrap();
                count += 1;
                received.fetch_add(1, Ordering::Relaxed);
                true
            })
            .await;
            (count, delays)
        }));
    }
    // Check the stamp shortcut against a full parse once.
    let probe = open_stream(&server.base).await;
    let checker = tokio::spawn(async move {
        let mut checked = false;
        read_sse(probe, |_, data| {
            let event: Value = serde_json::from_str(data).unwrap();
            assert_eq!(event_stamp(data), rfc3339_micros(event["created_at"].as_str().unwrap()));
            checked = true;
            false
        })
        .await;
        checked
    });

    let produced = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut producers = Vec::new();
    const PRODUCERS: u32 = 8;
    for worker in 0..PRODUCERS {
        let (base, produced, stop) = (server.base.clone(), produced.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let client = connect(&base).await;
            let mut ticks = tokio::time::interval(Duration::from_secs(1) * PRODUCERS / rate);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                generate(&client, &format!("fan-out {worker}-{n}")).await;
                produced.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            let _ = client.cancel().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await.unwrap();
    }
    let produced = produced.load(Ordering::Relaxed);
    let expected = produced * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    assert!(checker.await.unwrap(), "the stamp shortcut was checked");
    drop(server);
    let mut delays = histogram();
    let mut complete = 0;
    for reader in readers {
        let (count, histogram) = reader.await.unwrap();
        complete += usize::from(count == produced);
        delays.add(histogram).unwrap();
    }
    let delivered = received.load(Ordering::Relaxed);
    println!(
        "| {subscribers} | {rate} | {:.0} | {:.0} | {} | {} | {} | {complete} / {subscribers} |",
        produced as f64 / seconds as f64,
        delivered as f64 / elapsed.as_secs_f64(),
        delays.value_at_quantile(0.50),
        delays.value_at_quantile(0.99),
        delays.max(),
    );
}

#[tokio::main]
async fn main() {
    let seconds: u64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let subscribers: usize =
        std::env::var("BENCH_SUBSCRIBERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);

    println!("## Job completion → SSE event and → webhook arrival (µs)\n");
    println!(
        "| jobs in flight | jobs | SSE p50 | SSE p99 | SSE max | webhook p50 | webhook p99 | webhook max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for workers in [1, 4] {
        let (sse, webhook) = completion_delays(workers, 100 * workers).await;
        println!(
            "| {workers} | {} | {} | {} | {} | {} | {} | {} |",
            sse.len(),
            sse.value_at_quantile(0.50),
            sse.value_at_quantile(0.99),
            sse.max(),
            webhook.value_at_quantile(0.50),
            webhook.value_at_quantile(0.99),
            webhook.max(),
        );
    }

    println!("\n## Events to {subscribers} concurrent SSE subscribers, {seconds} s per rate\n");
    println!(
        "| subscribers | offered events/s | events/s | deliveries/s | p50 µs | p99 µs | max µs | streams with every event |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rates: Vec<u32> = std::env::var("BENCH_RATES")
        .ok()
        .map(|rates| rates.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 200, 400, 800]);
    for rate in rates {
        fan_out(subscribers, rate, seconds).await;
    }
}
