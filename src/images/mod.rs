//! Image facts shared by tools, providers and HTTP views: sizes, formats, validation.
//!
//! Decoding is CPU work: callers run [`inspect`] and [`decode`] on the image pool
//! ([`pipeline`]), never on a request task.

pub mod fetch;
pub mod files;
pub mod pipeline;
pub mod placeholder;
pub mod variant;

pub use variant::{Rendition, Variant, VariantError};

use std::io::Cursor;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The three shapes a voice user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageSize {
    #[default]
    Square,
    Portrait,
    Landscape,
}

impl ImageSize {
    pub const ALL: [ImageSize; 3] = [ImageSize::Square, ImageSize::Portrait, ImageSize::Landscape];

    /// Pixel size sent to providers: 1024x1024, 1024x1536, 1536x1024.
    pub fn dimensions(self) -> (u32, u32) {
        match self {
            ImageSize::Square => (1024, 1024),
            ImageSize::Portrait => (1024, 1536),
            ImageSize::Landscape => (1536, 1024),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImageSize::Square => "square",
            ImageSize::Portrait => "portrait",
            ImageSize::Landscape => "landscape",
        }
    }
}

/// Encodings we accept from providers and serve to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Webp => "webp",
        }
    }

    /// `png`, `jpeg` (or `jpg`) and `webp`, as URL queries and settings name them.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "png" => Some(ImageFormat::Png),
            "jpeg" | "jpg" => Some(ImageFormat::Jpeg),
            "webp" => Some(ImageFormat::Webp),
            _ => None,
        }
    }

    /// The format the bytes announce (magic numbers only; nothing is decoded).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        image::guess_format(bytes).ok().and_then(Self::from_image_crate)
    }

    fn from_image_crate(format: image::ImageFormat) -> Option<Self> {
        match format {
            image::ImageFormat::Png => Some(ImageFormat::Png),
            image::ImageFormat::Jpeg => Some(ImageFormat::Jpeg),
            image::ImageFormat::WebP => Some(ImageFormat::Webp),
            _ => None,
        }
    }
}

/// What [`inspect`] learned about a valid image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Bounds that keep a hostile or broken provider from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        // 4096 x 4096 is well above every provider size we request.
        Self { max_bytes: 32 * 1024 * 1024, max_pixels: 4096 * 4096 }
    }
}

/// Why bytes are not a usable image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image is {0} bytes, over the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("image is {width}x{height}, over the pixel limit")]
    TooManyPixels { width: u32, height: u32 },
    #[error("not a PNG, JPEG or WebP image")]
    UnknownFormat,
    #[error("image does not decode: {0}")]
    Corrupt(String),
}

/// Sniffs the format, checks the limits, then decodes the whole image to prove it is intact.
pub fn inspect(bytes: &[u8], limits: ImageLimits) -> Result<ImageInfo, ImageError> {
    decode(bytes, limits).map(|decoded| decoded.info)
}

/// A valid image and its pixels.
#[derive(Debug)]
pub struct Decoded {
    pub info: ImageInfo,
    pub pixels: image::DynamicImage,
}

/// Like [`inspect`], keeping the pixels. The byte and pixel limits are checked before any
/// pixel is decoded, and the decoder is held to them too, so a small file declaring a huge
/// canvas (a decompression bomb) is refused without allocating it.
pub fn decode(bytes: &[u8], limits: ImageLimits) -> Result<Decoded, ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge(bytes.len(), limits.max_bytes));
    }
    let guessed = image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat)?;
    let format = ImageFormat::from_image_crate(guessed).ok_or(ImageError::UnknownFormat)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), guessed);
    let (width, height) =
        reader.into_dimensions().map_err(|error| ImageError::Corrupt(error.to_string()))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height });
    }
    reader = image::ImageReader::with_format(Cursor::new(bytes), guessed);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    decoder_limits.max_alloc = Some(limits.max_pixels * 8 + 1024 * 1024);
    reader.limits(decoder_limits);
    let pixels = reader.decode().map_err(|error| ImageError::Corrupt(error.to_string()))?;
    Ok(Decoded { info: ImageInfo { format, width, height }, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn inspect_reports_format_and_dimensions() {
        let info = inspect(&png(30, 20), ImageLimits::default()).unwrap();
        assert_eq!(info, ImageInfo { format: ImageFormat::Png, width: 30, height: 20 });
    }

    #[test]
    fn inspect_rejects_truncated_and_foreign_bytes() {
        let mut bytes = png(64, 64);
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(inspect(&bytes, ImageLimits::default()), Err(ImageError::Corrupt(_))));
        assert!(matches!(
            inspect(b"<html>nope</html>", ImageLimits::default()),
            Err(ImageError::UnknownFormat)
        ));
    }

    #[test]
    fn inspect_enforces_limits_before_decoding() {
        let bytes = png(100, 100);
        let tight = ImageLimits { max_bytes: 10, max_pixels: 1 << 20 };
        assert!(matches!(inspect(&bytes, tight), Err(ImageError::TooLarge(..))));
        let few_pixels = ImageLimits { max_bytes: 1 << 20, max_pixels: 99 * 100 };
        assert!(matches!(inspect(&bytes, few_pixels), Err(ImageError::TooManyPixels { .. })));
    }
}
