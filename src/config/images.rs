//! `[images]`: the image pipeline's worker pool, its limits against hostile images, and the
//! variants rendered as soon as an image arrives.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[images]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Threads decoding, resizing and encoding images, at the lowest CPU priority so requests
    /// are answered first. `0`: one less than the CPU count, at least one.
    pub workers: usize,
    /// Image tasks admitted to the pool at once (waiting or running); more wait their turn
    /// without holding a thread.
    pub queue: usize,
    /// Largest image accepted from a provider or a URL, in bytes.
    pub max_bytes: usize,
    /// Largest image accepted, in pixels (width x height), checked before decoding: a small
    /// file declaring a huge canvas (a decompression bomb) is refused unread.
    pub max_pixels: u64,
    /// Lossy quality (1 to 100) of WebP and JPEG variants.
    pub quality: u8,
    /// Variants rendered when an image arrives, as `image_url` queries (`w=512&format=webp`),
    /// so the first viewer does not wait for them. Checked at start by the image pipeline.
    pub prerender: Vec<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            workers: 0,
            queue: 64,
            max_bytes: 32 * 1024 * 1024,
            // 4096 x 4096 is well above every provider size we request.
            max_pixels: 4096 * 4096,
            quality: 80,
            prerender: vec!["w=512&format=webp".to_owned()],
        }
    }
}

impl ImagesConfig {
    /// The worker count in force.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1).max(1))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if self.queue == 0 {
            return invalid("images.queue", "must be at least 1".to_owned());
        }
        if self.max_bytes < 1024 {
            return invalid("images.max_bytes", format!("{} is too small", self.max_bytes));
        }
        if self.max_pixels < 64 * 64 {
            return invalid("images.max_pixels", format!("{} is too small", self.max_pixels));
        }
        if !(1..=100).contains(&self.quality) {
            return invalid("images.quality", format!("{} is not between 1 and 100", self.quality));
        }
        Ok(())
    }
}
