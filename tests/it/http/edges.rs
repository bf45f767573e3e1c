//! The edges of HTTP a public address meets, over raw TCP: malformed Host headers, broken
//! and slow bodies, connections that send nothing, and more connections than the cap.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::TestServer;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

/// Sends `request` as written and reads the answer until the server closes (or `wait`).
async fn exchange(server: &TestServer, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(server.server.local_addr()).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    // A chunked body: the JSON is on the line after the first chunk size.
    let body = if body.starts_with('{') { body } else { body.lines().nth(1).unwrap_or("") };
    serde_json::from_str(body).unwrap_or_else(|_| panic!("no JSON body in {answer:?}"))
}

fn post(host_lines: &str, body_head: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\n{host_lines}content-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nconnection: close\r\n{body_head}\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test]
async fn malformed_host_headers_are_400_before_the_allow_list() {
    let server = TestServer::start().await;
    let length = format!("content-length: {}\r\n", INITIALIZE.len());
    let good = exchange(&server, &post("host: localhost\r\n", &length, INITIALIZE), SOON).await;
    assert_eq!(status(&good), 200, "{good}");
    for hosts in [
        "host: localhost\r\nhost: evil.example\r\n",
        "host: localhost:99999\r\n",
        "host: a@localhost\r\n",
        "host: evil.example@localhost\r\n",
    ] {
        let answer = exchange(&server, &post(hosts, &length, INITIALIZE), SOON).await;
        assert_eq!(status(&answer), 400, "{hosts:?}: {answer}");
        assert_eq!(json_body(&answer)["error"]["code"], "bad_host", "{hosts:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn broken_and_short_bodies_are_the_clients_error() {
    let server = TestServer::start().await;
    let host = "host: localhost\r\n";
    let cases: [(&str, Vec<u8>); 2] = [
        ("a bad chunk size", post(host, "transfer-encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n")),
        ("a body shorter than announced", post(host, "content-length: 500\r\n", "{\"jsonrpc\"")),
    ];
    for (what, request) in cases {
        let mut stream = TcpStream::connect(server.server.local_addr()).await.unwrap();
        stream.write_all(&request).await.unwrap();
        // The client gives up sending: the body ends before it should.
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(SOON, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status(&answer), 400, "{what}: {answer}");
        assert_eq!(json_body(&answer)["error"]["code"], -32600, "{what}: JSON-RPC shaped");
    }
    server.stop().await;
}

#[tokio::test]
async fn slow_heads_bodies_and_silent_connections_are_closed() {
    let server = TestServer::start_with(|config| {
        config.limits.header_timeout = Duration::from_millis(400).into();
        config.limits.body_timeout = Duration::from_millis(400).into();
    })
    .await;
    // Nothing at all, and half a head: closed once the head is late.
    for sent in ["", "POST /mcp HTTP/1.1\r\nhost: local"] {
        let started = Instant::now();
        let answer = exchange(&server, sent.as_bytes(), SOON).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{sent:?} was held {took:?}");
        assert!(status(&answer) == 0 || status(&answer) == 408, "{sent:?}: {answer}");
    }
    // A head in full, then a body that never comes: 408.
    let request = post("host: localhost\r\n", "content-length: 100\r\n", "{");
    let answer = exchange(&server, &request, SOON).await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert_eq!(json_body(&answer)["error"]["code"], -32600);
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_get_a_json_503_and_the_rest_keep_working() {
    let server = TestServer::start_with(|config| {
        config.limits.max_connections = 8;
        config.limits.header_timeout = Duration::from_secs(30).into();
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.server.local_addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let refused = exchange(&server, health, SOON).await;
    assert_eq!(status(&refused), 503, "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    assert_eq!(json_body(&refused)["error"]["code"], "too_many_connections");
    // One held connection goes away: its place is free at once.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answered = exchange(&server, health, SOON).await;
    assert_eq!(status(&answered), 200, "{answered}");
    server.stop().await;
}

const SOON: Duration = Duration::from_secs(10);

/// The binary under a 256-descriptor limit it cannot raise, held by more silent connections
/// than it has descriptors: it refuses cleanly instead of failing to accept, and recovers once
/// the silent ones are timed out.
#[tokio::test]
async fn a_flood_of_silent_connections_under_a_low_file_limit() {
    use std::process::{Command, Stdio};

    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = data.path().join("server.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" serve --listen "$1" --data-dir "$2" --log warn 2>"$3""#)
        .arg(env!("CARGO_BIN_EXE_offstage"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(data.path().join("data"))
        .arg(&log)
        .env_remove("OPENAI_API_KEY")
        .env("OFFSTAGE_LIMITS__HEADER_TIMEOUT", "6s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    let health = "GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let ask = || async {
        let Ok(mut stream) = TcpStream::connect(&address).await else { return 0 };
        stream.write_all(health.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(SOON, stream.read_to_end(&mut answer)).await;
        status(&String::from_utf8_lossy(&answer))
    };
    let deadline = Instant::now() + SOON;
    while ask().await != 200 {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(stream) = TcpStream::connect(&address).await {
            silent.push(stream);
        }
    }
    // Full: once the flood's own refusals are out, a new caller is told so at once, with a
    // 503, rather than left hanging.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    let while_full = ask().await;
    assert_eq!(while_full, 503);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The silent connections time out; then the server answers everyone again.
    let deadline = Instant::now() + SOON + SOON;
    loop {
        if ask().await == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(silent);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("Too many open files"), "ran out of descriptors:\n{log}");
}
