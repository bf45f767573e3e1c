//! Webhook delivery from the durable outbox: claims due deliveries, signs each body the
//! Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`:
//! `v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`), POSTs it, and records the
//! outcome — retrying with growing, jittered pauses for hours, across restarts.
//!
//! Delivery is at least once; the `webhook-id` is the same on every retry so receivers can
//! make it exactly once. Targets pass the network guard on every attempt, redirects are not
//! followed, and a private address is refused unless the operator allowed it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::event_json;
use crate::{
    config::PushConfig,
    jobs::{
        Micros,
        events::{JobChange, JobEvents, StoredEvent},
        store::{DeliveryOutcome, DueDelivery, JobStore},
    },
    netguard,
};

/// Deliveries attempted at once.
const BATCH: usize = 32;
/// How often due retries are looked for when no new event wakes the dispatcher.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn JobStore>,
    client: reqwest::Client,
    /// Signing keys by endpoint URL.
    keys: HashMap<String, Vec<u8>>,
    push: PushConfig,
}

/// The Standard Webhooks signature of one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signature}")
}

/// The body POSTed for an event, in the Standard Webhooks envelope.
pub fn body(event: &StoredEvent) -> String {
    serde_json::json!({
        "type": event.kind,
        "timestamp": event.created_at.to_rfc3339(),
        "data": event_json(event),
    })
    .to_string()
}

impl Dispatcher {
    pub fn new(push: &PushConfig, store: Arc<dyn JobStore>) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("offstage-webhooks/", env!("CARGO_PKG_VERSION")))
            .timeout(*push.webhook_timeout)
            .connect_timeout(*push.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(
                netguard::GuardedResolver { allow_private: push.allow_private_webhooks }.shared(),
            )
            .build()?;
        let keys = push
            .webhooks
            .iter()
            .filter_map(|webhook| Some((webhook.url.clone(), webhook.key()?)))
            .collect();
        Ok(Dispatcher { store, client, keys, push: push.clone() })
    }

    /// Delivers until shutdown. Job endings wake it at once; due retries are polled. Without
    /// configured endpoints there is nothing to deliver, but deliveries queued for endpoints
    /// since removed are still settled (as given up) by one pass at start.
    pub fn spawn(self, events: &JobEvents, shutdown: CancellationToken) {
        let dispatcher = Arc::new(self);
        let mut wake = events.subscribe();
        tokio::spawn(async move {
            loop {
                let claimed = dispatcher.deliver_due().await;
                if claimed == BATCH {
                    continue;
                }
                if dispatcher.keys.is_empty() {
                    return;
                }
                // Only endings queue deliveries; creations must not cost a writer query each.
                let woken = async {
                    loop {
                        match wake.recv().await {
                            Ok(event) if event.change == JobChange::Ended => return true,
                            Err(RecvError::Lagged(_)) => return true,
                            Ok(_) => {}
                            Err(RecvError::Closed) => return false,
                        }
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    open = woken => if !open { return },
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// One round: claims due deliveries, attempts them concurrently. Returns how many.
    async fn deliver_due(&self) -> usize {
        let now = Micros::now();
        // A claimed delivery is not due again until after its attempt could have timed out, so
        // a crash mid-attempt costs one retry, not the delivery.
        let retry_at = now.plus(*self.push.webhook_timeout * 3);
        let due = match self.store.claim_deliveries(now, retry_at, BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not claim webhook deliveries");
                return 0;
            }
        };
        let count = due.len();
        futures::future::join_all(due.into_iter().map(|delivery| async move {
            let outcome = self.attempt(&delivery).await;
            match &outcome {
                DeliveryOutcome::Delivered { status } => {
                    tracing::debug!(id = %delivery.id, status, "webhook delivered");
                }
                DeliveryOutcome::Retry { error, .. } => {
                    tracing::info!(id = %delivery.id, attempts = delivery.attempts, %error, "webhook failed; will retry");
                }
                DeliveryOutcome::GaveUp { error, .. } => {
                    tracing::warn!(id = %delivery.id, attempts = delivery.attempts, %error, "webhook given up");
                }
            }
            if let Err(error) = self.store.settle_delivery(&delivery.id, &outcome, Micros::now()).await
            {
                tracing::warn!(%error, id = %delivery.id, "could not record webhook outcome");
            }
        }))
        .await;
        count
    }

    async fn attempt(&self, delivery: &DueDelivery) -> DeliveryOutcome {
        let Some(key) = self.keys.get(&delivery.endpoint) else {
            return DeliveryOutcome::GaveUp {
                status: None,
                error: "the endpoint is no longer configured".to_owned(),
            };
        };
        let url = match Url::parse(&delivery.endpoint) {
            Ok(url) => url,
            Err(error) => {
                return DeliveryOutcome::GaveUp { status: None, error: error.to_string() };
            }
        };
        match netguard::check_url(&url, self.push.allow_private_webhooks).await {
            Ok(()) => {}
            Err(error @ netguard::GuardError::Private { .. }) => {
                return DeliveryOutcome::GaveUp { status: None, error: error.to_string() };
            }
            Err(error) => return self.retry(delivery, None, error.to_string()),
        }
        let body = body(&delivery.event);
        let timestamp = Micros::now().0 / 1_000_000;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(key, &delivery.id, timestamp, &body))
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                DeliveryOutcome::Delivered { status: response.status().as_u16() }
            }
            // 410 is the receiver saying "never again" (Standard Webhooks).
            Ok(response) if response.status() == reqwest::StatusCode::GONE => {
                DeliveryOutcome::GaveUp { status: Some(410), error: "HTTP 410 Gone".to_owned() }
            }
            Ok(response) => {
                let status = response.status();
                self.retry(delivery, Some(status.as_u16()), format!("HTTP {status}"))
            }
            // Without the URL: webhook URLs may carry credentials in their query.
            Err(error) => self.retry(delivery, None, error.without_url().to_string()),
        }
    }

    /// Schedules the next attempt, or gives up once the delivery is older than allowed.
    fn retry(&self, delivery: &DueDelivery, status: Option<u16>, error: String) -> DeliveryOutcome {
        let now = Micros::now();
        let age =
            Duration::from_micros(u64::try_from(now.0 - delivery.first_queued_at.0).unwrap_or(0));
        if age >= *self.push.webhook_give_up_after {
            return DeliveryOutcome::GaveUp { status, error };
        }
        let exponent = delivery.attempts.saturating_sub(1).min(12);
        let pause = self
            .push
            .webhook_retry_base
            .saturating_mul(4u32.saturating_pow(exponent))
            .min(*self.push.webhook_retry_max)
            .mul_f64(rand::random_range(0.8..1.2));
        DeliveryOutcome::Retry { at: now.plus(pause), status, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
