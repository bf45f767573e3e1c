//! Public-address benchmark: `cargo bench --bench exposure`. Starts the release `offstage serve`
//! with a static token and OAuth (a local issuer this benchmark starts, Ed25519 keys), and
//! measures `job_status` from one client:
//!
//! 1. quiet, with the static token and with a JWT access token (what validating a JWT costs a
//!    call once the issuer's keys are cached);
//! 2. the same while 1,000 idle connections and 300 slowly trickling ones are held open.
//!
//! It also times `Verifier::verify` alone, in this process. Each row reports p50/p99 in µs,
//! calls/s and the server's CPU per call (from /proc). `BENCH_SECONDS` sets each run (default 10).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::disallowed_methods, reason = "BENCH_SECONDS is the benchmark's own knob")]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use axum::{Json, Router, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hdrhistogram::Histogram;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offstage::{config::OAuthConfig, oauth::Verifier};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig, Implementation},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::common::ServerProcess;

const AUDIENCE: &str = "https://offstage.bench/mcp";

struct Issuer {
    base: String,
    key: EncodingKey,
}

async fn start_issuer() -> Issuer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "bench", "alg": "EdDSA",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || {
                let metadata = metadata.clone();
                async move { Json(metadata) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let set = json!({"keys": [jwk.clone()]});
                async move { Json(set) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer { base, key: EncodingKey::from_ed_der(pkcs8.as_ref()) }
}

impl Issuer {
    /// A token; `jti` makes each one different.
    fn mint(&self, jti: u32) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("bench".to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": self.base, "aud": AUDIENCE, "sub": "bench", "exp": now + 3600,
            "scope": "offstage:tools", "jti": jti.to_string()});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    fn config(&self) -> OAuthConfig {
        OAuthConfig {
            issuer: self.base.clone(),
            audience: AUDIENCE.to_owned(),
            jwks_url: None,
            tools_scope: "offstage:tools".to_owned(),
            operator_scope: "offstage:operator".to_owned(),
            keys_for: Duration::from_secs(600),
            leeway: Duration::from_secs(30),
            refetch_after: Duration::from_secs(30),
        }
    }
}

struct Run {
    histogram: Histogram<u64>,
    elapsed: Duration,
    cpu: Duration,
}

/// One client calls `job_status` for `seconds`, with `token`.
async fn status_run(server: &ServerProcess, token: &str, job_id: &str, seconds: u64) -> Run {
    let config =
        StreamableHttpClientTransportConfig::with_uri(server.mcp()).auth_header(token.to_owned());
    let client = ClientConfig::new(Default::default(), Implementation::new("offstage-bench", "0"))
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("connect");
    let arguments = json!({"job_id": job_id}).as_object().unwrap().clone();
    let call = || {
        client.call_tool(CallToolRequestParams::new("job_status").with_arguments(arguments.clone()))
    };
    for _ in 0..200 {
        call().await.unwrap();
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let cpu_before = server.cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let sent = Instant::now();
        let result = call().await.unwrap();
        assert_eq!(result.is_error, Some(false), "{result:?}");
        histogram.record(sent.elapsed().as_micros() as u64).unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu().saturating_sub(cpu_before);
    let _ = client.cancel().await;
    Run { histogram, elapsed, cpu }
}

fn row(label: &str, token: &str, run: &Run) -> String {
    let h = &run.histogram;
    format!(
        "| {label} | {token} | {:.0} | {} | {} | {:.0} |",
        h.len() as f64 / run.elapsed.as_secs_f64(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        run.cpu.as_micros() as f64 / h.len() as f64,
    )
}

/// Connections that stay open without sending a request: `idle` send nothing, `slow` send a
/// request head one byte a second.
async fn hold(
    server: &ServerProcess,
    idle: usize,
    slow: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for index in 0..idle + slow {
        let stream = TcpStream::connect(&address).await.expect("connect");
        let trickle = index >= idle;
        held.push(tokio::spawn(async move {
            let mut stream = stream;
            let head = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ";
            for byte in head.iter().cycle() {
                if !trickle {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    held
}

#[tokio::main]
async fn main() {
    let seconds: u64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let issuer = start_issuer().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offstage.toml");
    std::fs::write(
        &config,
        format!(
            "tokens = [\"bench-static-token\"]\n[oauth]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n",
            issuer.base
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let env = [("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "3600s")];
    let server =
        ServerProcess::start(dir, &["--config", &config, "--provider", "sketch"], &env).await;
    let jwt = issuer.mint(0);
    let job_id = start_job(&server, "bench-static-token".to_owned()).await;
    // The JWT's owner is another subject: its job_status reads a job of its own.
    let jwt_job = start_job(&server, jwt.clone()).await;

    println!(
        "## job_status from one client, {seconds} s per run (µs; CPU = server CPU per call)\n"
    );
    println!("| connections held | token | calls/s | p50 | p99 | CPU µs/call |");
    println!("|---|---|---:|---:|---:|---:|");
    let quiet = status_run(&server, "bench-static-token", &job_id, seconds).await;
    println!("{}", row("none", "static", &quiet));
    let quiet_jwt = status_run(&server, &jwt, &jwt_job, seconds).await;
    println!("{}", row("none", "JWT (EdDSA)", &quiet_jwt));
    let held = hold(&server, 1_000, 300).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = status_run(&server, "bench-static-token", &job_id, seconds).await;
    println!("{}", row("1,000 idle + 300 slow", "static", &loaded));
    let loaded_jwt = status_run(&server, &jwt, &jwt_job, seconds).await;
    println!("{}", row("1,000 idle + 300 slow", "JWT (EdDSA)", &loaded_jwt));
    for task in held {
        task.abort();
    }

    // The check alone, in process, keys cached: every token new, then one token again and again.
    let verifier = Arc::new(Verifier::new(issuer.config(), reqwest::Client::new()));
    verifier.verify(&jwt).await.expect("the token verifies");
    let fresh: Vec<String> = (1..=2_000).map(|jti| issuer.mint(jti)).collect();
    let started = Instant::now();
    for token in &fresh {
        verifier.verify(token).await.unwrap();
    }
    let each_new = started.elapsed().as_secs_f64() * 1e6 / fresh.len() as f64;
    let rounds = 20_000;
    let started = Instant::now();
    for _ in 0..rounds {
        verifier.verify(&jwt).await.unwrap();
    }
    let each_again = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "\nVerifier::verify alone (EdDSA, keys cached): a new token {each_new:.1} µs \
         ({} tokens), the same token again {each_again:.2} µs ({rounds} rounds)",
        fresh.len()
    );
}

/// Starts one image job with `token` and returns its id (each token owns its own jobs).
async fn start_job(server: &ServerProcess, token: String) -> String {
    let config = StreamableHttpClientTransportConfig::with_uri(server.mcp()).auth_header(token);
    let client = ClientConfig::new(Default::default(), Implementation::new("offstage-bench", "0"))
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    let started = client
        .call_tool(
            CallToolRequestParams::new("generate_image")
                .with_arguments(json!({"prompt": "a bench"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let id = started.structured_content.unwrap()["job_id"].as_str().unwrap().to_owned();
    let _ = client.cancel().await;
    id
}
