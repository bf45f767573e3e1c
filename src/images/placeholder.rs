//! Placeholder PNGs served at a job's `image_url` while the real image does not exist.
//!
//! Each (kind, size) is drawn once, at half the provider resolution so the aspect ratio
//! matches exactly, and cached: serving one afterwards is a reference-counted clone.

use std::sync::OnceLock;

use bytes::Bytes;
use font8x8::legacy::BASIC_LEGACY;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};

use super::ImageSize;

/// Why a job has no image to show (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceholderKind {
    InProgress,
    Failed,
    Cancelled,
}

/// Side of the square the glyph is drawn in, in pixels.
const GLYPH: u32 = 150;
const TITLE_SCALE: u32 = 4;
const SUBTITLE_SCALE: u32 = 3;
/// Horizontal room kept free on both sides of a line of text.
pub(crate) const MARGIN: u32 = 24;

static CACHE: [[OnceLock<Bytes>; 3]; 3] = [const { [const { OnceLock::new() }; 3] }; 3];

/// The placeholder PNG for `kind` at half of `size`'s pixel dimensions.
///
/// The first call for a combination draws and encodes it (a few milliseconds); every later
/// call returns the cached bytes.
pub fn placeholder_png(kind: PlaceholderKind, size: ImageSize) -> Bytes {
    let column = match size {
        ImageSize::Square => 0,
        ImageSize::Portrait => 1,
        ImageSize::Landscape => 2,
    };
    CACHE[kind as usize][column].get_or_init(|| encode(&draw(kind, size))).clone()
}

