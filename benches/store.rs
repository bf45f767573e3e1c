//! Store benchmark: `cargo bench --bench store`. Insert latency and throughput of the embedded
//! SQLite job store alone, with 1 and 16 concurrent writers — the part of a `generate_image`
//! reply that must wait for a durable commit (the job row and its creation event), and what
//! group commit speeds up.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::{sync::Arc, time::Instant};

use hdrhistogram::Histogram;
use offstage::jobs::{
    Job, JobContext, JobId, JobOutput, JobStatus, Micros,
    events::{BareEvents, EventComposer, JobChange},
    sqlite::SqliteJobStore,
    store::{Insert, JobStore, Lease},
};

const INSERTS: usize = 40_000;

fn job() -> Job {
    let now = Micros::now();
    Job {
        id: JobId::generate(),
        tool: "generate_image".to_owned(),
        produces: JobOutput::Json,
        owner: "local".to_owned(),
        input: serde_json::json!({"prompt": "a red fox in the snow", "size": "square"}),
        status: JobStatus::Working,
        output: None,
        progress: None,
        error: None,
        attempts: 0,
        eta_ms: 3000,
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
        context: JobContext::default(),
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteJobStore::open(&dir.path().join("offstage.db")).await.unwrap());
    store.heartbeat(&Lease { instance: "bench".into(), until: Micros(i64::MAX) }).await.unwrap();
    println!("| writers | inserts/s | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for writers in [1usize, 16] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
                for _ in 0..INSERTS / writers {
                    let job = job();
                    // Every insert writes its job's creation event in the same transaction.
                    let event = BareEvents.compose(JobChange::Created, &job);
                    let sent = Instant::now();
                    store.insert(Insert::new(&job, "bench", event)).await.unwrap();
                    histogram.record(sent.elapsed().as_micros() as u64).unwrap();
                }
                histogram
            }));
        }
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
        for task in tasks {
            histogram.add(task.await.unwrap()).unwrap();
        }
        println!(
            "| {writers} | {:.0} | {} | {} | {} | {} |",
            histogram.len() as f64 / started.elapsed().as_secs_f64(),
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
            histogram.max()
        );
    }
    store.close().await;
}
