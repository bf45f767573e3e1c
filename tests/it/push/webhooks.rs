//! Webhooks: a local receiver checks every Standard Webhooks signature on its own, fails the
//! first attempts on purpose, and still gets each event — across a restart, once per endpoint,
//! and only for its own token's jobs. A target on a private address is refused unless allowed.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use offstage::{
    config::{Config, WebhookConfig},
    push::event::WebhookBody,
};

use crate::support::{SOON, TestServer, call, job_id, modern_client};

/// The key, base64-encoded after `whsec_`, as operators configure it.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub id: String,
    pub body: Value,
    /// What the receiver answered.
    pub answered: u16,
}

/// A webhook endpoint on loopback that verifies signatures and fails the first `failures`
/// requests with 503.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub url: String,
    log: Arc<Mutex<Vec<Received>>>,
    failures: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
}

impl Receiver {
    pub(crate) async fn start(failures: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hooks/offstage", listener.local_addr().unwrap()),
            log: Arc::default(),
            failures: Arc::new(AtomicUsize::new(failures)),
            arrived: Arc::default(),
        };
        let app = Router::new().route("/hooks/offstage", post(accept)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `count` requests were answered 2xx.
    pub(crate) async fn delivered(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let arrived = self.arrived.notified();
            let delivered: Vec<Received> =
                self.received().into_iter().filter(|r| r.answered < 300).collect();
            if delivered.len() >= count {
                return delivered;
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok(),
                "{count} deliveries expected, got {:?}",
                self.received()
            );
        }
    }

    /// Waits until at least `count` requests arrived, whatever was answered.
    pub(crate) async fn attempts(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let arrived = self.arrived.notified();
            let all = self.received();
            if all.len() >= count {
                return all;
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok(),
                "{count} attempts expected"
            );
        }
    }

    pub(crate) fn config(&self, token: Option<&str>) -> WebhookConfig {
        WebhookConfig { url: self.url.clone(), secret: SECRET.into(), token: token.map(Into::into) }
    }
}

/// Verifies a request the way the Standard Webhooks specification tells receivers to.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(String, i64), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?.parse().map_err(|_| "bad timestamp")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    if (now - timestamp).abs() > 300 {
        return Err(format!("timestamp {timestamp} is not recent"));
    }
    let key = base64::engine::general_purpose::STANDARD.decode(&SECRET["whsec_".len()..]).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // The header may hold several space-separated signatures (key rotation).
    let signatures = header("webhook-signature")?;
    if !signatures.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str())) {
        return Err(format!("signature {signatures} does not match"));
    }
    Ok((id, timestamp))
}

async fn accept(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = match verify(&headers, &body) {
        Ok((id, _timestamp)) => id,
        Err(reason) => panic!("unverifiable webhook: {reason}"),
    };
    assert_eq!(headers["content-type"], "application/json");
    let fail = receiver
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::NO_CONTENT };
    // Every body matches `schemas/webhook.json`: required fields present, no unknown one.
    let typed: Result<WebhookBody, _> = serde_json::from_slice(&body);
    assert!(typed.is_ok(), "not a webhook body: {typed:?}");
    let body = serde_json::from_slice(&body).expect("webhook bodies are JSON");
    receiver.log.lock().unwrap().push(Received { id, body, answered: answered.as_u16() });
    receiver.arrived.notify_waiters();
    answered
}

fn fast_retries(config: &mut Config) {
    config.push.allow_private_webhooks = true;
    config.push.webhook_retry_base = Duration::from_millis(50).into();
    config.push.webhook_timeout = Duration::from_secs(2).into();
}

