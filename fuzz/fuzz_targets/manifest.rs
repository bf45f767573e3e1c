//! Manifest files as anyone could write them: parsing never panics, and a manifest that parses
//! compiles to a schema in the portable subset.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use offstage::tools::{listing::schema, manifest::format};

fuzz_target!(|text: &str| {
    if let Ok(manifest) = format::parse(Path::new("tools/fuzzed.toml"), text) {
        let compiled = schema::compile(&manifest.source_schema());
        assert_eq!(compiled.get("type").and_then(|kind| kind.as_str()), Some("object"));
    }
});
