//! Image pipeline benchmark: `cargo bench --bench pipeline`.
//!
//! 1. **Per image**: one 1024x1024 PNG (a provider-sized picture with photographic noise)
//!    through the pipeline's CPU steps on one thread: decode, one Lanczos3 resize to 512,
//!    lossy WebP encode; then the same plus the ThumbHash preview (what every finished job
//!    pays). p50/p99 and images/s.
//! 2. **Requests while images are processed**: the release `offstage serve` with its OpenAI
//!    provider pointed at a local stand-in that answers with that PNG, its answers spread over
//!    2 s (as seconds-long generations finish at different moments), then all at once.
//!    `job_status` latency from stateless rmcp clients, idle, then while bursts of 50
//!    `generate_image` jobs download, parse and run their pipeline (decode, preview,
//!    prerendered 512 px WebP, durable stores). Idle windows of 3 s and bursts alternate until
//!    the bursts add up to `BENCH_SECONDS` (default 10). The image pool and the provider
//!    threads run under SCHED_IDLE, so `job_status` p99 should stay within 2x of idle. Each row
//!    says how much CPU the hypervisor stole meanwhile (`steal` in /proc/stat).
//!
//! Diagnostics: `BENCH_PICTURE=64` answers with a 64x64 picture (no pixel work to speak of);
//! `BENCH_PADDING=3200000` adds that many bytes to each answer (a real answer's download);
//! `BENCH_CLIENTS=1` runs only the single-client comparisons (for `scripts/sched-delays`).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::disallowed_methods, reason = "the BENCH_* variables are the benchmark's knobs")]

mod common;

use std::{
    io::Cursor,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, http::header, routing::post};
use base64::Engine as _;
use hdrhistogram::Histogram;
use offstage::images::{ImageFormat, ImageLimits, Rendition, decode, pipeline::render::Pixels};
use rmcp::model::{CallToolRequestParams, JsonObject};
use serde_json::{Value, json};

use crate::common::{Client, ServerProcess, stateless_client};

const BURST: usize = 50;
/// Idle time sampled before each burst.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// A 1024x1024 picture with colour fields, fine detail and noise, so the PNG has the size and
/// entropy of a provider's (about 2 MB), not a flat test card.
fn picture() -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(1024, 1024, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = f64::from(state % 25) - 12.0;
        let (fx, fy) = (f64::from(x), f64::from(y));
        let detail =
            30.0 * ((fx / 7.0).sin() * (fy / 11.0).cos()) + 20.0 * ((fx + fy) / 37.0).sin();
        let channel = |base: f64| (base + detail + noise).clamp(0.0, 255.0) as u8;
        image::Rgb([
            channel(40.0 + fx * 0.15),
            channel(90.0 + (fx + fy) * 0.05),
            channel(220.0 - fy * 0.15),
        ])
    });
    png(&image)
}

fn flat_picture(side: usize) -> Vec<u8> {
    let side = u32::try_from(side).unwrap();
    let image = image::RgbImage::from_pixel(side, side, image::Rgb([40, 90, 220]));
    png(&image)
}

fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// How many sampling clients each comparison runs with: `BENCH_CLIENTS=1` for the single-client
/// case alone (diagnostics), both by default.
fn client_counts() -> Vec<usize> {
    std::env::var("BENCH_CLIENTS")
        .map(|list| list.split(',').map(|n| n.trim().parse().expect("BENCH_CLIENTS")).collect())
        .unwrap_or_else(|_| vec![1, 4])
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Time the hypervisor gave to other machines (`steal` in /proc/stat), as jiffies summed over
/// both cores, so each table row can say how much of its window the machine was not ours.
fn steal_jiffies() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    cpu.split_whitespace().nth(8).and_then(|steal| steal.parse().ok()).unwrap_or(0)
}

fn per_image(png: &[u8]) {
    let rendition = Rendition { width: 512, height: 512, format: ImageFormat::Webp };
    let runs = 40;
    let mut steps = Histogram::<u64>::new(3).unwrap();
    let mut with_preview = Histogram::<u64>::new(3).unwrap();
    let mut webp_bytes = 0;
    for round in 0..runs + 3 {
        let started = Instant::now();
        let pixels = Pixels::of(decode(png, ImageLimits::default()).unwrap().pixels);
        webp_bytes = pixels.render(rendition, 80).unwrap().len();
        let rendered = started.elapsed();
        pixels.thumbhash().unwrap();
        let all = started.elapsed();
        if round >= 3 {
            steps.record(rendered.as_micros() as u64).unwrap();
            with_preview.record(all.as_micros() as u64).unwrap();
        }
    }
    println!(
        "\n## Per 1024x1024 image, one thread ({runs} runs; PNG {} KB in, WebP {} KB out)\n",
        png.len() / 1024,
        webp_bytes / 1024
    );
    println!("| steps | p50 ms | p99 ms | images/s |");
    println!("|---|---:|---:|---:|");
    for (label, histogram) in [
        ("decode + resize to 512 + WebP encode", &steps),
        ("the same + ThumbHash preview", &with_preview),
    ] {
        let p50 = histogram.value_at_quantile(0.5) as f64 / 1000.0;
        let p99 = histogram.value_at_quantile(0.99) as f64 / 1000.0;
        println!("| {label} | {p50:.1} | {p99:.1} | {:.1} |", 1000.0 / histogram.mean() * 1000.0);
    }
}

