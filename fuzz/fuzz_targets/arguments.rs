//! Tool arguments as a model (or anyone) sends them: the manifest checker and the typed
//! tools' deserialisation never panic, and what the checker accepts it accepts again.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use offstage::tools::{builtin::generate_image::GenerateImageInput, manifest::format};
use serde_json::Value;

const MANIFEST: &str = r#"
name = "get_weather"
description = "Current weather at a place. Use when asked about the weather."
mode = "inline"
[params.latitude]
type = "number"
required = true
min = -90
max = 90
[params.place]
type = "string"
max_length = 80
[params.days]
type = "integer"
min = 1
max = 7
default = 1
[params.unit]
type = "string"
enum = ["celsius", "fahrenheit"]
[params.hourly]
type = "boolean"
[http]
url = "https://example.com/{{ latitude }}"
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(arguments)) = serde_json::from_slice::<Value>(data) else { return };
    let manifest = format::parse(Path::new("tools/get_weather.toml"), MANIFEST).expect("valid");
    if let Ok(normalised) = manifest.check_arguments(&arguments) {
        assert_eq!(manifest.check_arguments(&normalised).as_ref(), Ok(&normalised));
    }
    let _ = serde_json::from_value::<GenerateImageInput>(Value::Object(arguments));
});
