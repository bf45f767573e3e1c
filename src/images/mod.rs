//! Image facts shared by tools, providers and HTTP views: sizes, formats, validation.
//!
//! Decoding is CPU work: callers run [`inspect`] and [`decode`] on the image pool
//! ([`pipeline`]), never on a request task.

pub mod fetch;
pub mod files;
pub mod pipeline;
pub mod placeholder;
pub mod settings;
pub mod variant;

pub use variant::{Rendition, Variant, VariantError};

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};

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
    let mut reader = image::ImageReader::with_format(Paced::new(bytes), guessed);
    let (width, height) =
        reader.into_dimensions().map_err(|error| ImageError::Corrupt(error.to_string()))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height });
    }
    reader = image::ImageReader::with_format(Paced::new(bytes), guessed);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    decoder_limits.max_alloc = Some(limits.max_pixels * 8 + 1024 * 1024);
    reader.limits(decoder_limits);
    let pixels = reader.decode().map_err(|error| ImageError::Corrupt(error.to_string()))?;
    Ok(Decoded { info: ImageInfo { format, width, height }, pixels })
}

/// An encoded image handed to a decoder `PACE` bytes at a time, offering the CPU between
/// pieces ([`crate::priority::offer_cpu`]). Decoders pull their input as they decode, so this
/// puts a checkpoint every few hundred microseconds into a decode that takes 10 ms or more,
/// without reaching into the decoder.
struct Paced<'a> {
    bytes: Cursor<&'a [u8]>,
    next_offer: u64,
}

/// About 0.2 ms of PNG decoding on the benchmark machine.
const PACE: u64 = 32 * 1024;

impl<'a> Paced<'a> {
    fn new(bytes: &'a [u8]) -> Paced<'a> {
        Paced { bytes: Cursor::new(bytes), next_offer: PACE }
    }
}

impl Read for Paced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Paced<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let position = self.bytes.position();
        if position >= self.next_offer {
            crate::priority::offer_cpu();
            self.next_offer = position + PACE;
        }
        let rest = self.bytes.fill_buf()?;
        let piece = usize::try_from(self.next_offer - position).unwrap_or(usize::MAX);
        Ok(&rest[..rest.len().min(piece)])
    }

    fn consume(&mut self, amount: usize) {
        self.bytes.consume(amount);
    }
}

impl Seek for Paced<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = self.bytes.seek(to)?;
        self.next_offer = position + PACE;
        Ok(position)
    }
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
    fn paced_input_arrives_whole_in_pieces_of_at_most_pace() {
        let bytes: Vec<u8> = (0..5 * PACE + 123).map(|n| (n % 251) as u8).collect();
        let mut paced = Paced::new(&bytes);
        let mut pieces = Vec::new();
        loop {
            let piece = paced.fill_buf().unwrap().len();
            if piece == 0 {
                break;
            }
            pieces.push(piece);
            paced.consume(piece);
        }
        assert!(pieces.iter().all(|&piece| piece as u64 <= PACE), "{pieces:?}");
        assert_eq!(pieces.iter().sum::<usize>(), bytes.len());

        let mut again = Vec::new();
        paced.seek(SeekFrom::Start(0)).unwrap();
        paced.read_to_end(&mut again).unwrap();
        assert_eq!(again, bytes);
        paced.seek(SeekFrom::End(-3)).unwrap();
        assert_eq!(paced.fill_buf().unwrap(), &bytes[bytes.len() - 3..]);
    }

    #[test]
    fn a_large_png_decodes_the_same_through_paced_input() {
        // Noise, so the PNG stays large.
        let image = image::RgbImage::from_fn(300, 200, |x, y| {
            let h = (x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77))
                .rotate_left(13)
                .wrapping_mul(0xC2B2_AE35);
            let [r, g, b, _] = h.to_le_bytes();
            image::Rgb([r, g, b])
        });
        let mut encoded = Vec::new();
        image.write_to(&mut Cursor::new(&mut encoded), image::ImageFormat::Png).unwrap();
        assert!(encoded.len() as u64 > 2 * PACE, "the test needs several pieces");
        let decoded = decode(&encoded, ImageLimits::default()).unwrap();
        assert_eq!(decoded.pixels.into_rgb8(), image);
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
