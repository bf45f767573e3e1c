//! `[providers.replicate]`: Replicate's settings and the checks they must pass.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    providers::spec::{self, SetupError}, settings::{HumanDuration, Secret}};

/// Models hosted on Replicate: `POST {base_url}/v1/models/{owner}/{name}/predictions` (or
/// `/v1/predictions` with a pinned version), then the prediction polled until it ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateConfig {
    /// From `REPLICATE_API_TOKEN`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
    /// Override for proxies and tests. Without `/v1`. Poll and cancel URLs Replicate hands back
    /// are followed only on this origin.
    pub base_url: String,
    /// `owner/name` of a model that takes `prompt` and `aspect_ratio` (the FLUX family), or
    /// `owner/name:version` to pin a version.
    pub model: String,
    /// Wait between two polls of a running prediction.
    pub poll_interval: HumanDuration,
    /// Longest one prediction may take. Sent as `Cancel-After`, so Replicate stops it even if
    /// offstage is gone; past it offstage stops polling and reports a timeout.
    pub deadline: HumanDuration,
    /// One HTTP request's limit (create, one poll, the download).
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.replicate.com".to_owned(),
            model: "black-forest-labs/flux-schnell".to_owned(),
            poll_interval: HumanDuration::from_millis(500),
            deadline: HumanDuration::from_secs(120),
            request_timeout: HumanDuration::from_secs(30),
            typical_latency: HumanDuration::from_secs(4),
        }
    }
}

impl ReplicateConfig {
    pub(crate) fn check(&self) -> Result<(), SetupError> {
        let invalid = |field, message: &str| Err(SetupError::invalid("replicate", field, message));
        spec::check_base_url::<super::ReplicateProvider>(&self.base_url)?;
        // Every poll is a request against the account's rate limit.
        if self.poll_interval < Duration::from_millis(100) {
            return invalid("poll_interval", "must be at least 100ms");
        }
        // `Cancel-After` counts whole seconds.
        if self.deadline < Duration::from_secs(1) {
            return invalid("deadline", "must be at least 1s");
        }
        Ok(())
    }
}
