//! `[providers.endpoint]`: the settings of an image service of your own.


use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::{HumanDuration, Secret};

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
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: None,
            request_timeout: HumanDuration::from_secs(60),
            typical_latency: HumanDuration::from_secs(5),
        }
    }
}
