//! Image bytes from a provider or a link: inspecting the header never panics, and never
//! admits an image over the byte or pixel limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offstage::images::{ImageLimits, inspect};

fuzz_target!(|data: &[u8]| {
    let limits = ImageLimits { max_bytes: 1 << 20, max_pixels: 4096 * 4096 };
    if let Ok(info) = inspect(data, limits) {
        assert!(data.len() <= limits.max_bytes);
        assert!(u64::from(info.width) * u64::from(info.height) <= limits.max_pixels);
    }
});
