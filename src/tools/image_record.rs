//! What an image job stores, read back by every image view: the input's prompt and size
//! ([`ImageJobInput`]) and the finished image's facts ([`ImageJobOutput`]). A leaf: the views
//! read it and the image tools write it, so neither side imports the other.

use serde::{Deserialize, Serialize};

use crate::{
    images::{ImageInfo, ImageSize},
    jobs::Job,
    providers::router::Attempt,
};

/// What the image views name a provider that made an image a resumed job found stored: the
/// attempt that made it died before it could record who did.
pub const RESUMED_PROVIDER: &str = "resumed";

/// What an image job stores as input (the fields every image tool has), and what the image
/// views read back: the prompt for announcements, the size for placeholders.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageJobInput {
    pub prompt: String,
    pub size: ImageSize,
}

impl ImageJobInput {
    pub fn of(job: &Job) -> Option<ImageJobInput> {
        serde_json::from_value(job.input.clone()).ok()
    }
}

/// What a completed job stores as output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageJobOutput {
    #[serde(flatten)]
    pub image: ImageInfo,
    pub bytes: u64,
    /// ThumbHash (base64) of the image, for a blurred stand-in while it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    pub provider: String,
    pub model: String,
    /// Every provider call the job made, the successful one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

impl ImageJobOutput {
    pub fn of(job: &Job) -> Option<ImageJobOutput> {
        job.output.as_ref().and_then(|output| serde_json::from_value(output.clone()).ok())
    }
}

/// Whether an image job changes an earlier picture: its stored input names the picture it
/// starts from (`edit_image`'s `source`), where a new picture has only a prompt and a size.
pub fn is_edit(job: &Job) -> bool {
    job.input.get("source").is_some()
}
