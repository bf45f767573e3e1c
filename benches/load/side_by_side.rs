//! Part 1 of the load benchmark: offstage and the bare rmcp baseline ([`super::bare`]) driven
//! by the same client in the same run, rounds interleaved so that drift hits both alike, with
//! the ratios issue 20 holds offstage to: throughput, p50, server CPU per call, and the memory
//! of an idle legacy session.

use super::*;

/// Rounds per row; each cell is the median over them.
const ROUNDS: usize = 2;
/// Idle legacy sessions opened to measure what one holds.
const SESSIONS: usize = 1_000;

/// One benchmark row: a tool, an era and a number of clients.
#[derive(Clone, Copy)]
struct Case {
    tool: &'static str,
    era: Era,
    concurrency: usize,
}

const CASES: &[Case] = &[
    Case { tool: "generate_image", era: Era::Legacy, concurrency: 16 },
    Case { tool: "generate_image", era: Era::Legacy, concurrency: 1 },
    Case { tool: "job_status", era: Era::Legacy, concurrency: 16 },
    Case { tool: "generate_image", era: Era::Stateless, concurrency: 16 },
    Case { tool: "generate_image", era: Era::Stateless, concurrency: 1 },
    Case { tool: "job_status", era: Era::Stateless, concurrency: 16 },
];

/// What one server did in one case, over the rounds.
#[derive(Default)]
struct Cell {
    per_second: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Cell {
    fn add(&mut self, run: &Run) {
        self.per_second.push(run.per_second());
        self.p50.push(run.histogram.value_at_quantile(0.50) as f64);
        self.p99.push(run.histogram.value_at_quantile(0.99) as f64);
        self.cpu_us.push(run.cpu_per_call_us());
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// The arguments of `case`'s calls on `server`: `job_status` asks about a job made for it.
async fn arguments_for(server: &ServerProcess, case: Case) -> JsonObject {
    if case.tool != "job_status" {
        return arguments(json!({"prompt": "a red fox in the snow", "size": "square"}));
    }
    let (client, _) = connect(&server.mcp(), case.era).await;
    let job = call(&client, "generate_image", &arguments(json!({"prompt": "status target"}))).await;
    let _ = client.cancel().await;
    arguments(json!({"job_id": job["job_id"]}))
}

pub(crate) async fn run(seconds: u64) {
    // Jobs sleep far longer than the run, so replies are measured without jobs finishing
    // (and without image encoding competing for the two cores).
    let offstage = start_server("600s").await;
    let baseline = bare::spawn().await;
    let servers = [&offstage, &baseline];
    let mut cells: Vec<[Cell; 2]> = CASES.iter().map(|_| Default::default()).collect();
    for _round in 0..ROUNDS {
        for (case, cells) in CASES.iter().zip(&mut cells) {
            for (server, cell) in servers.iter().zip(cells.iter_mut()) {
                let args = arguments_for(server, *case).await;
                let run =
                    throughput(server, case.era, case.concurrency, case.tool, args, seconds).await;
                cell.add(&run);
            }
        }
    }
    println!(
        "## offstage beside bare rmcp 3.11 + axum, same run ({ROUNDS} rounds interleaved, \
         {seconds} s per row, medians)\n"
    );
    println!(
        "| tool | client | C | offstage calls/s | p50 µs | p99 µs | CPU µs/call | bare calls/s \
         | p50 µs | p99 µs | CPU µs/call | calls/s ratio | p50 ratio | CPU ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (case, [ours, bare]) in CASES.iter().zip(&cells) {
        let [ops, p50, p99, cpu] =
            [&ours.per_second, &ours.p50, &ours.p99, &ours.cpu_us].map(|v| median(v));
        let [b_ops, b_p50, b_p99, b_cpu] =
            [&bare.per_second, &bare.p50, &bare.p99, &bare.cpu_us].map(|v| median(v));
        println!(
            "| {} | {} | {} | {ops:.0} | {p50:.0} | {p99:.0} | {cpu:.0} | {b_ops:.0} | {b_p50:.0} \
             | {b_p99:.0} | {b_cpu:.0} | {:.2} | {:.2} | {:.2} |",
            case.tool,
            case.era.label(),
            case.concurrency,
            ops / b_ops,
            p50 / b_p50,
            cpu / b_cpu,
        );
    }
    drop((offstage, baseline));
    sessions().await;
}

/// The memory of an idle legacy session on each server, each a fresh process (memory freed by
/// earlier load would otherwise be reused and hide what a session costs).
pub(crate) async fn sessions() {
    println!("\n## Memory of an idle legacy session ({SESSIONS} opened, KiB each)\n");
    println!("| server | KiB per session |");
    println!("|---|---:|");
    let offstage = start_server("600s").await;
    println!("| offstage | {:.1} |", session_memory(&offstage).await);
    drop(offstage);
    let baseline = bare::spawn().await;
    println!("| bare rmcp | {:.1} |", session_memory(&baseline).await);
    println!();
}

/// Opens [`SESSIONS`] legacy sessions that then stay idle; the server's resident memory grown
/// per session, once they are all open.
async fn session_memory(server: &ServerProcess) -> f64 {
    let before = server.rss_kib();
    let mut clients = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        clients.push(connect(&server.mcp(), Era::Legacy).await.0);
    }
    // Let each session's GET stream settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib();
    for client in clients {
        let _ = client.cancel().await;
    }
    after.saturating_sub(before) as f64 / SESSIONS as f64
}
