//! Variants of a stored image, named by the image URL's query (`?w=512&format=webp`), and the
//! concrete renditions they resolve to for one original.
//!
//! Widths come from a short fixed ladder, so one image has a bounded number of cached
//! renditions however many URLs a client invents.

use super::{ImageFormat, ImageInfo};

/// The widths a variant may ask for. Wider than the original means the original's width:
/// images are never enlarged.
pub const WIDTHS: [u32; 9] = [64, 128, 256, 384, 512, 768, 1024, 1536, 2048];

/// What a URL asks for; `None` keeps the original's width or format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Variant {
    pub width: Option<u32>,
    pub format: Option<ImageFormat>,
}

/// Why a query names no variant we serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    #[error("w=`{0}` is not an offered width; use one of {widths}", widths = offered_widths())]
    Width(String),
    #[error("format=`{0}` is not offered; use webp, png or jpeg")]
    Format(String),
    #[error("`{0}` is given twice")]
    Repeated(&'static str),
}

fn offered_widths() -> String {
    WIDTHS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

impl Variant {
    /// Reads `w` and `format` from a URL query. Other parameters (cache busters a client
    /// appends) are ignored.
    pub fn parse_query(query: &str) -> Result<Variant, VariantError> {
        let mut variant = Variant::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "w" | "width" => {
                    let width = value
                        .parse::<u32>()
                        .ok()
                        .filter(|width| WIDTHS.contains(width))
                        .ok_or_else(|| VariantError::Width(value.clone().into_owned()))?;
                    if variant.width.replace(width).is_some() {
                        return Err(VariantError::Repeated("w"));
                    }
                }
                "format" => {
                    let format = ImageFormat::from_name(&value.to_ascii_lowercase())
                        .ok_or_else(|| VariantError::Format(value.clone().into_owned()))?;
                    if variant.format.replace(format).is_some() {
                        return Err(VariantError::Repeated("format"));
                    }
                }
                _ => {}
            }
        }
        Ok(variant)
    }

    /// The rendition this variant means for `original`, or `None` when that is the original
    /// itself.
    pub fn resolve(self, original: &ImageInfo) -> Option<Rendition> {
        let width = self.width.map_or(original.width, |width| width.min(original.width));
        let format = self.format.unwrap_or(original.format);
        if width == original.width && format == original.format {
            return None;
        }
        let height = (u64::from(original.height) * u64::from(width) / u64::from(original.width))
            .clamp(1, u64::from(original.height));
        Some(Rendition { width, height: u32::try_from(height).unwrap_or(1), format })
    }
}

/// One concrete derived image: exact pixel size and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

impl Rendition {
    /// The cache file's name among the job's renditions, e.g. `w512.webp`.
    pub fn file_name(&self) -> String {
        format!("w{}.{}", self.width, self.format.extension())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: ImageInfo = ImageInfo { format: ImageFormat::Png, width: 1024, height: 1536 };

    #[test]
    fn queries_name_widths_and_formats() {
        let variant = Variant::parse_query("w=512&format=webp").unwrap();
        assert_eq!(variant, Variant { width: Some(512), format: Some(ImageFormat::Webp) });
        assert_eq!(Variant::parse_query("format=JPG").unwrap().format, Some(ImageFormat::Jpeg));
        assert_eq!(Variant::parse_query("").unwrap(), Variant::default());
        assert_eq!(Variant::parse_query("v=3&w=256").unwrap().width, Some(256));
    }

    #[test]
    fn unknown_widths_and_formats_are_named_in_the_error() {
        let error = Variant::parse_query("w=500").unwrap_err();
        assert_eq!(error, VariantError::Width("500".to_owned()));
        assert!(error.to_string().contains("64, 128, 256, 384, 512"), "{error}");
        assert_eq!(Variant::parse_query("w=-1").unwrap_err(), VariantError::Width("-1".to_owned()));
        assert_eq!(
            Variant::parse_query("format=gif").unwrap_err(),
            VariantError::Format("gif".to_owned())
        );
        assert_eq!(Variant::parse_query("w=64&w=128").unwrap_err(), VariantError::Repeated("w"));
    }

    #[test]
    fn renditions_keep_the_aspect_and_never_enlarge() {
        let half = Variant { width: Some(512), format: None }.resolve(&ORIGINAL).unwrap();
        assert_eq!(half, Rendition { width: 512, height: 768, format: ImageFormat::Png });
        assert_eq!(half.file_name(), "w512.png");
        let wider = Variant { width: Some(2048), format: Some(ImageFormat::Webp) };
        let wider = wider.resolve(&ORIGINAL).unwrap();
        assert_eq!((wider.width, wider.height), (1024, 1536));
        assert_eq!(Variant { width: Some(1536), format: None }.resolve(&ORIGINAL), None);
        assert_eq!(
            Variant { width: None, format: Some(ImageFormat::Png) }.resolve(&ORIGINAL),
            None
        );
    }
}
