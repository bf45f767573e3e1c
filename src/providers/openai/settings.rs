//! `[providers.openai]`: the OpenAI Images API's settings and the checks they must pass.


use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    providers::spec::{self, SetupError}, settings::{HumanDuration, Secret}};

/// OpenAI Images API (`POST {base_url}/v1/images/generations`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// From `OPENAI_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
    /// Override for compatible servers (also `OPENAI_BASE_URL`). Without `/v1`.
    pub base_url: String,
    /// `gpt-image-1`, another `gpt-image-*` model, or `dall-e-3` / `dall-e-2`.
    pub model: String,
    /// `low`, `medium`, `high` or `auto`.
    pub quality: String,
    /// How many intermediate images (0 to 3) to stream while drawing, when someone shows them.
    /// Unset means 2 for `gpt-image-*` models and 0 for the rest; `dall-e-*` cannot stream.
    pub partial_images: Option<u8>,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
}

impl OpenAiConfig {
    /// Most partial images the Images API streams (`partial_images` is documented as 0 to 3).
    pub const MAX_PARTIAL_IMAGES: u8 = 3;

    /// The `partial_images` in force: the setting, else 2 for `gpt-image-*` and 0 otherwise.
    pub fn partial_images(&self) -> u8 {
        let streams = self.model.starts_with("gpt-image");
        self.partial_images.unwrap_or(if streams { 2 } else { 0 })
    }

    /// The base URL, and `partial_images`: documented as 0 to 3, and only `gpt-image-*` models
    /// stream at all.
    pub(crate) fn check(&self) -> Result<(), SetupError> {
        spec::check_base_url::<super::OpenAiProvider>(&self.base_url)?;
        let invalid = |message| Err(SetupError::invalid("openai", "partial_images", message));
        match self.partial_images {
            Some(count) if count > Self::MAX_PARTIAL_IMAGES => invalid(format!(
                "{count} is out of range; use 0 to {}",
                Self::MAX_PARTIAL_IMAGES
            )),
            Some(count) if count > 0 && self.model.starts_with("dall-e") => invalid(format!(
                "must be 0 for `{}`, which cannot stream partial images",
                self.model
            )),
            _ => Ok(()),
        }
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.openai.com".to_owned(),
            model: "gpt-image-1".to_owned(),
            quality: "auto".to_owned(),
            partial_images: None,
            request_timeout: HumanDuration::from_secs(180),
            typical_latency: HumanDuration::from_secs(25),
        }
    }
}
