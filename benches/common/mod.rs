//! What the benchmarks share: the release `offstage serve` as a child process on a free
//! loopback port, and stateless (2026-07-28) rmcp clients.

// Each benchmark uses part of this module.
#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient,
    model::{ClientConfig, Implementation, ProtocolVersion},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// A running server; killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `offstage serve --log warn` plus `args`, with `env`, its data in `dir/data`
    /// (`dir` may already hold a config file the args name). Returns once `/healthz` answers.
    pub(crate) async fn start(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // `BENCH_OFFSTAGE` runs another build (an earlier commit's, for before/after tables).
        let binary = std::env::var("BENCH_OFFSTAGE")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_offstage").to_owned());
        let mut command = Command::new(binary);
        command
            .args(["serve", "--log", "warn"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        Self::spawn(command, port, dir).await
    }

    /// Runs `command`, a server that will listen on `port`; returns once `/healthz` answers.
    pub(crate) async fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir) -> Self {
        let child = command.spawn().expect("spawn the server");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess { child, base, _dir: dir }
    }

    pub(crate) fn mcp(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time (user + system) the server process has used so far, from /proc.
    pub(crate) fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/<pid>/stat");
        // The command name (field 2) may hold spaces; fields after it are plain numbers.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
        Duration::from_millis(ticks * 10)
    }

    /// The server's resident memory now, in KiB (`VmRSS` in /proc/<pid>/status).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A client speaking the 2026-07-28 stateless protocol.
pub(crate) async fn stateless_client(mcp: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp.to_owned()),
    );
    ClientConfig::new(Default::default(), Implementation::new("offstage-bench", "0"))
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connect")
}