/// An OpenAI Images stand-in that answers every generation with `png`, after `spread` x a
/// pseudo-random fraction in [0, 1): real providers take seconds and never answer 50 jobs in
/// the same millisecond (`spread` zero answers at once). The body is serialised once, so the
/// stand-in costs the shared cores next to nothing.
fn stand_in(png: &[u8], spread: Duration) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
    let body = bytes::Bytes::from(
        serde_json::to_vec(&json!({
            "created": 0,
            "data": [{ "b64_json": encoded }],
            // Diagnostic: as many bytes to download as a real answer, for a tiny picture.
            "padding": "x".repeat(env_number("BENCH_PADDING", 0)),
        }))
        .unwrap(),
    );
    let turn = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/v1/images/generations",
        post(move || {
            let body = body.clone();
            // Golden-ratio steps spread the delays evenly and repeatably.
            let n = turn.fetch_add(1, Ordering::Relaxed);
            let fraction = (n as f64 * 0.618_033_988_7).fract();
            async move {
                tokio::time::sleep(spread.mul_f64(fraction)).await;
                ([(header::CONTENT_TYPE, "application/json")], body)
            }
        }),
    );
    // Its own thread and runtime: serving 3 MB answers must not delay the sampling clients'
    // tasks in this process, which would count against the server.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    receiver.recv().unwrap()
}

async fn start_server(provider_url: &str) -> ServerProcess {
    let env = [
        ("OPENAI_API_KEY", "sk-bench"),
        ("OFFSTAGE_PROVIDERS__OPENAI__BASE_URL", provider_url),
        ("OFFSTAGE_PROVIDERS__OPENAI__PARTIAL_IMAGES", "0"),
        // All 50 jobs of a burst reach the pipeline together.
        ("OFFSTAGE_JOBS__CONCURRENCY", "64"),
        ("OFFSTAGE_JOBS__QUEUE", "10000"),
    ];
    ServerProcess::start(tempfile::tempdir().unwrap(), &["--provider", "openai"], &env).await
}

async fn call(client: &Client, tool: &str, args: Value) -> Value {
    let args: JsonObject = args.as_object().unwrap().clone();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result.structured_content.unwrap_or_default()
}

/// What the samplers and the burst driver share.
struct Phase {
    /// Samplers stop when this clears.
    running: AtomicBool,
    /// Set while a burst's 50 `generate_image` calls are in flight: that is request load of
    /// its own (measured by the load benchmark), not the pipeline's, so samples overlapping
    /// it are left out.
    submitting: AtomicBool,
}

impl Phase {
    fn new() -> Phase {
        Phase { running: AtomicBool::new(true), submitting: AtomicBool::new(false) }
    }

    fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// `clients` clients call `job_status` in a loop until the phase stops; latencies in µs, and
/// how many samples overlapped a submission.
async fn sample(clients: &[Client], job_id: &str, phase: &Phase) -> (Histogram<u64>, u64) {
    let loops = clients.iter().map(|client| async move {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        let mut skipped = 0;
        while phase.running.load(Ordering::Relaxed) {
            let quiet = !phase.submitting.load(Ordering::Relaxed);
            let started = Instant::now();
            call(client, "job_status", json!({ "job_id": job_id })).await;
            if quiet && !phase.submitting.load(Ordering::Relaxed) {
                histogram.record(started.elapsed().as_micros() as u64).unwrap();
            } else {
                skipped += 1;
            }
        }
        (histogram, skipped)
    });
    let mut total = Histogram::<u64>::new(3).unwrap();
    let mut skipped = 0;
    for (histogram, left_out) in futures::future::join_all(loops).await {
        total.add(histogram).unwrap();
        skipped += left_out;
    }
    (total, skipped)
}

async fn wait_completed(client: &Client, job_id: &str) {
    loop {
        let view = call(client, "job_status", json!({ "job_id": job_id, "wait_ms": 5000 })).await;
        match view["status"].as_str() {
            Some("working") => continue,
            Some("completed") => return,
            other => panic!("job ended {other:?}: {view}"),
        }
    }
}

/// One burst: 50 `generate_image` calls at once, then waits until all 50 completed, then stops
/// the phase.
async fn burst(client: &Client, round: usize, phase: &Phase) {
    let calls = (0..BURST).map(|n| {
        let prompt = format!("a harbour at dusk #{round}.{n}");
        call(client, "generate_image", json!({ "prompt": prompt }))
    });
    phase.submitting.store(true, Ordering::Relaxed);
    let replies = futures::future::join_all(calls).await;
    phase.submitting.store(false, Ordering::Relaxed);
    for reply in &replies {
        wait_completed(client, reply["job_id"].as_str().unwrap()).await;
    }
    phase.stop();
}

/// Samples `job_status` for `window`.
async fn idle_window(clients: &[Client], job_id: &str, window: Duration) -> Histogram<u64> {
    let phase = Phase::new();
    let timer = async {
        tokio::time::sleep(window).await;
        phase.stop();
    };
    tokio::join!(sample(clients, job_id, &phase), timer).0.0
}

/// Time spent in a phase, and how much of the machine was stolen meanwhile.
#[derive(Default)]
struct Clock {
    elapsed: Duration,
    steal: u64,
}

impl Clock {
    async fn time<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        let (started, stolen) = (Instant::now(), steal_jiffies());
        let out = work.await;
        self.elapsed += started.elapsed();
        self.steal += steal_jiffies().saturating_sub(stolen);
        out
    }

