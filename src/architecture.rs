//! ARCHITECTURE.md's dependency rule, checked: every module's `crate::` paths (test code
//! aside) are read from the source, and an import the rule forbids fails the build's tests.
//!
//! The rule: rooms are in layers, and a room imports only rooms of lower layers; a few pairs
//! are forbidden although the layers would allow them; some crates belong to one room only.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The layers, lowest first. A room imports only rooms of layers below its own.
const LAYERS: &[&[&str]] = &[
    &["settings", "netguard", "priority"],
    &["jobs"],
    &["images"],
    &["providers"],
    &["config"],
    &["cli", "telemetry", "oauth", "tools"],
    &["push"],
    &["mcp"],
    &["http"],
    &["server"],
    &["commands"],
];

/// Imports the layers allow but the architecture does not: providers know nothing of jobs.
const FORBIDDEN: &[(&str, &str)] = &[("providers", "jobs")];

/// Crates only some rooms may use: the MCP model is `mcp`'s, axum is `http`'s and the
/// composition root's.
const CRATES: &[(&str, &[&str])] =
    &[("rmcp::model", &["mcp", "http", "server"]), ("axum", &["http", "server", "commands"])];

fn layer(room: &str) -> Option<usize> {
    LAYERS.iter().position(|rooms| rooms.contains(&room))
}

/// `src/tools/job.rs` is in room `tools`; `src/main.rs` and `lib.rs` are the roots.
fn room(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Test code is free to reach across: files named `tests.rs` or under a `tests/` folder,
/// `testdb.rs`, this file, and everything after a `#[cfg(test)]` module line.
fn production_code(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let in_tests = path.components().any(|part| part.as_os_str() == "tests");
    if matches!(name, "tests.rs" | "testdb.rs" | "architecture.rs") || in_tests {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let end = ["#[cfg(test)]\nmod ", "#[cfg(test)]\npub(crate) mod "]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    let code: String = text[..end]
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !line.starts_with("//") && !line.starts_with("#[doc")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(code)
}

/// The rooms a piece of code names through `crate::`: `crate::jobs::JobId` and
/// `use crate::{config::Config, jobs::{Job, JobId}}` both name their first segments.
fn named_rooms(code: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut first_segment = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        first_segment = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && first_segment {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        rooms.insert(std::mem::take(&mut item));
                        first_segment = false;
                    }
                }
            }
            if !item.is_empty() {
                rooms.insert(item);
            }
        } else {
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            rooms.insert(name);
        }
    }
    rooms
}

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

/// Room → the rooms its production code imports, and the files that do.
fn imports() -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let Some(code) = production_code(&path) else { continue };
        let from = room(&path, &src);
        let shown = path.strip_prefix(&src).unwrap().display().to_string();
        for to in named_rooms(&code) {
            if to != from {
                found.entry((from.clone(), to)).or_default().insert(shown.clone());
            }
        }
        for (krate, allowed) in CRATES {
            let uses =
                code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}"));
            if uses && !allowed.contains(&from.as_str()) && layer(&from).is_some() {
                found
                    .entry((from.clone(), format!("crate {krate}")))
                    .or_default()
                    .insert(shown.clone());
            }
        }
    }
    found
}

#[test]
fn imports_follow_the_dependency_rule() {
    let mut broken = Vec::new();
    for ((from, to), files) in imports() {
        // The library's root and the binary wire everything.
        if matches!(from.as_str(), "lib" | "main") {
            continue;
        }
        let allowed = if let Some(krate) = to.strip_prefix("crate ") {
            CRATES.iter().any(|(name, rooms)| *name == krate && rooms.contains(&from.as_str()))
        } else {
            match (layer(&from), layer(&to)) {
                (Some(from_layer), Some(to_layer)) => {
                    from_layer > to_layer && !FORBIDDEN.contains(&(from.as_str(), to.as_str()))
                }
                // A room the rule does not list yet, or a name that is no room (a macro).
                (None, _) => false,
                (_, None) => {
                    !Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(&to).exists()
                        && !Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join(format!("src/{to}.rs"))
                            .exists()
                }
            }
        };
        if !allowed {
            broken.push(format!(
                "{from} → {to} ({})",
                files.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(broken.is_empty(), "imports ARCHITECTURE.md's rule forbids:\n{}", broken.join("\n"));
}

#[test]
fn the_reader_sees_groups_and_paths() {
    let code =
        "use crate::{config::Config, jobs::{Job, JobId}};\nlet x = crate::images::decode(y);";
    let rooms: Vec<_> = named_rooms(code).into_iter().collect();
    assert_eq!(rooms, ["config", "images", "jobs"]);
    // The rule itself fails where it should.
    assert!(layer("jobs") < layer("providers"));
    assert!(FORBIDDEN.contains(&("providers", "jobs")));
}
