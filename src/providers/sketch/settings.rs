//! `[providers.sketch]`: the offline provider's settings.


use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use crate::settings::HumanDuration;

/// The built-in offline provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SketchConfig {
    /// Simulated provider latency before the image is drawn, so the async path behaves as
    /// with a real provider. `0s` draws at once.
    pub latency: HumanDuration,
    /// Mixed into every drawing: the same prompt and seed always give the same image.
    pub seed: u64,
    /// Show a blurry preview halfway through, as streaming providers show partial images.
    pub partial_images: bool,
}

impl Default for SketchConfig {
    fn default() -> Self {
        Self { latency: HumanDuration::from_secs(3), seed: 0, partial_images: true }
    }
}
