//! The CPU work of the pipeline, as plain functions run on the image pool: resize (SIMD
//! Lanczos3), encode (PNG, JPEG, lossy WebP) and the ThumbHash preview.

use std::io::Cursor;

use base64::Engine as _;
use fast_image_resize::{PixelType, ResizeOptions, Resizer, images::Image};
use image::{DynamicImage, RgbImage, RgbaImage};

use crate::images::{ImageError, ImageFormat, Rendition};

/// ThumbHash works on images of at most 100x100.
const PREVIEW_SIDE: u32 = 100;

/// Pixels in the two layouts we work in: RGB, or RGBA when the image has transparency.
#[derive(Debug)]
pub enum Pixels {
    Rgb(RgbImage),
    Rgba(RgbaImage),
}

impl Pixels {
    pub fn of(image: DynamicImage) -> Pixels {
        if image.color().has_alpha() {
            Pixels::Rgba(image.into_rgba8())
        } else {
            Pixels::Rgb(image.into_rgb8())
        }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Rgb(image) => image.dimensions(),
            Pixels::Rgba(image) => image.dimensions(),
        }
    }

    /// Resized to exactly `width` x `height` (Lanczos3, alpha-aware).
    pub fn resize(&self, width: u32, height: u32) -> Result<Pixels, ImageError> {
        let (from_width, from_height) = self.dimensions();
        if (from_width, from_height) == (width, height) {
            return Ok(match self {
                Pixels::Rgb(image) => Pixels::Rgb(image.clone()),
                Pixels::Rgba(image) => Pixels::Rgba(image.clone()),
            });
        }
        let (raw, pixel_type) = match self {
            Pixels::Rgb(image) => (image.as_raw(), PixelType::U8x3),
            Pixels::Rgba(image) => (image.as_raw(), PixelType::U8x4),
        };
        let failed = |error: &dyn std::fmt::Display| ImageError::Corrupt(error.to_string());
        let source =
            fast_image_resize::images::ImageRef::new(from_width, from_height, raw, pixel_type)
                .map_err(|error| failed(&error))?;
        let mut target = Image::new(width, height, pixel_type);
        Resizer::new()
            .resize(&source, &mut target, &ResizeOptions::new())
            .map_err(|error| failed(&error))?;
        let buffer = target.into_vec();
        let rebuilt = match pixel_type {
            PixelType::U8x4 => RgbaImage::from_raw(width, height, buffer).map(Pixels::Rgba),
            _ => RgbImage::from_raw(width, height, buffer).map(Pixels::Rgb),
        };
        rebuilt.ok_or_else(|| ImageError::Corrupt("resized buffer has the wrong size".to_owned()))
    }

    /// Lossy WebP; libwebp calls `checkpoint` between rows of macroblocks, tens of times per
    /// image.
    fn encode_webp(&self, quality: u8, checkpoint: impl webpx::Stop) -> webpx::Result<Vec<u8>> {
        let (width, height) = self.dimensions();
        let encoder = match self {
            Pixels::Rgb(image) => webpx::Encoder::new_rgb(image.as_raw(), width, height),
            Pixels::Rgba(image) => webpx::Encoder::new_rgba(image.as_raw(), width, height),
        };
        encoder.quality(f32::from(quality)).encode(checkpoint)
    }

    /// Encoded as `format`; `quality` (1–100) applies to the lossy ones. JPEG has no alpha,
    /// so transparent pixels become their colour without it.
    pub fn encode(&self, format: ImageFormat, quality: u8) -> Result<Vec<u8>, ImageError> {
        let failed = |error: &dyn std::fmt::Display| ImageError::Corrupt(error.to_string());
        match format {
            ImageFormat::Webp => {
                self.encode_webp(quality, OfferCpu).map_err(|error| failed(&error))
            }
            ImageFormat::Jpeg => {
                let mut out = Vec::new();
                let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
                match self {
                    Pixels::Rgb(image) => image.write_with_encoder(encoder),
                    Pixels::Rgba(image) => DynamicImage::ImageRgba8(image.clone())
                        .into_rgb8()
                        .write_with_encoder(encoder),
                }
                .map_err(|error| failed(&error))?;
                Ok(out)
            }
            ImageFormat::Png => {
                let mut out = Vec::new();
                match self {
                    Pixels::Rgb(image) => {
                        image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                    }
                    Pixels::Rgba(image) => {
                        image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                    }
                }
                .map_err(|error| failed(&error))?;
                Ok(out)
            }
        }
    }

    /// One rendition: a resize, then an encode.
    pub fn render(&self, rendition: Rendition, quality: u8) -> Result<Vec<u8>, ImageError> {
        let resized = self.resize(rendition.width, rendition.height)?;
        crate::priority::offer_cpu();
        resized.encode(rendition.format, quality)
    }

    /// The ThumbHash of the image, base64: about 30 characters from which any app paints a
    /// blurred stand-in of the right colours and aspect before the image loads.
    pub fn thumbhash(&self) -> Result<String, ImageError> {
        let (width, height) = self.dimensions();
        let scale = f64::from(PREVIEW_SIDE) / f64::from(width.max(height));
        let scaled = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, PREVIEW_SIDE);
        let (small_width, small_height) =
            if scale < 1.0 { (scaled(width), scaled(height)) } else { (width, height) };
        let small = self.resize(small_width, small_height)?;
        let rgba = match small {
            Pixels::Rgba(image) => image,
            Pixels::Rgb(image) => DynamicImage::ImageRgb8(image).into_rgba8(),
        };
        let hash = thumbhash::rgba_to_thumb_hash(
            small_width as usize,
            small_height as usize,
            rgba.as_raw(),
        );
        Ok(base64::engine::general_purpose::STANDARD.encode(hash))
    }
}