/// Colours and words of one kind.
struct Style {
    top: [u8; 3],
    bottom: [u8; 3],
    stripes: bool,
    title: (&'static str, Rgb<u8>),
    subtitle: (&'static str, Rgb<u8>),
    shadow: Rgb<u8>,
}

fn style(kind: PlaceholderKind) -> Style {
    match kind {
        PlaceholderKind::InProgress => Style {
            top: [38, 44, 56],
            bottom: [22, 26, 34],
            stripes: true,
            title: ("CREATING IMAGE", Rgb([244, 246, 250])),
            subtitle: ("IN PROGRESS", Rgb([150, 162, 180])),
            shadow: Rgb([10, 12, 16]),
        },
        PlaceholderKind::Failed => Style {
            top: [74, 30, 35],
            bottom: [40, 16, 20],
            stripes: false,
            title: ("IMAGE FAILED", Rgb([255, 236, 238])),
            subtitle: ("PLEASE TRY AGAIN", Rgb([214, 160, 166])),
            shadow: Rgb([22, 6, 8]),
        },
        PlaceholderKind::Cancelled => Style {
            top: [68, 71, 76],
            bottom: [42, 44, 48],
            stripes: false,
            title: ("CANCELLED", Rgb([238, 240, 243])),
            subtitle: ("IMAGE NOT CREATED", Rgb([170, 174, 181])),
            shadow: Rgb([20, 21, 23]),
        },
    }
}

/// Vertical positions (glyph centre, title top, subtitle top) that centre the whole block.
fn layout(height: u32) -> (u32, u32, u32) {
    let block = GLYPH + 36 + 8 * TITLE_SCALE + 18 + 8 * SUBTITLE_SCALE;
    let top = height.saturating_sub(block) / 2;
    let title = top + GLYPH + 36;
    (top + GLYPH / 2, title, title + 8 * TITLE_SCALE + 18)
}

/// The glyph's colour at (u, v), both from -1 to 1 with v pointing down; `None` is empty.
fn glyph(kind: PlaceholderKind, u: f32, v: f32) -> Option<[u8; 3]> {
    let (au, av, r) = (u.abs(), v.abs(), u.hypot(v));
    match kind {
        PlaceholderKind::InProgress => {
            let (frame, sand) = ([200, 208, 220], [242, 180, 92]);
            if av > 0.86 {
                return (av <= 0.98 && au < 0.62).then_some(frame);
            }
            // Two bulbs meeting at a narrow neck; the walls are a fixed horizontal width.
            let wall = 0.07 + 0.45 * (av / 0.8).min(1.0);
            if au > wall {
                return None;
            }
            if au > wall - 0.09 || av > 0.78 {
                return Some(frame);
            }
            // Sand rests at the bottom of the top bulb, trickles down and piles up below.
            let pile = 0.72 - 0.3 * (1.0 - au * 2.2).max(0.0);
            let falling = v >= 0.0 && au < 0.025;
            ((v < 0.0 && v > -0.4) || v > pile || falling).then_some(sand)
        }
        PlaceholderKind::Failed => {
            // Both strokes of the X fold onto one diagonal segment in the first quadrant.
            let along = ((au + av) / 2.0).min(0.66);
            let off = (au - along).hypot(av - along);
            (off < 0.15).then_some([236, 92, 102])
        }
        PlaceholderKind::Cancelled => {
            let along = ((u + v) / 2.0).clamp(-0.55, 0.55);
            let slash = (u - along).hypot(v - along) < 0.09;
            (slash || (0.72..0.9).contains(&r)).then_some([178, 182, 190])
        }
    }
}

fn draw(kind: PlaceholderKind, size: ImageSize) -> RgbImage {
    let (width, height) = size.dimensions();
    let (width, height) = (width / 2, height / 2);
    let style = style(kind);
    let mut img = RgbImage::from_fn(width, height, |x, y| {
        let t = y as f32 / height as f32;
        let mut pixel = std::array::from_fn(|i| {
            (f32::from(style.top[i]) * (1.0 - t) + f32::from(style.bottom[i]) * t) as u8
        });
        // Soft diagonal stripes read as "work in progress" without shouting.
        if style.stripes && (x + y) / 28 % 2 == 0 {
            pixel = pixel.map(|c: u8| c.saturating_add(6));
        }
        Rgb(pixel)
    });
    let (glyph_y, title_y, subtitle_y) = layout(height);
    paint(&mut img, (width / 2, glyph_y), |u, v| glyph(kind, u, v));
    for ((text, color), y, scale) in
        [(style.title, title_y, TITLE_SCALE), (style.subtitle, subtitle_y, SUBTITLE_SCALE)]
    {
        // A dark copy one notch down-right keeps the letters crisp on the stripes.
        let nudge = (scale / 2).max(1);
        draw_text(&mut img, text, width / 2 + nudge, y + nudge, scale, style.shadow);
        draw_text(&mut img, text, width / 2, y, scale, color);
    }
    img
}

/// Blends `shape` into the GLYPH-sized square centred on `center`, 4x4 samples per pixel
/// so that curves and diagonals come out smooth.
fn paint(img: &mut RgbImage, center: (u32, u32), shape: impl Fn(f32, f32) -> Option<[u8; 3]>) {
    let half = GLYPH as f32 / 2.0;
    let x0 = center.0.saturating_sub(GLYPH / 2);
    let y0 = center.1.saturating_sub(GLYPH / 2);
    for y in y0..(y0 + GLYPH).min(img.height()) {
        for x in x0..(x0 + GLYPH).min(img.width()) {
            let mut sum = [0.0_f32; 3];
            let mut hits = 0.0;
            for sample in 0..16 {
                let sx = x as f32 + (sample % 4) as f32 / 4.0 + 0.125 - center.0 as f32;
                let sy = y as f32 + (sample / 4) as f32 / 4.0 + 0.125 - center.1 as f32;
                if let Some(color) = shape(sx / half, sy / half) {
                    sum = std::array::from_fn(|i| sum[i] + f32::from(color[i]));
                    hits += 1.0;
                }
            }
            let pixel = img.get_pixel_mut(x, y);
            for (channel, total) in pixel.0.iter_mut().zip(sum) {
                *channel = ((f32::from(*channel) * (16.0 - hits) + total) / 16.0).round() as u8;
            }
        }
    }
}

/// Draws `text` with the 8x8 font scaled `scale` times, centred on `center_x`, top at `y`.
///
/// The scale shrinks when needed so the line fits between the margins. `sketch` captions its
/// edits with it too.
pub(crate) fn draw_text(
    img: &mut RgbImage,
    text: &str,
    center_x: u32,
    y: u32,
    scale: u32,
    color: Rgb<u8>,
) {
    let chars = text.chars().count().max(1) as u32;
    let room = img.width().saturating_sub(2 * MARGIN);
    let scale = scale.min(room / (8 * chars)).max(1);
    // Glyphs keep their rightmost column blank, so the inked width is one column short.
    let left = center_x.saturating_sub((chars * 8 - 1) * scale / 2);
    for (index, ch) in text.chars().enumerate() {
        let bitmap = BASIC_LEGACY.get(ch as usize).copied().unwrap_or_default();
        for (row, bits) in (0u32..).zip(bitmap) {
            for column in (0u32..8).filter(|column| bits >> column & 1 == 1) {
                let x = left + (index as u32 * 8 + column) * scale;
                for (dx, dy) in (0..scale * scale).map(|i| (i % scale, i / scale)) {
                    let (px, py) = (x + dx, y + row * scale + dy);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, color);
                    }
                }
            }
        }
    }
}

