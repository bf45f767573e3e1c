//! `sketch`'s edits: the source image, fitted to the requested size, tinted as the instruction
//! suggests and captioned with the instruction, so that a user sees which picture was changed
//! and what was asked. Deterministic, like everything `sketch` draws.

use std::io::Cursor;

use image::{ImageReader, Limits, Rgb, RgbImage, imageops::FilterType};

use super::{Mood, blend, hsl, text_hash, word_hue, word_mood};
use crate::images::placeholder::{MARGIN, draw_text};

/// Largest source we decode, in pixels; callers check sources against the same bound.
const MAX_SOURCE_PIXELS: u64 = 4096 * 4096;
/// Lines of caption at most; a longer instruction ends in "...".
const MAX_CAPTION_LINES: usize = 3;

/// Why a source cannot be edited. The message is for job records, so it says what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("the source image does not decode: {0}")]
pub(super) struct BadSource(String);

/// Decodes `source`, fits it to `width` x `height` (scaled to cover, centre cropped, so
/// nothing is stretched), tints it and captions it with `instruction`.
pub(super) fn render_edit(
    source: &[u8],
    instruction: &str,
    seed: u64,
    width: u32,
    height: u32,
) -> Result<RgbImage, BadSource> {
    let mut reader = ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(|error| BadSource(error.to_string()))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_SOURCE_PIXELS * 4 + 1024 * 1024);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|error| BadSource(error.to_string()))?;
    let fitted = if (decoded.width(), decoded.height()) == (width, height) {
        decoded.to_rgb8()
    } else {
        decoded.resize_to_fill(width, height, FilterType::Triangle).to_rgb8()
    };
    let mut image = fitted;
    tint(&mut image, instruction, seed);
    caption(&mut image, instruction);
    Ok(image)
}

/// Shifts the whole picture towards the colour and mood the instruction names ("make it red",
/// "at night"); without such words, towards a hue drawn from the instruction and seed.
fn tint(image: &mut RgbImage, instruction: &str, seed: u64) {
    let text = instruction.trim().to_lowercase();
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).collect();
    let mood = words.iter().find_map(|word| word_mood(word));
    let hint = words.iter().find_map(|word| word_hue(word));
    let hashed = ((text_hash(&text) ^ seed) % 360) as f32;
    let (hue, light, brightness) = match mood {
        Some(Mood::Night) => (hint.unwrap_or(225.0), 0.3, 0.55),
        Some(Mood::Sunset) => (hint.unwrap_or(25.0), 0.55, 0.9),
        Some(Mood::Snow) => (hint.unwrap_or(200.0), 0.88, 1.15),
        Some(Mood::Day) => (hint.unwrap_or(50.0), 0.65, 1.1),
        None => (hint.unwrap_or(hashed), 0.5, 1.0),
    };
    let color = hsl(hue, 0.75, light);
    for pixel in image.pixels_mut() {
        pixel.0 = pixel.0.map(|c| (f32::from(c) * brightness).min(255.0) as u8);
        blend(&mut pixel.0, color, 0.3);
    }
}

/// A dark band along the bottom with the instruction in it, word-wrapped.
fn caption(image: &mut RgbImage, instruction: &str) {
    let (width, height) = image.dimensions();
    let scale = (height / 256).clamp(1, 4);
    let per_line = (width.saturating_sub(2 * MARGIN) / (8 * scale)).max(1) as usize;
    let lines = wrap(instruction, per_line);
    let line_height = 10 * scale;
    let band = (lines.len() as u32 * line_height + 4 * scale).min(height);
    for y in height - band..height {
        for x in 0..width {
            blend(&mut image.get_pixel_mut(x, y).0, [0.0; 3], 0.6);
        }
    }
    for (index, line) in (0u32..).zip(&lines) {
        let top = height - band + 2 * scale + index * line_height;
        draw_text(image, line, width / 2, top, scale, Rgb([245, 245, 245]));
    }
}

/// Splits `text` into at most [`MAX_CAPTION_LINES`] lines of `per_line` characters, breaking
/// between words where it can. The 8x8 font has ASCII only, so anything else shows as `?`.
fn wrap(text: &str, per_line: usize) -> Vec<String> {
    let printable: String = text
        .trim()
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            c if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect();
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in printable.split_whitespace() {
        let mut word = word;
        loop {
            let room = per_line - current.len().min(per_line);
            let needed = word.len() + usize::from(!current.is_empty());
            if needed <= room {
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
                break;
            }
            if current.is_empty() {
                // A word longer than a line is cut where the line ends.
                let (head, tail) = word.split_at(per_line);
                lines.push(head.to_owned());
                word = tail;
            } else {
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > MAX_CAPTION_LINES {
        lines.truncate(MAX_CAPTION_LINES);
        let last = &mut lines[MAX_CAPTION_LINES - 1];
        let keep = last.len().min(per_line.saturating_sub(3));
        last.truncate(keep);
        last.push_str("...");
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_between_words_and_cuts_long_ones() {
        assert_eq!(wrap("make the sky red", 8), ["make the", "sky red"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("  café\tnoir ", 20), ["caf? noir"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn wrap_ends_an_overlong_caption_with_an_ellipsis() {
        let lines = wrap("one two three four five six seven eight", 9);
        assert_eq!(lines.len(), MAX_CAPTION_LINES);
        assert!(lines[MAX_CAPTION_LINES - 1].ends_with("..."), "{lines:?}");
        assert!(lines.iter().all(|line| line.len() <= 9), "{lines:?}");
    }
}