/// The WebP encoder's checkpoints offer the CPU ([`crate::priority::offer_cpu`]): an encode
/// is 10–20 ms, half of the pool's work, with no other place to stop. It never stops the encode.
#[derive(Debug, Clone, Copy)]
struct OfferCpu;

impl webpx::Stop for OfferCpu {
    fn check(&self) -> Result<(), webpx::StopReason> {
        crate::priority::offer_cpu();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::{ImageLimits, decode};

    /// A gradient with a red disc, so resizes and previews have something to keep.
    fn picture(width: u32, height: u32, alpha: bool) -> Pixels {
        let image = RgbaImage::from_fn(width, height, |x, y| {
            let (cx, cy) = (width / 2, height / 2);
            let inside = (x.abs_diff(cx).pow(2) + y.abs_diff(cy).pow(2)) < (width / 4).pow(2);
            let a = if alpha && x < width / 2 { 0 } else { 255 };
            if inside {
                image::Rgba([220, 30, 30, a])
            } else {
                image::Rgba([(x * 255 / width) as u8, 40, (y * 255 / height) as u8, a])
            }
        });
        Pixels::of(if alpha {
            DynamicImage::ImageRgba8(image)
        } else {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image).into_rgb8())
        })
    }

    #[test]
    fn renditions_decode_to_the_size_and_format_asked() {
        let original = picture(1024, 1536, false);
        for format in [ImageFormat::Webp, ImageFormat::Jpeg, ImageFormat::Png] {
            let rendition = Rendition { width: 512, height: 768, format };
            let bytes = original.render(rendition, 80).unwrap();
            let decoded = decode(&bytes, ImageLimits::default()).unwrap();
            assert_eq!(decoded.info.format, format);
            assert_eq!((decoded.info.width, decoded.info.height), (512, 768));
            // The disc is still red in the middle.
            let centre = decoded.pixels.to_rgb8().get_pixel(256, 384).0;
            assert!(centre[0] > 180 && centre[1] < 80, "{format:?}: {centre:?}");
        }
    }

    /// Counts the encoder's checkpoints.
    #[derive(Debug, Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl webpx::Stop for &Count {
        fn check(&self) -> Result<(), webpx::StopReason> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn the_webp_encoder_reaches_checkpoints_all_through_an_encode() {
        for alpha in [false, true] {
            let count = Count::default();
            let bytes = picture(512, 512, alpha).encode_webp(80, &count).unwrap();
            let checkpoints = count.0.into_inner();
            // One before the encode, then libwebp's progress: analysis, each twentieth of the
            // macroblock rows, the final assembly. Far fewer would leave long stretches.
            assert!(checkpoints >= 20, "{checkpoints} checkpoints (alpha {alpha})");
            let decoded = decode(&bytes, ImageLimits::default()).unwrap();
            assert_eq!((decoded.info.width, decoded.info.height), (512, 512));
        }
    }

    /// Photographs (and generated pictures) are noisy; lossy WebP is for them.
    #[test]
    fn lossy_webp_is_much_lighter_than_png() {
        let original = Pixels::Rgb(RgbImage::from_fn(512, 512, |x, y| {
            let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 24;
            image::Rgb([(x / 2 + noise) as u8, (y / 2 + noise) as u8, (128 + noise) as u8])
        }));
        let png = original.encode(ImageFormat::Png, 80).unwrap();
        let webp = original.encode(ImageFormat::Webp, 80).unwrap();
        assert!(webp.len() * 3 < png.len(), "webp {} vs png {}", webp.len(), png.len());
    }

    #[test]
    fn transparency_survives_webp_and_png() {
        let original = picture(256, 256, true);
        for format in [ImageFormat::Webp, ImageFormat::Png] {
            let bytes = original.render(Rendition { width: 128, height: 128, format }, 80).unwrap();
            let decoded = decode(&bytes, ImageLimits::default()).unwrap().pixels.to_rgba8();
            assert!(decoded.get_pixel(5, 64).0[3] < 10, "{format:?} lost transparency");
            assert!(decoded.get_pixel(120, 64).0[3] > 245, "{format:?} lost opacity");
        }
    }

    #[test]
    fn thumbhash_keeps_colour_and_aspect() {
        let hash = picture(1536, 1024, false).thumbhash().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(&hash).unwrap();
        assert!(bytes.len() <= 25, "{} bytes", bytes.len());
        let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&bytes).unwrap();
        assert!((ratio - 1.5).abs() < 0.15, "aspect {ratio}");
        let (_, _, rgba) = thumbhash::thumb_hash_to_rgba(&bytes).unwrap();
        assert!(!rgba.is_empty());
        let other = picture(1024, 1536, true).thumbhash().unwrap();
        assert_ne!(hash, other);
    }
}
