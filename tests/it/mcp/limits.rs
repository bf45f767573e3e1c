//! What one caller may hold open: legacy sessions (per token, in total, and only while their
//! handshake finishes in time) and event and listen streams per token. Past a cap the answer
//! is a clear error; what is already open keeps working.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, raw_request};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

fn legacy(url: &str, token: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// Opens a legacy session (initialize only); its id, or the refusal.
async fn open(url: &str, token: &str) -> Result<String, (u16, Value)> {
    let response = legacy(url, token).body(INITIALIZE).send().await.unwrap();
    if response.status() != 200 {
        let status = response.status().as_u16();
        return Err((status, response.json().await.unwrap()));
    }
    Ok(response.headers()["mcp-session-id"].to_str().unwrap().to_owned())
}

async fn finish_handshake(url: &str, token: &str, session: &str) {
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = legacy(url, token)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(initialized.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

/// Whether the session still answers a ping.
async fn alive(url: &str, token: &str, session: &str) -> bool {
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let response = legacy(url, token)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(ping.to_string())
        .send()
        .await
        .unwrap();
    response.status() == 200
}

async fn close(url: &str, token: &str, session: &str) {
    let response = reqwest::Client::new()
        .delete(url)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

fn tokens(config: &mut offstage::config::Config) {
    config.security.tokens = vec!["alpha".to_owned(), "beta".to_owned()];
}

#[tokio::test]
async fn sessions_are_capped_per_token_and_in_total() {
    let server = TestServer::start_with(|config| {
        tokens(config);
        config.limits.sessions_per_token = 2;
        config.limits.sessions = 3;
    })
    .await;
    let url = server.url();
    let first = open(&url, "alpha").await.unwrap();
    let _second = open(&url, "alpha").await.unwrap();
    let (status, body) = open(&url, "alpha").await.unwrap_err();
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2 sessions"), "{body}");
    // Another token has its own share, up to the total.
    let _third = open(&url, "beta").await.unwrap();
    let (status, body) = open(&url, "beta").await.unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("3 sessions"), "{body}");
    // Closing one gives its place back; the sessions already open kept working throughout.
    finish_handshake(&url, "alpha", &first).await;
    assert!(alive(&url, "alpha", &first).await);
    close(&url, "alpha", &first).await;
    open(&url, "alpha").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn sessions_that_never_finish_the_handshake_are_closed() {
    let server = TestServer::start_with(|config| {
        tokens(config);
        config.limits.session_init_timeout = Duration::from_millis(300).into();
        config.limits.sessions_per_token = 5;
    })
    .await;
    let url = server.url();
    let finished = open(&url, "alpha").await.unwrap();
    finish_handshake(&url, "alpha", &finished).await;
    let abandoned: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(open(&url, "alpha").await.unwrap());
        }
        ids
    };
    // Full for alpha now; a second later the abandoned ones are gone and their places free.
    assert!(open(&url, "alpha").await.is_err());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &abandoned {
        assert!(!alive(&url, "alpha", id).await, "{id} should have been closed");
    }
    assert!(alive(&url, "alpha", &finished).await, "the finished session is kept");
    for _ in 0..4 {
        open(&url, "alpha").await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn event_and_listen_streams_are_capped_per_token() {
    let server = TestServer::start_with(|config| {
        tokens(config);
        config.limits.event_streams_per_token = 2;
        config.limits.listen_streams_per_token = 1;
    })
    .await;
    let events = |token: &'static str| {
        reqwest::Client::new().get(server.http("/v1/events")).bearer_auth(token).send()
    };
    let first = events("alpha").await.unwrap();
    let second = events("alpha").await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let refused = events("alpha").await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many");
    assert_eq!(events("beta").await.unwrap().status(), 200, "per token");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        events("alpha").await.unwrap().status(),
        200,
        "a closed stream gives its place back"
    );

    let listen = || {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen",
            "params": {"notifications": {"toolsListChanged": true}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}});
        raw_request(&server.url(), Some("alpha"), "subscriptions/listen", None, body).send()
    };
    let open_listen = listen().await.unwrap();
    assert_eq!(open_listen.status(), 200);
    let refused = listen().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("listen streams"), "{body}");
    drop(second);
    server.stop().await;
}
