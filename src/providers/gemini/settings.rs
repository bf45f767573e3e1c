//! `[providers.gemini]`: the Gemini API's settings.


use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::{HumanDuration, Secret};

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
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://generativelanguage.googleapis.com".to_owned(),
            model: "gemini-2.5-flash-image".to_owned(),
            request_timeout: HumanDuration::from_secs(120),
            typical_latency: HumanDuration::from_secs(15),
        }
    }
}
