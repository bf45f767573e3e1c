//! Several `offstage serve` processes on one PostgreSQL database and one image store, as a
//! deployment behind a load balancer runs them: any instance answers for any job, hears about
//! every job, streams every instance's events in one order, takes over the jobs of an instance
//! killed with SIGKILL, and hands each delivery, announcement and duplicate to exactly one.
//!
//! Needs a PostgreSQL server: `OFFSTAGE_TEST_PG` (scripts/test sets it), else 127.0.0.1:5432
//! as `postgres`. Without one these tests say so and pass, unless `OFFSTAGE_TEST_REQUIRE_ALL=1`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rmcp::model::{
    GetTaskParams, ReadResourceRequestParams, ResourceContents, ServerNotification,
    SubscribeRequestParams, SubscriptionFilter,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::{
    push::webhooks::{Receiver, SECRET},
    support::{
        SseReader, call, job_id, legacy_client, legacy_client_with, modern_client, modern_meta,
        raw_request, structured, tasks_client, text,
    },
};

/// A fresh database on the test server, dropped at the end.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Option<Database> {
        #[allow(clippy::disallowed_methods)] // The test's own setting.
        let server = std::env::var("OFFSTAGE_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut admin = match PgConnection::connect(&server).await {
            Ok(admin) => admin,
            Err(error) => {
                #[allow(clippy::disallowed_methods)]
                let required = std::env::var("OFFSTAGE_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1");
                assert!(!required, "no PostgreSQL at {server}: {error}");
                eprintln!("skipped: no PostgreSQL at {server} ({error}); scripts/test starts one");
                return None;
            }
        };
        let name = format!("offstage_it_{}", ulid::Ulid::generate().to_string().to_lowercase());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        Some(Database { server, name, url: url.to_string() })
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    async fn drop_now(self) {
        let mut admin = PgConnection::connect(&self.server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// What every instance of one deployment shares.
struct Deployment {
    db: Database,
    dir: tempfile::TempDir,
    /// Extra TOML for every instance's configuration file.
    config: String,
}

/// One `offstage serve` process.
struct Instance {
    child: Child,
    port: u16,
}

impl Deployment {
    async fn new(config: &str) -> Option<Deployment> {
        let db = Database::create().await?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        Some(Deployment { db, dir, config: config.to_owned() })
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// Starts instance `name` (its own data dir, the shared database and images).
    async fn start(&self, name: &str, env: &[(&str, &str)]) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data_dir = self.dir.path().join(name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let config = data_dir.join("offstage.toml");
        std::fs::write(&config, &self.config).unwrap();
        let log = std::fs::File::create(data_dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_offstage"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--database-url")
            .arg(&self.db.url)
            .env_remove("OPENAI_API_KEY")
            .env("OFFSTAGE_IMAGES__STORE", format!("file://{}", self.images().display()))
            .env("OFFSTAGE_JOBS__LEASE", "1s")
            .env("OFFSTAGE_LOG", "info,offstage=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn offstage serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("http://127.0.0.1:{port}/healthz");
        while reqwest::get(&health).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "instance {name} did not come up: {}",
                log_of(&data_dir)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Instance { child, port }
    }

    async fn finish(self) {
        self.db.drop_now().await;
    }
}

fn log_of(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("log")).unwrap_or_default()
}

impl Instance {
    fn mcp(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn job(&self, id: &str) -> (u16, Value) {
        let response = reqwest::get(self.http(&format!("/v1/jobs/{id}"))).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Polls `GET /v1/jobs/{id}` here until the job ended.
    async fn ended(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, view) = self.job(id).await;
            assert_eq!(status, 200, "{view}");
            if view["status"] != "working" {
                return view;
            }
            assert!(Instant::now() < deadline, "job {id} still working: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn events(&self, last_event_id: Option<i64>) -> SseReader {
        let mut request = reqwest::Client::new().get(self.http("/v1/events"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        SseReader::new(response)
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(id, type, job_id)` of a stream's events until `ends` jobs ended (progress included).
async fn until_ended(stream: &mut SseReader, ends: usize) -> Vec<(i64, String, String)> {
    let mut events: Vec<(i64, String, String)> = Vec::new();
    while events
        .iter()
        .filter(|(_, kind, _)| kind != "job.created" && kind != "job.progress")
        .count()
        < ends
    {
        events.extend(read(stream, 1).await);
    }
    events
}

/// Leaves out progress events (how many partial images a job shows is the provider's affair).
fn changes(events: &[(i64, String, String)]) -> Vec<(i64, String, String)> {
    events.iter().filter(|(_, kind, _)| kind != "job.progress").cloned().collect()
}

/// `(id, type, job_id)` of the next `count` events of a stream.
async fn read(stream: &mut SseReader, count: usize) -> Vec<(i64, String, String)> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = stream.next_within(Duration::from_secs(20)).await.unwrap_or_else(|| {
            panic!("{count} events expected, got {events:?}");
        });
        let id = event.id.as_deref().expect("every event has an id").parse().unwrap();
        let body = event.json();
        events.push((
            id,
            body["type"].as_str().unwrap().to_owned(),
            body["job"]["job_id"].as_str().unwrap().to_owned(),
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_made_on_one_instance_is_seen_and_heard_on_another() {
    let Some(deployment) = Deployment::new("").await else { return };
    let latency = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "1500ms")];
    let a = deployment.start("a", &latency).await;
    let b = deployment.start("b", &latency).await;
    let mut stream_on_b = b.events(None).await;
    let (on_a, _) = legacy_client(&a.mcp(), None).await;
    let (on_b, mut inbox_b) = legacy_client(&b.mcp(), None).await;
    let (tasks_on_b, _) = tasks_client(&b.mcp(), None).await;

    let made = call(&on_a, "generate_image", json!({"prompt": "a lighthouse at dusk"})).await;
    let id = job_id(&made);
    let image_url =
        structured(&made)["image_url"].as_str().unwrap().replace(&a.http(""), &b.http(""));

    // One source of truth: B knows the job the moment A answered.
    let (status, view) = b.job(&id).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("working")), "{view}");
    let status = call(&on_b, "job_status", json!({"job_id": id})).await;
    assert_eq!(structured(&status)["status"], "working", "{}", text(&status));
    let uri = format!("offstage://jobs/{id}");
    let resource = on_b.read_resource(ReadResourceRequestParams::new(uri.clone())).await.unwrap();
    let ResourceContents::TextResourceContents { text: body, .. } = &resource.contents[0] else {
        panic!("a job resource is text: {resource:?}")
    };
    assert_eq!(serde_json::from_str::<Value>(body).unwrap()["job_id"], id.as_str());
    let task = tasks_on_b.get_task(GetTaskParams::new(id.clone())).await.expect("tasks/get on B");
    assert_eq!(serde_json::to_value(&task).unwrap()["status"], "working", "{task:?}");
    let placeholder = reqwest::get(&image_url).await.unwrap();
    assert_eq!(
        (placeholder.status().as_u16(), placeholder.headers()["cache-control"].to_str().unwrap()),
        (200, "no-store")
    );

    // Push from anywhere: B's subscriber, waiter and stream hear of a job A runs.
    #[allow(deprecated)]
    on_b.subscribe(SubscribeRequestParams::new(uri.clone())).await.unwrap();
    let waited = call(&on_b, "job_status", json!({"job_id": id, "wait_ms": 2500})).await;
    let waited = if structured(&waited)["status"] == "working" {
        call(&on_b, "job_status", json!({"job_id": id, "wait_ms": 2500})).await
    } else {
        waited
    };
    assert_eq!(structured(&waited)["status"], "completed", "the wait on B ended with A's job");
    assert_eq!(inbox_b.next_update().await, uri);
    let events = changes(&until_ended(&mut stream_on_b, 1).await);
    let kinds: Vec<&str> = events.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["job.created", "job.completed"]);
    assert!(events.iter().all(|(_, _, job)| *job == id));

    // Any instance serves any job's image, renditions included.
    let image = reqwest::get(&image_url).await.unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    image::load_from_memory(&image.bytes().await.unwrap()).expect("the final image");
    let small = reqwest::get(format!("{image_url}?w=256&format=webp")).await.unwrap();
    assert_eq!(
        (small.status().as_u16(), small.headers()["content-type"].to_str().unwrap()),
        (200, "image/webp")
    );
    drop((a, b));
    deployment.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listen_streams_and_task_notifications_on_one_instance_hear_jobs_of_another() {
    let Some(deployment) = Deployment::new("").await else { return };
    let latency = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "1s")];
    let a = deployment.start("a", &latency).await;
    let b = deployment.start("b", &latency).await;
    let (on_a, _) = legacy_client(&a.mcp(), None).await;
    let id = job_id(&call(&on_a, "generate_image", json!({"prompt": "a paper lantern"})).await);
    let uri = format!("offstage://jobs/{id}");

    // 2026-07-28 `subscriptions/listen` on B, for the resource and for the task.
    let (modern_b, _) = modern_client(&b.mcp(), None).await;
    let filter = SubscriptionFilter::builder().resource_subscription(uri.clone()).build();
    let mut subscription = modern_b.listen(filter).await.expect("listen on B");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": {
        "notifications": {"taskIds": [id]},
        "_meta": modern_meta(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})),
    }});
    let response =
        raw_request(&b.mcp(), None, "subscriptions/listen", None, body).send().await.unwrap();
    let mut tasks = SseReader::new(response);
    assert_eq!(tasks.next().await.json()["method"], "notifications/subscriptions/acknowledged");

    let updated = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("a notification on B")
        .expect("subscription alive")
        .expect("subscription not ended");
    match updated {
        ServerNotification::ResourceUpdatedNotification(update) => {
            assert_eq!(update.params.uri, uri)
        }
        other => panic!("expected resources/updated, got {other:?}"),
    }
    // Task notifications follow the task as it goes (progress included) until it completes.
    loop {
        let pushed = tasks.next_within(Duration::from_secs(20)).await.expect("notifications/tasks");
        let pushed = pushed.json();
        assert_eq!(pushed["method"], "notifications/tasks", "{pushed}");
        assert_eq!(pushed["params"]["taskId"], id.as_str());
        if pushed["params"]["status"] != "working" {
            assert_eq!(pushed["params"]["status"], "completed", "{pushed}");
            break;
        }
    }
    subscription.cancel().await.unwrap();
    drop((a, b));
    deployment.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_streams_every_event_in_one_order_and_resumes_anywhere() {
    let Some(deployment) = Deployment::new("").await else { return };
    let quick = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "200ms")];
    let a = deployment.start("a", &quick).await;
    let b = deployment.start("b", &quick).await;
    let mut on_a = a.events(None).await;
    let mut on_b = b.events(None).await;
    let (client_a, _) = legacy_client(&a.mcp(), None).await;
    let (client_b, _) = legacy_client(&b.mcp(), None).await;
    // Jobs made on both at once, so their events interleave in the database.
    let calls = (0..6).map(|n| {
        let client = if n % 2 == 0 { &client_a } else { &client_b };
        call(client, "generate_image", json!({"prompt": format!("tile number {n}")}))
    });
    let made: Vec<String> = futures::future::join_all(calls).await.iter().map(job_id).collect();
    let seen_a = until_ended(&mut on_a, 6).await;
    let seen_b = read(&mut on_b, seen_a.len()).await;
    assert_eq!(seen_a, seen_b, "one order on every instance");
    let ids: Vec<i64> = seen_a.iter().map(|(id, _, _)| *id).collect();
    let count = i64::try_from(ids.len()).unwrap();
    assert_eq!(ids, (ids[0]..ids[0] + count).collect::<Vec<_>>(), "gapless and increasing");
    let seen_a_all = seen_a.clone();
    let seen_a = changes(&seen_a);
    let jobs: BTreeSet<&String> = seen_a.iter().map(|(_, _, job)| job).collect();
    assert_eq!(jobs, made.iter().collect(), "all six jobs, from both instances");
    for job in &made {
        let kinds: Vec<&str> =
            seen_a.iter().filter(|(_, _, j)| j == job).map(|(_, kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["job.created", "job.completed"], "{job}");
    }

    // A stream that dropped after the fifth event on A resumes on B with exactly the rest.
    let mut resumed = b.events(Some(ids[4])).await;
    assert_eq!(read(&mut resumed, seen_a_all.len() - 5).await, seen_a_all[5..].to_vec());
    assert!(resumed.next_within(Duration::from_millis(300)).await.is_none(), "nothing repeated");
    drop((a, b));
    deployment.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutting_every_listening_connection_loses_no_event() {
    let Some(deployment) = Deployment::new("").await else { return };
    let quick = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "100ms")];
    let a = deployment.start("a", &quick).await;
    let b = deployment.start("b", &quick).await;
    let mut on_b = b.events(None).await;
    // Cut every listening connection: what is notified until they are back is never heard.
    let mut admin = deployment.db.connect().await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'offstage-listen' AND datname = current_database()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 2, "one listener per instance");
    let (client_a, _) = legacy_client(&a.mcp(), None).await;
    let id = job_id(&call(&client_a, "generate_image", json!({"prompt": "a quiet harbour"})).await);
    let events = changes(&until_ended(&mut on_b, 1).await);
    assert_eq!(
        events.iter().map(|(_, kind, job)| (kind.as_str(), job == &id)).collect::<Vec<_>>(),
        [("job.created", true), ("job.completed", true)]
    );
    drop((a, b));
    deployment.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_of_a_killed_instance_are_taken_over_and_end_once() {
    let Some(deployment) = Deployment::new("").await else { return };
    let slow = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "3s")];
    let a = deployment.start("a", &slow).await;
    let b = deployment.start("b", &slow).await;
    let (client_a, _) = legacy_client(&a.mcp(), None).await;
    let mut made = Vec::new();
    for n in 0..4 {
        made.push(job_id(
            &call(&client_a, "generate_image", json!({"prompt": format!("ship {n}")})).await,
        ));
    }
    let killed_at = Instant::now();
    a.kill();
    // B claims them once A's lease (1 s) runs out, and runs each again from the start.
    for id in &made {
        let view = b.ended(id, Duration::from_secs(30)).await;
        assert_eq!(view["status"], "completed", "{view}");
    }
    eprintln!("took over 4 jobs {:?} after kill -9", killed_at.elapsed());
    let mut stream = b.events(Some(0)).await;
    let events = changes(&until_ended(&mut stream, 4).await);
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, kind, job) in &events {
        if kind != "job.created" {
            *ends.entry(job.as_str()).or_default() += 1;
            assert_eq!(kind, "job.completed");
        }
    }
    assert_eq!(ends.len(), 4);
    assert!(ends.values().all(|count| *count == 1), "each ended exactly once: {ends:?}");
    let late = stream.next_within(Duration::from_millis(500)).await;
    assert!(late.is_none(), "and nothing after: {:?}", late.map(|event| event.data));
    let mut db = deployment.db.connect().await;
    let owners: Vec<Option<String>> =
        sqlx::query_scalar("SELECT lease_owner FROM jobs").fetch_all(&mut db).await.unwrap();
    assert!(owners.iter().all(Option::is_none), "no job left with an owner: {owners:?}");
    drop(b);
    deployment.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_announcements_and_duplicates_go_to_one_instance() {
    let receiver = Receiver::start(0).await;
    let config = format!(
        "[push]\nallow_private_webhooks = true\n[[push.webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    let Some(deployment) = Deployment::new(&config).await else { return };
    let quick = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "300ms")];
    let instances = [
        deployment.start("a", &quick).await,
        deployment.start("b", &quick).await,
        deployment.start("c", &quick).await,
    ];
    let conversation = [("Offstage-Conversation", "kitchen")];
    let mut clients = Vec::new();
    for instance in &instances {
        clients.push(legacy_client_with(&instance.mcp(), None, &conversation).await.0);
    }
    // The same call reaching two instances finds the job the first one made.
    let first = call(&clients[0], "generate_image", json!({"prompt": "a copper kettle"})).await;
    let again = call(&clients[1], "generate_image", json!({"prompt": "a copper kettle"})).await;
    assert_eq!(job_id(&again), job_id(&first), "{}", text(&again));
    let others = [
        call(&clients[1], "generate_image", json!({"prompt": "a tea towel"})).await,
        call(&clients[2], "generate_image", json!({"prompt": "a bread knife"})).await,
    ];
    let mut made: Vec<String> = others.iter().map(job_id).collect();
    made.push(job_id(&first));
    for id in &made {
        instances[2].ended(id, Duration::from_secs(20)).await;
    }

    // Every finished job is delivered once, whichever dispatcher took it.
    let delivered = receiver.delivered(3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = receiver.received();
    let ids: BTreeSet<&String> = all.iter().map(|r| &r.id).collect();
    assert_eq!((all.len(), ids.len()), (3, 3), "{all:?}");
    let jobs: BTreeSet<&str> =
        delivered.iter().map(|r| r.body["data"]["job"]["job_id"].as_str().unwrap()).collect();
    assert_eq!(jobs, made.iter().map(String::as_str).collect());

    // The conversation hears of each finished job once, whichever instance its calls reach.
    let calls = clients.iter().map(|client| call(client, "job_status", json!({"job_id": made[0]})));
    let answers = futures::future::join_all(calls).await;
    let told: Vec<String> = answers
        .iter()
        .flat_map(|answer| text(answer).lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for prompt in ["a copper kettle", "a bread knife"] {
        let count =
            told.iter().filter(|line| line.contains(prompt) && line.contains("is ready")).count();
        assert_eq!(count, 1, "{prompt} told once: {told:#?}");
    }
    drop(instances);
    deployment.finish().await;
}