#[tokio::test]
async fn signed_deliveries_are_retried_until_they_arrive() {
    let receiver = Receiver::start(2).await;
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        config.push.webhooks = vec![receiver.config(None)];
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = job_id(&call(&client, "generate_image", json!({"prompt": "a red fox"})).await);

    let delivered = receiver.delivered(1).await;
    let attempts = receiver.received();
    assert_eq!(attempts.len(), 3, "two failures, then success: {attempts:?}");
    assert!(attempts.iter().all(|a| a.id == attempts[0].id), "one webhook-id for every retry");
    let body = &delivered[0].body;
    assert_eq!(body["type"], "job.completed", "only ended jobs go to webhooks: {body}");
    assert_eq!(body["data"]["type"], "job.completed");
    assert_eq!(body["data"]["job"]["job_id"], job.as_str());
    assert_eq!(body["data"]["job"]["status"], "completed");
    assert!(body["data"]["say"].as_str().unwrap().contains("red fox"), "{body}");
    assert!(body["data"]["event_id"].as_i64().unwrap() > 0);
    assert!(body["data"]["realtime"]["openai"].is_array(), "{body}");
    assert!(humantime::parse_rfc3339(body["timestamp"].as_str().unwrap()).is_ok(), "{body}");

    // The job JSON shows where the delivery stands.
    let deadline = tokio::time::Instant::now() + SOON;
    let view = loop {
        let (_, view) = server.job_json(None, &job).await;
        if view["webhooks"][0]["status"] == "delivered" {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivery never recorded: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let webhook = &view["webhooks"][0];
    assert_eq!(webhook["url"], receiver.url.as_str());
    assert_eq!(webhook["attempts"], 3);
    assert_eq!(webhook["last_status"], 204);
    assert!(webhook["delivered_at"].is_string(), "{webhook}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), receiver.delivered(2)).await.is_err(),
        "delivered once"
    );
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_restart_between_attempts_loses_nothing() {
    let receiver = Receiver::start(1).await;
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        // Long enough that the retry is due only after the restart.
        config.push.webhook_retry_base = Duration::from_secs(2).into();
        config.push.webhooks = vec![receiver.config(None)];
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = job_id(&call(&client, "generate_image", json!({"prompt": "a paper crane"})).await);
    let first = receiver.attempts(1).await;
    assert_eq!(first[0].answered, 503);
    client.cancel().await.unwrap();

    let server = server.restart().await;
    let delivered = receiver.delivered(1).await;
    assert_eq!(delivered[0].id, first[0].id, "the same message, retried by the new process");
    assert_eq!(delivered[0].body["data"]["job"]["job_id"], job.as_str());
    assert_eq!(receiver.received().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn each_token_has_its_own_endpoints() {
    let alpha_hook = Receiver::start(0).await;
    let beta_hook = Receiver::start(0).await;
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        config.security.tokens = vec!["alpha".to_owned(), "beta".to_owned()];
        config.push.webhooks =
            vec![alpha_hook.config(Some("alpha")), beta_hook.config(Some("beta"))];
    })
    .await;
    let (alpha, _) = modern_client(&server.url(), Some("alpha")).await;
    let job = job_id(&call(&alpha, "generate_image", json!({"prompt": "a private garden"})).await);
    let delivered = alpha_hook.delivered(1).await;
    assert_eq!(delivered[0].body["data"]["job"]["job_id"], job.as_str());
    // Give a wrong delivery every chance to show up.
    let (beta, _) = modern_client(&server.url(), Some("beta")).await;
    let other = job_id(&call(&beta, "generate_image", json!({"prompt": "a public square"})).await);
    let delivered = beta_hook.delivered(1).await;
    assert_eq!(delivered[0].body["data"]["job"]["job_id"], other.as_str());
    assert_eq!(alpha_hook.received().len(), 1, "alpha never receives beta's jobs");
    assert_eq!(beta_hook.received().len(), 1, "beta never receives alpha's jobs");
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_webhook_resolving_to_a_private_address_is_refused_unless_allowed() {
    let receiver = Receiver::start(0).await;
    // `localhost` is a name, so only the delivery-time check can catch it.
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let server = TestServer::start_with(|config| {
        config.push.webhook_retry_base = Duration::from_millis(50).into();
        config.push.webhooks = vec![WebhookConfig { url: url.clone(), ..receiver.config(None) }];
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = job_id(&call(&client, "generate_image", json!({"prompt": "a locked door"})).await);
    let deadline = tokio::time::Instant::now() + SOON;
    let webhook = loop {
        let (_, view) = server.job_json(None, &job).await;
        if view["webhooks"][0]["status"] == "failed" {
            break view["webhooks"][0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = webhook["last_error"].as_str().unwrap();
    assert!(error.contains("localhost") && error.contains("private"), "{error}");
    assert_eq!(webhook["attempts"], 1, "a refusal is final, not retried");
    assert!(receiver.received().is_empty(), "nothing reached the private address");
    client.cancel().await.unwrap();
    server.stop().await;

    // Allowed by the operator, the same endpoint receives it.
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        config.push.webhooks = vec![WebhookConfig { url: url.clone(), ..receiver.config(None) }];
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let job = job_id(&call(&client, "generate_image", json!({"prompt": "an open door"})).await);
    assert_eq!(receiver.delivered(1).await[0].body["data"]["job"]["job_id"], job.as_str());
    client.cancel().await.unwrap();
    server.stop().await;
}
