//! Jobs survive the process: killed mid-job (SIGKILL) or stopped (SIGTERM), the server is
//! started again on the same data directory and every job ends — none lost, none stuck.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};

use crate::support::{call, fetch_image, job_id, modern_client, structured, wait_until_ended};

struct Process {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn spawn(data_dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_offstage"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OPENAI_API_KEY")
        .env("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "2s")
        .env("OFFSTAGE_JOBS__LEASE", "1s")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn offstage serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = format!("http://127.0.0.1:{port}/healthz");
    while reqwest::get(&health).await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Process { child, port }
}

impl Process {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    fn terminate(mut self) {
        let status = Command::new("kill").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "graceful shutdown exits 0");
    }
}

/// `(status, attempts)` of every job, read from the database file.
async fn jobs(data_dir: &Path) -> Vec<(String, String, i64)> {
    let mut connection = SqliteConnectOptions::new()
        .filename(data_dir.join("offstage.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_as("SELECT id, status, attempts FROM jobs ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn killed_and_stopped_servers_resume_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = spawn(dir.path(), port, &[]).await;
    let (client, _) = modern_client(&first.url(), None).await;
    let done =
        job_id(&call(&client, "generate_image", json!({"prompt": "before the crash"})).await);
    assert_eq!(wait_until_ended(&client, &done).await["status"], "completed");
    let mut interrupted = Vec::new();
    for n in 0..4 {
        interrupted.push(job_id(
            &call(&client, "generate_image", json!({"prompt": format!("job {n}")})).await,
        ));
    }
    client.cancel().await.unwrap();
    first.kill();
    let before = jobs(dir.path()).await;
    assert_eq!(before.iter().filter(|(_, status, _)| status == "working").count(), 4);

    let second = spawn(dir.path(), port, &[]).await;
    let (client, _) = modern_client(&second.url(), None).await;
    for id in interrupted.iter().chain([&done]) {
        let view = wait_until_ended(&client, id).await;
        assert_eq!(view["status"], "completed", "{view}");
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        assert_eq!(image.width(), 1024);
    }
    // The kill can land before a new job records its first attempt, so compare with what the
    // database held at the moment of the kill: interrupted jobs ran exactly once more.
    for ((id, _, attempts), (_, status_before, attempts_before)) in
        jobs(dir.path()).await.into_iter().zip(before)
    {
        let expected =
            if status_before == "working" { attempts_before + 1 } else { attempts_before };
        assert_eq!(
            attempts, expected,
            "job {id}: ran {attempts} times, {attempts_before} before the kill"
        );
    }

    // A graceful stop hands the lease back, so the next start resumes at once.
    let stopped =
        job_id(&call(&client, "generate_image", json!({"prompt": "during shutdown"})).await);
    client.cancel().await.unwrap();
    second.terminate();
    let third = spawn(dir.path(), port, &[]).await;
    let (client, _) = modern_client(&third.url(), None).await;
    assert_eq!(wait_until_ended(&client, &stopped).await["status"], "completed");
    assert!(jobs(dir.path()).await.iter().all(|(_, status, _)| status == "completed"));
    client.cancel().await.unwrap();
    third.terminate();
}

#[tokio::test]
async fn interrupted_jobs_fail_clearly_when_resuming_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = spawn(dir.path(), port, &[]).await;
    let (client, _) = modern_client(&first.url(), None).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "never finished"})).await);
    client.cancel().await.unwrap();
    first.kill();
    let second = spawn(dir.path(), port, &[("OFFSTAGE_JOBS__RESUME_INTERRUPTED", "false")]).await;
    let (client, _) = modern_client(&second.url(), None).await;
    let view = wait_until_ended(&client, &id).await;
    assert_eq!(view["status"], "failed");
    assert!(view["error"].as_str().unwrap().contains("restarted"), "{view}");
    let status = call(&client, "job_status", json!({"job_id": id})).await;
    assert_eq!(structured(&status)["status"], "failed");
    client.cancel().await.unwrap();
    second.terminate();
}

#[tokio::test]
async fn a_job_whose_image_was_stored_before_the_crash_is_not_drawn_again() {
    // What a kill -9 between storing the image and committing the job leaves: a working job
    // of a dead process, one attempt made, and its image already in the store. The next
    // process (or another instance) finishes it from that image and never calls the provider.
    use crate::{providers::openai::standin as openai_standin, support::TestServer};
    let stand_in = openai_standin::spawn(vec![openai_standin::Reply::image(1024, 1024)]).await;
    let base_url = stand_in.base_url.clone();
    let TestServer { server, dir, mut config } = TestServer::start_with(move |config| {
        config.provider = "openai";
        config.providers.openai.api_key = Some("sk-test-secret".into());
        config.providers.openai.base_url = base_url;
    })
    .await;
    config.listen = server.local_addr();
    server.stop().await;

    let id = "7mzt0xk4c2q9w8ra";
    let drawn = crate::providers::openai::standin::png(1024, 1024);
    std::fs::write(dir.path().join("images").join(format!("{id}.png")), &drawn).unwrap();
    let mut connection = SqliteConnectOptions::new()
        .filename(dir.path().join("offstage.db"))
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, tool, owner, input, status, attempts, eta_ms, created_at, \
         updated_at, started_at, lease_owner, produces) VALUES (?1, 'generate_image', 'local', \
         '{\"prompt\":\"a red fox\",\"size\":\"square\"}', 'working', 1, 1000, 1, 1, 1, 'dead', \
         'image')",
    )
    .bind(id)
    .execute(&mut connection)
    .await
    .unwrap();
    drop(connection);

    let server = offstage::server::Server::start(config).await.expect("server starts again");
    let (client, _) = modern_client(&server.mcp_url(), None).await;
    let view = crate::support::wait_until_ended(&client, id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["provider"]["name"], "resumed", "{view}");
    assert_eq!(stand_in.hits(), 0, "the provider was not asked again");
    let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
    assert_eq!(
        image.to_rgba8().into_raw(),
        image::load_from_memory(&drawn).unwrap().to_rgba8().into_raw()
    );
    client.cancel().await.unwrap();
    server.stop().await;
}
