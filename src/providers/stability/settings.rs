//! `[providers.stability]`: Stability AI's settings.


use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::{HumanDuration, Secret};

/// Stability AI's Stable Image models through
/// `POST {base_url}/v2beta/stable-image/generate/{model}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StabilityConfig {
    /// From `STABILITY_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
    /// Override for proxies and tests. Without `/v2beta`.
    pub base_url: String,
    /// `core`, `ultra`, or an SD3 model such as `sd3.5-large` (sent to the `sd3` endpoint).
    pub model: String,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.stability.ai".to_owned(),
            model: "core".to_owned(),
            request_timeout: HumanDuration::from_secs(120),
            typical_latency: HumanDuration::from_secs(10),
        }
    }
}
