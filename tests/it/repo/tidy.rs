//! Repository hygiene that a reviewer would otherwise check by hand: every Rust file opens with
//! a `//!` line saying what it owns, and the checked-in JSON schemas match the code.

use std::path::{Path, PathBuf};

use offstage::{
    push::event::{EventBody, WebhookBody},
    tools::{
        JobView,
        builtin::{
            cancel_job::CancelJobInput, edit_image::EditImageInput,
            generate_image::GenerateImageInput, job_status::JobStatusInput,
        },
        listing::schema::{compile, source},
    },
};
use serde_json::Value;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_owns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let missing: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` line: {missing:?}");
}

/// The schemas developers and editors read: tool inputs exactly as `tools/list` shows them, the
/// job JSON every view returns, the events host apps receive (SSE and webhooks), and the tool
/// manifest format (`tools/*.toml` point editors at it with a `#:schema` line).
fn generated() -> Vec<(&'static str, Value)> {
    vec![
        ("generate_image.input.json", Value::Object(compile(&source::<GenerateImageInput>()))),
        ("edit_image.input.json", Value::Object(compile(&source::<EditImageInput>()))),
        ("job_status.input.json", Value::Object(compile(&source::<JobStatusInput>()))),
        ("cancel_job.input.json", Value::Object(compile(&source::<CancelJobInput>()))),
        ("job.json", serde_json::to_value(schemars::schema_for!(JobView)).unwrap()),
        ("event.json", serde_json::to_value(schemars::schema_for!(EventBody)).unwrap()),
        ("webhook.json", serde_json::to_value(schemars::schema_for!(WebhookBody)).unwrap()),
        ("manifest.json", offstage::tools::manifest::json_schema()),
    ]
}

#[test]
fn checked_in_schemas_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut stale = Vec::new();
    for (name, schema) in generated() {
        let path = dir.join(name);
        let fresh = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            std::fs::write(&path, fresh).unwrap();
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ was stale and has been regenerated: {stale:?}; run `cargo test` and commit schemas/"
    );
}