fn encode(img: &RgbImage) -> Bytes {
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive);
    encoder
        .write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
        .expect("encoding a nonempty in-memory RGB image into a Vec cannot fail");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [PlaceholderKind; 3] =
        [PlaceholderKind::InProgress, PlaceholderKind::Failed, PlaceholderKind::Cancelled];

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap().to_rgb8()
    }

    #[test]
    fn every_placeholder_is_a_half_size_png_with_the_same_aspect_ratio() {
        for kind in KINDS {
            for size in ImageSize::ALL {
                let (full_width, full_height) = size.dimensions();
                let (width, height) = decode(&placeholder_png(kind, size)).dimensions();
                assert_eq!((width * 2, height * 2), (full_width, full_height), "{kind:?} {size:?}");
                assert_eq!(width * full_height, height * full_width);
            }
        }
    }

    #[test]
    fn kinds_look_different() {
        for size in ImageSize::ALL {
            let progress = placeholder_png(PlaceholderKind::InProgress, size);
            assert_ne!(progress, placeholder_png(PlaceholderKind::Failed, size));
            assert_ne!(progress, placeholder_png(PlaceholderKind::Cancelled, size));
        }
    }

    #[test]
    fn later_calls_share_the_cached_bytes() {
        let first = placeholder_png(PlaceholderKind::Failed, ImageSize::Portrait);
        let second = placeholder_png(PlaceholderKind::Failed, ImageSize::Portrait);
        assert_eq!(first, second);
        assert_eq!(first.as_ptr(), second.as_ptr(), "the second call drew a fresh copy");
    }

    #[test]
    fn titles_are_drawn_inside_the_margins() {
        for kind in KINDS {
            for size in ImageSize::ALL {
                let img = decode(&placeholder_png(kind, size));
                let (_, title_y, _) = layout(img.height());
                let color = style(kind).title.1;
                let band = title_y..title_y + 8 * TITLE_SCALE;
                let inked: Vec<u32> = img
                    .enumerate_pixels()
                    .filter(|(_, y, p)| band.contains(y) && **p == color)
                    .map(|(x, ..)| x)
                    .collect();
                // Each letter sets about 20 of its 64 cells, each cell 4x4 pixels: even
                // "CANCELLED" inks well over 2,000 pixels.
                assert!(inked.len() > 2_000, "{kind:?} {size:?}: {} text pixels", inked.len());
                let (left, right) = (inked.iter().min().unwrap(), inked.iter().max().unwrap());
                assert!(*left >= MARGIN && *right < img.width() - MARGIN, "{kind:?} {size:?}");
            }
        }
    }
}
