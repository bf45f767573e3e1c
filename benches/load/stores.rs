//! Part 3 of the load benchmark: the PostgreSQL store next to SQLite in the same run, push
//! from one instance to another, and takeover after kill -9.

use sqlx::{Connection, PgConnection};

use super::*;

/// A fresh database on the benchmark's PostgreSQL server, dropped by [`Database::drop_now`].
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Option<Database> {
        let server = std::env::var("BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut admin = match PgConnection::connect(&server).await {
            Ok(admin) => admin,
            Err(error) => {
                println!("\n(no PostgreSQL at {server}: {error}; set BENCH_PG for part 3)");
                return None;
            }
        };
        let name = format!("offstage_bench_{}", std::process::id());
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
        let statement = format!("CREATE DATABASE {name}");
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        Some(Database { server, name, url: url.to_string() })
    }

    async fn drop_now(self) {
        let mut admin = PgConnection::connect(&self.server).await.unwrap();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
    }
}

pub(crate) async fn run(seconds: u64) {
    println!("\n## SQLite and PostgreSQL stores, same run (legacy sessions; µs)\n");
    let Some(db) = Database::create().await else { return };
    println!("| tool | store | concurrency | calls/s | p50 | p99 | p99.9 | max | CPU µs/call |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let stores: [(&str, Vec<(&str, &str)>); 2] =
        [("SQLite", vec![]), ("PostgreSQL", vec![("OFFSTAGE_DATABASE_URL", db.url.as_str())])];
    for (store, env) in &stores {
        let server = start_server_with("600s", env).await;
        let args = arguments(json!({"prompt": "a red fox in the snow", "size": "square"}));
        for concurrency in [1, 16] {
            let run = throughput(
                &server,
                Era::Legacy,
                concurrency,
                "generate_image",
                args.clone(),
                seconds,
            )
            .await;
            println!("{}", store_row("generate_image", store, concurrency, &run));
        }
        let (client, _) = connect(&server.mcp(), Era::Legacy).await;
        let job =
            call(&client, "generate_image", &arguments(json!({"prompt": "status target"}))).await;
        let args = arguments(json!({"job_id": job["job_id"]}));
        for concurrency in [1, 16] {
            let run =
                throughput(&server, Era::Legacy, concurrency, "job_status", args.clone(), seconds)
                    .await;
            println!("{}", store_row("job_status", store, concurrency, &run));
        }
        let _ = client.cancel().await;
    }
    db.drop_now().await;

    let Some(db) = Database::create().await else { return };
    cross_instance(&db.url).await;
    db.drop_now().await;
    for lease in ["2s", "15s"] {
        let Some(db) = Database::create().await else { return };
        takeover(&db.url, lease).await;
        db.drop_now().await;
    }
}

fn store_row(tool: &str, store: &str, concurrency: usize, run: &Run) -> String {
    let h = &run.histogram;
    format!(
        "| {tool} | {store} | {concurrency} | {:.0} | {} | {} | {} | {} | {:.0} |",
        run.per_second(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        run.cpu_per_call_us(),
    )
}

/// Jobs made and run on A; a client of B subscribed to each hears it end.
async fn cross_instance(url: &str) {
    // Without partial images, the one update a subscriber gets is the job's end.
    let env =
        [("OFFSTAGE_DATABASE_URL", url), ("OFFSTAGE_PROVIDERS__SKETCH__PARTIAL_IMAGES", "false")];
    let a = start_server_with("200ms", &env).await;
    let b = start_server_with("200ms", &env).await;
    let (on_a, _) = connect(&a.mcp(), Era::Legacy).await;
    let (on_b, mut updates) = connect(&b.mcp(), Era::Legacy).await;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let args = arguments(json!({"prompt": "a benchmark"}));
    for n in 0..200 {
        let job = call(&on_a, "generate_image", &unique(&args, n)).await;
        let uri = format!("offstage://jobs/{}", job["job_id"].as_str().unwrap());
        #[allow(deprecated)]
        on_b.subscribe(SubscribeRequestParams::new(uri.clone())).await.unwrap();
        // Subscribing tells at once where the job stands; the next update is its end.
        let (view, at) = loop {
            let (got, at) = updates.recv().await.unwrap();
            assert_eq!(got, uri);
            let view = read_job(&on_b, &uri).await;
            if view["status"] == "completed" {
                break (view, at);
            }
        };
        histogram.record((at - finished_at_micros(&view)).max(1) as u64).unwrap();
    }
    println!("\n## Completion on instance A → notifications/resources/updated on B (µs)\n");
    println!("| jobs | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} |",
        histogram.len(),
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.max()
    );
    let _ = on_a.cancel().await;
    let _ = on_b.cancel().await;
}

/// 32 jobs working on A when it is killed; B takes them over once A's lease runs out.
async fn takeover(url: &str, lease: &str) {
    let mut a = start_server_with(
        "600s",
        &[("OFFSTAGE_DATABASE_URL", url), ("OFFSTAGE_JOBS__LEASE", lease)],
    )
    .await;
    let b = start_server_with(
        "100ms",
        &[("OFFSTAGE_DATABASE_URL", url), ("OFFSTAGE_JOBS__LEASE", lease)],
    )
    .await;
    let (on_a, _) = connect(&a.mcp(), Era::Legacy).await;
    let args = arguments(json!({"prompt": "a benchmark"}));
    for n in 0..32 {
        call(&on_a, "generate_image", &unique(&args, n)).await;
    }
    let mut db = PgConnection::connect(url).await.unwrap();
    let owner: String = sqlx::query_scalar("SELECT DISTINCT lease_owner FROM jobs")
        .fetch_one(&mut db)
        .await
        .unwrap();
    // Let A renew its lease once, as a process that ran a while would have.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    let killed = Instant::now();
    let (mut claimed, mut ended) = (None, None);
    while ended.is_none() {
        let (left, working): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE lease_owner = $1), \
             count(*) FILTER (WHERE status = 'working') FROM jobs",
        )
        .bind(&owner)
        .fetch_one(&mut db)
        .await
        .unwrap();
        if left == 0 && claimed.is_none() {
            claimed = Some(killed.elapsed());
        }
        if working == 0 {
            ended = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    println!(
        "\nTakeover, lease {lease}: 32 jobs working on A at kill -9; B claimed the last after \
         {:.2} s, all ended after {:.2} s ({completed} completed).",
        claimed.unwrap_or_default().as_secs_f64(),
        ended.unwrap_or_default().as_secs_f64()
    );
    drop(b);
}
