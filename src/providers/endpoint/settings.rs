//! `[providers.endpoint]`: the settings of an image service of your own.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// An image service of your own that answers `POST {base_url}/generate` with image bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// Where the service listens; `{"prompt", "width", "height", "seed"}` goes to
    /// `{base_url}/generate`. Empty until you set it.
    pub base_url: String,
    /// From `OFFSTAGE_ENDPOINT_API_KEY`, sent as a bearer token when set; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::settings::HumanDuration")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::settings::HumanDuration")]
    pub typical_latency: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: None,
            request_timeout: Duration::from_secs(60),
            typical_latency: Duration::from_secs(5),
        }
    }
}
