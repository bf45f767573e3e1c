//! `[providers.gemini]`: the Gemini API's settings.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// Gemini image models through `POST {base_url}/v1beta/models/{model}:generateContent`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GeminiConfig {
    /// From `GEMINI_API_KEY`, else `GOOGLE_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
    /// Override for proxies and tests. Without `/v1beta`.
    pub base_url: String,
    /// A model that can answer with images, such as `gemini-2.5-flash-image`.
    pub model: String,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::settings::HumanDuration")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::settings::HumanDuration")]
    pub typical_latency: Duration,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://generativelanguage.googleapis.com".to_owned(),
            model: "gemini-2.5-flash-image".to_owned(),
            request_timeout: Duration::from_secs(120),
            typical_latency: Duration::from_secs(15),
        }
    }
}
