//! Part 2 of the load benchmark: push while image jobs finish at a steady 8 a second. The
//! provider is a stand-in image service on loopback (the `endpoint` provider's wire format)
//! that answers with a small PNG after a short hold, so that what is measured is our own cost:
//! the pipeline, the commit, the event and the notification. The sketch provider's own
//! drawing time (the offline default) is reported next to it.

use std::io::Cursor;

use axum::{Router, routing::post};

use super::*;

/// Jobs started per second, across all workers.
const JOBS_PER_SECOND: usize = 8;
/// How long the stand-in holds each request: long enough that the subscription is in place
/// before the job ends, short enough to keep 8 jobs a second with few workers.
const HOLD: Duration = Duration::from_millis(100);

/// A 256×256 PNG, made once.
fn png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// The stand-in image service; returns its base URL. It lives as long as the benchmark.
async fn stand_in() -> String {
    let png = bytes::Bytes::from(png());
    let app = Router::new().route(
        "/generate",
        post(move || {
            let png = png.clone();
            async move {
                tokio::time::sleep(HOLD).await;
                ([("content-type", "image/png")], png)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn micros_of(view: &Value, field: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(view[field].as_str()?).ok()?;
    Some(time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64)
}

pub(crate) async fn run(seconds: u64) {
    println!("## Push while {JOBS_PER_SECOND} image jobs a second finish (µs)\n");
    println!(
        "| provider | client | jobs | completion → resources/updated p50 | p99 | max \
         | job created → ended p50 | p99 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let base = stand_in().await;
    let endpoint = [
        ("OFFSTAGE_PROVIDERS__ENDPOINT__BASE_URL", base.as_str()),
        // Without partial images, the one update a subscriber gets is the job's end.
        ("OFFSTAGE_PROVIDERS__SKETCH__PARTIAL_IMAGES", "false"),
    ];
    let server = ServerProcess::start(
        tempfile::tempdir().unwrap(),
        &["--provider", "endpoint"],
        &[&endpoint[..], &[("OFFSTAGE_JOBS__CONCURRENCY", "64")]].concat(),
    )
    .await;
    for era in [Era::Legacy, Era::Stateless] {
        let (push, work) = paced(&server, era, seconds).await;
        print_row("stand-in (PNG after 100 ms)", era, &push, &work);
    }
    drop(server);
    // The sketch provider draws for real: what a laptop trying offstage feels per image.
    let sketch =
        start_server_with("0s", &[("OFFSTAGE_PROVIDERS__SKETCH__PARTIAL_IMAGES", "false")]).await;
    let (push, work) = paced(&sketch, Era::Legacy, seconds).await;
    print_row("sketch (drawing included)", Era::Legacy, &push, &work);
    println!();
}

fn print_row(provider: &str, era: Era, push: &Histogram<u64>, work: &Histogram<u64>) {
    println!(
        "| {provider} | {} | {} | {} | {} | {} | {} | {} |",
        era.label(),
        push.len(),
        push.value_at_quantile(0.50),
        push.value_at_quantile(0.99),
        push.max(),
        work.value_at_quantile(0.50),
        work.value_at_quantile(0.99),
    );
}

/// [`JOBS_PER_SECOND`] workers, each starting one job a second and waiting for its end to be
/// pushed. Returns completion → notification and job creation → end, in µs.
async fn paced(server: &ServerProcess, era: Era, seconds: u64) -> (Histogram<u64>, Histogram<u64>) {
    let mut tasks = Vec::new();
    for worker in 0..JOBS_PER_SECOND {
        let url = server.mcp();
        tasks.push(tokio::spawn(async move {
            // Spread the workers over the second, so jobs end at a steady rate.
            tokio::time::sleep(Duration::from_secs(1) * worker as u32 / JOBS_PER_SECOND as u32)
                .await;
            let (client, mut updates) = connect(&url, era).await;
            let mut push = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut work = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let args = arguments(json!({"prompt": "a benchmark"}));
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for n in 0..seconds {
                tick.tick().await;
                let job = call(&client, "generate_image", &unique(&args, n)).await;
                let uri = format!("offstage://jobs/{}", job["job_id"].as_str().unwrap());
                let received = await_update(&client, &mut updates, era, &uri).await;
                let view = read_job(&client, &uri).await;
                assert_eq!(view["status"], "completed", "{view}");
                let finished = micros_of(&view, "finished_at").unwrap();
                push.record((received - finished).max(1) as u64).unwrap();
                if let Some(started) = micros_of(&view, "created_at") {
                    work.record((finished - started).max(1) as u64).unwrap();
                }
            }
            let _ = client.cancel().await;
            (push, work)
        }));
    }
    let mut push = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut work = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        let (p, w) = task.await.unwrap();
        push.add(p).unwrap();
        work.add(w).unwrap();
    }
    (push, work)
}
