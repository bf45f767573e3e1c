//! Settings for getting results back to callers: conversation and delivery headers, delivery
//! hints, duplicate-call detection, the event stream and webhooks.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ConfigError, DeliveryHint};
use crate::settings::HumanDuration;
use crate::settings::{Secret, http_url as parse_http_url};

/// `[push]`: how finished jobs reach the conversation (event stream, webhooks, tool results).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Request header that names the conversation an MCP connection belongs to.
    pub conversation_header: String,
    /// Request header that overrides the delivery hint for that connection's jobs.
    pub delivery_header: String,
    /// Request header that, set to `off`, keeps finished jobs out of that connection's tool
    /// results (piggy-back): for a host app that brings each ending into the conversation
    /// itself from the event stream, so the model does not hear it twice.
    pub piggyback_header: String,
    /// How finished results should reach the conversation, unless a tool or header says else.
    pub delivery: DeliveryHint,
    /// Per-tool delivery hints.
    pub tools: BTreeMap<String, DeliveryHint>,
    /// The same call repeated in one conversation within this window returns the first job.
    pub dedupe_window: HumanDuration,
    /// Comment lines sent on idle event streams so proxies keep them open.
    pub keep_alive: HumanDuration,
    /// Webhook endpoints; each receives the events of one token's jobs.
    pub webhooks: Vec<WebhookConfig>,
    /// Let webhooks reach private, loopback and link-local addresses. Off by default, so a
    /// webhook cannot be turned against the network offstage runs in.
    pub allow_private_webhooks: bool,
    /// One delivery attempt's time limit.
    pub webhook_timeout: HumanDuration,
    /// First pause before retrying a failed delivery; each later pause is four times longer,
    /// up to `webhook_retry_max`, with jitter.
    pub webhook_retry_base: HumanDuration,
    pub webhook_retry_max: HumanDuration,
    /// Retry a delivery (with growing pauses) for this long before giving up.
    pub webhook_give_up_after: HumanDuration,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            conversation_header: "Offstage-Conversation".to_owned(),
            delivery_header: "Offstage-Delivery".to_owned(),
            piggyback_header: "Offstage-Piggyback".to_owned(),
            delivery: DeliveryHint::WhenIdle,
            tools: BTreeMap::new(),
            dedupe_window: HumanDuration::from_secs(60),
            keep_alive: HumanDuration::from_secs(15),
            webhooks: Vec::new(),
            allow_private_webhooks: false,
            webhook_timeout: HumanDuration::from_secs(10),
            webhook_retry_base: HumanDuration::from_secs(5),
            webhook_retry_max: HumanDuration::from_secs(2 * 3600),
            webhook_give_up_after: HumanDuration::from_secs(24 * 3600),
        }
    }
}

/// `[[push.webhooks]]`: where one token's job events are POSTed, signed the Standard Webhooks way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where the events are POSTed; a private or loopback address needs
    /// `push.allow_private_webhooks`.
    pub url: String,
    /// `whsec_` followed by base64, as Standard Webhooks defines it; never logged.
    #[serde(skip_serializing)]
    pub secret: Secret,
    /// The bearer token whose jobs this endpoint receives; omitted when no tokens are set.
    #[serde(default, skip_serializing)]
    pub token: Option<Secret>,
}

impl WebhookConfig {
    /// The signing key: the base64 part of the secret, decoded.
    pub fn key(&self) -> Option<Vec<u8>> {
        let encoded = self.secret.expose().strip_prefix("whsec_")?;
        base64::engine::general_purpose::STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
    }
}

impl PushConfig {
    /// The delivery hint of a tool's results before any per-conversation override.
    pub fn delivery_for(&self, tool: &str) -> DeliveryHint {
        self.tools.get(tool).copied().unwrap_or(self.delivery)
    }

    pub(super) fn validate(&self, tokens: &[String]) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        for header in [&self.conversation_header, &self.delivery_header] {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return invalid(
                    "push.conversation_header",
                    format!("`{header}` is not a header name"),
                );
            }
        }
        if self.keep_alive < Duration::from_secs(1) {
            return invalid("push.keep_alive", "must be at least 1s".to_owned());
        }
        for (index, webhook) in self.webhooks.iter().enumerate() {
            let Some(url) = parse_http_url(&webhook.url) else {
                return invalid(
                    "push.webhooks",
                    format!(
                        "webhook {index}: url `{}` is not an absolute http(s) URL",
                        webhook.url
                    ),
                );
            };
            // Literal addresses are refused now; names are checked on every delivery attempt.
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal
                && !self.allow_private_webhooks
                && crate::netguard::is_private(ip)
            {
                return invalid(
                    "push.webhooks",
                    format!(
                        "webhook {index}: {ip} is a private or loopback address; set \
                         push.allow_private_webhooks = true to deliver there"
                    ),
                );
            }
            if webhook.key().is_none() {
                return invalid(
                    "push.webhooks",
                    format!(
                        "webhook {index} ({}): secret must be `whsec_` followed by base64",
                        webhook.url
                    ),
                );
            }
            match (&webhook.token, tokens.is_empty()) {
                (Some(token), false) if !tokens.iter().any(|known| known == token.expose()) => {
                    return invalid(
                        "push.webhooks",
                        format!(
                            "webhook {index} ({}): its token is not one of `tokens`",
                            webhook.url
                        ),
                    );
                }
                (None, false) => {
                    return invalid(
                        "push.webhooks",
                        format!(
                            "webhook {index} ({}): name the token whose jobs it receives",
                            webhook.url
                        ),
                    );
                }
                (Some(_), true) => {
                    return invalid(
                        "push.webhooks",
                        format!(
                            "webhook {index} ({}): has a token but no tokens are configured",
                            webhook.url
                        ),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}