    /// Percent of both cores' time the hypervisor gave away (jiffies are 10 ms).
    fn steal_percent(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.steal as f64 * 10.0 / (self.elapsed.as_secs_f64() * 1000.0 * cores) * 100.0
    }
}

fn row(label: &str, clients: usize, histogram: &Histogram<u64>, clock: &Clock) -> String {
    format!(
        "{label} | {clients} | {} | {:.0} | {} | {} | {} | {:.0} |",
        histogram.len(),
        histogram.len() as f64 / clock.elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max(),
        clock.steal_percent(),
    )
}

#[tokio::main]
async fn main() {
    let png = picture();
    per_image(&png);
    // Diagnostic: `BENCH_PICTURE=64` answers with a 64x64 picture instead (almost no pixel
    // work), to tell the pipeline's share of the load from the job bookkeeping's.
    let side = env_number("BENCH_PICTURE", 1024);
    let answer = if side == 1024 { png.clone() } else { flat_picture(side) };

    let seconds = env_number("BENCH_SECONDS", 10) as u64;
    // Idle windows and bursts alternate, so drift of the shared machine (seen at ±50 % between
    // minutes) falls on both sides alike.
    println!(
        "\n## `job_status` idle vs while 50 image jobs run their pipeline (~{seconds} s each)\n"
    );
    println!(
        "| provider answers | server | clients | calls | calls/s | p50 µs | p99 µs | max µs | steal % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (answers, spread) in
        [("spread over 2 s", Duration::from_secs(2)), ("all at once", Duration::ZERO)]
    {
        let provider = stand_in(&answer, spread);
        let server = start_server(&provider).await;
        for clients in client_counts() {
            let (idle, busy) = compare(&server, answers, clients, seconds).await;
            summary.push((answers, clients, idle, busy));
        }
    }
    println!();
    for (answers, clients, idle, busy) in summary {
        println!(
            "answers {answers}, {clients} client(s): job_status p99 {busy} µs under image load vs {idle} µs idle = {:.2}x",
            busy as f64 / idle as f64
        );
    }
}

/// Alternates idle windows and bursts until the bursts took `seconds`; prints both rows and
/// returns the two p99s.
async fn compare(
    server: &ServerProcess,
    answers: &str,
    clients: usize,
    seconds: u64,
) -> (u64, u64) {
    let driver = stateless_client(&server.mcp()).await;
    let first = call(&driver, "generate_image", json!({ "prompt": "the job we ask about" })).await;
    let job_id = first["job_id"].as_str().unwrap().to_owned();
    wait_completed(&driver, &job_id).await;
    let mut pool = Vec::new();
    for _ in 0..clients {
        pool.push(stateless_client(&server.mcp()).await);
    }
    idle_window(&pool, &job_id, Duration::from_secs(1)).await;
    let mut idle = Histogram::<u64>::new(3).unwrap();
    let mut busy = Histogram::<u64>::new(3).unwrap();
    let (mut idle_clock, mut busy_clock) = (Clock::default(), Clock::default());
    let (mut rounds, mut skipped) = (0, 0);
    while busy_clock.elapsed < Duration::from_secs(seconds) {
        idle.add(idle_clock.time(idle_window(&pool, &job_id, IDLE_WINDOW)).await).unwrap();
        let phase = Phase::new();
        let ((histogram, left_out), ()) = busy_clock
            .time(async {
                tokio::join!(sample(&pool, &job_id, &phase), burst(&driver, rounds, &phase))
            })
            .await;
        busy.add(histogram).unwrap();
        skipped += left_out;
        rounds += 1;
    }
    let jobs = rounds * BURST;
    println!("| {answers} | {}", row("idle", clients, &idle, &idle_clock));
    let label = format!(
        "{BURST} image jobs at a time ({jobs} jobs, {:.1} jobs/s; {skipped} samples overlapping the 50 calls left out)",
        jobs as f64 / busy_clock.elapsed.as_secs_f64()
    );
    println!("| {answers} | {}", row(&label, clients, &busy, &busy_clock));
    for client in pool {
        let _ = client.cancel().await;
    }
    let _ = driver.cancel().await;
    (idle.value_at_quantile(0.99), busy.value_at_quantile(0.99))
}
