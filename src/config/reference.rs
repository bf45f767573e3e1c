//! `docs/configuration.md`, generated from the settings types: every setting with its
//! default, its environment variable and its doc comment, so each is written down once, next
//! to the field it documents. A test fails (and rewrites the file) when the page is stale.

use std::fmt::Write as _;

use serde_json::Value;

use super::RawConfig;
use crate::providers::ProvidersConfig;

/// The page, as checked in.
pub fn markdown() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a JSON schema");
    let defaults = serde_json::to_value(RawConfig::default()).expect("defaults serialise");
    let mut page = Page { defs: schema.get("$defs").cloned().unwrap_or_default(), out: header() };
    page.table(&schema, &defaults, &[], "Top level", "");
    page.out
}

fn header() -> String {
    "<!-- Generated from the settings types by `cargo test` (src/config/reference.rs); edit the \
     doc comments, not this page. -->\n\n\
     # Configuration reference\n\n\
     Every setting, its default and its environment variable. Settings are read from \
     `offstage.toml` (or `--config`), then the environment, then flags; docs/operations.md \
     explains the layering. In the environment a setting is `OFFSTAGE_` and its path in capitals \
     with `__` between tables (`OFFSTAGE_JOBS__TIMEOUT=90s`); lists are TOML (`[\"a\", \"b\"]`), \
     except `OFFSTAGE_TOKENS` and `OFFSTAGE_FALLBACK`, which are comma-separated. Durations are \
     written `500ms`, `3s`, `2h 30m`.\n"
        .to_owned()
}

struct Page {
    defs: Value,
    out: String,
}

impl Page {
    /// The schema `$ref` points to, or the schema itself.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                self.defs.get(name).unwrap_or(schema)
            }
            None => schema,
        }
    }

    /// The property's schema with its `$ref` followed, its own keys (the field's doc) kept.
    fn merged(&self, property: &Value) -> Value {
        let mut merged = self.resolve(property).clone();
        if let (Some(target), Some(own)) = (merged.as_object_mut(), property.as_object()) {
            for (key, value) in own {
                if key != "$ref" {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        merged
    }

    /// A table of settings (a struct): its own settings as rows, its sub-tables after it.
    fn table(
        &mut self,
        schema: &Value,
        defaults: &Value,
        path: &[String],
        title: &str,
        intro: &str,
    ) {
        let schema = self.resolve(schema).clone();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let mut rows = String::new();
        let mut nested = Vec::new();
        for (name, written) in properties {
            let property = self.merged(written);
            let mut key = path.to_vec();
            key.push(name.clone());
            let default = defaults.get(name).cloned().unwrap_or(Value::Null);
            if let Some(child) = self.sub_table(&property) {
                let (suffix, child_defaults) = child;
                let mut child_path = key.clone();
                child_path.extend(suffix.clone());
                // The table's own doc is its struct's, which the field's doc overrides in
                // `property`.
                let own = self.resolve(written).get("description").cloned();
                nested.push((child_path, property.clone(), own, child_defaults.unwrap_or(default)));
                continue;
            }
            let _ = writeln!(
                rows,
                "| `{}` | {} | {} | {} |",
                key.join(".").replace(".[]", "[]"),
                shown_default(&default, &property),
                env_names(&key),
                description(&property)
            );
        }
        if !rows.is_empty() {
            let _ = write!(self.out, "\n## {title}\n\n");
            if !intro.is_empty() {
                let _ = write!(self.out, "{intro}\n\n");
            }
            let _ = write!(
                self.out,
                "| Setting | Default | Environment | What it does |\n|---|---|---|---|\n{rows}"
            );
        }
        for (child_path, property, own, child_defaults) in nested {
            let title = table_title(&child_path);
            let inner = self.element(&property).clone();
            // The struct's doc first, else the field's; a doc that only repeats the heading
            // says nothing.
            let doc = |schema: &Value| {
                one_paragraph(schema.get("description").and_then(Value::as_str).unwrap_or_default())
            };
            let intro = [
                one_paragraph(own.as_ref().and_then(Value::as_str).unwrap_or_default()),
                doc(&property),
            ]
            .into_iter()
            .find(|doc| !doc.is_empty() && doc.as_str() != title)
            .unwrap_or_default();
            self.table(&inner, &child_defaults, &child_path, &title, &intro);
        }
    }

    /// `Some((path suffix, defaults))` when `property` is a table rather than a value: a
    /// struct, a map of structs (`<name>` in the path) or a list of structs (`[[…]]`).
    fn sub_table(&self, property: &Value) -> Option<(Vec<String>, Option<Value>)> {
        let is_struct = |schema: &Value| self.resolve(schema).get("properties").is_some();
        if is_struct(property) {
            return Some((Vec::new(), None));
        }
        if let Some(values) = property.get("additionalProperties")
            && values.is_object()
            && is_struct(values)
        {
            return Some((vec!["<name>".to_owned()], Some(Value::Null)));
        }
        if let Some(items) = property.get("items")
            && is_struct(items)
        {
            return Some((vec!["[]".to_owned()], Some(Value::Null)));
        }
        None
    }

    /// The struct inside a map or list property, or the property itself.
    fn element<'a>(&'a self, property: &'a Value) -> &'a Value {
        let inner = property.get("additionalProperties").filter(|v| v.is_object());
        self.resolve(inner.or_else(|| property.get("items")).unwrap_or(property))
    }
}

/// `[jobs]`, `[providers.openai]`, `[routing.<name>]`, `[[push.webhooks]]`.
fn table_title(path: &[String]) -> String {
    match path.split_last() {
        Some((last, rest)) if last == "[]" => format!("`[[{}]]`", rest.join(".")),
        _ => format!("`[{}]`", path.join(".")),
    }
}

/// `OFFSTAGE_JOBS__TIMEOUT`, and the variables a provider's SDK reads for the same setting.
fn env_names(key: &[String]) -> String {
    if key.iter().any(|part| part == "[]") {
        return "—".to_owned();
    }
    let mut names = vec![format!(
        "`OFFSTAGE_{}`",
        key.iter().map(|part| part.to_ascii_uppercase()).collect::<Vec<_>>().join("__")
    )];
    if let [table, provider, setting] = key
        && table == "providers"
    {
        for (name, var) in ProvidersConfig::env() {
            if name == provider && var.setting == setting {
                names.push(format!("`{}`", var.name));
            }
        }
    }
    names.join(", ")
}

fn shown_default(default: &Value, schema: &Value) -> String {
    match default {
        Value::Null if schema.get("writeOnly").is_some() => "unset (secret)".to_owned(),
        Value::Null => "unset".to_owned(),
        Value::String(text) if text.is_empty() => "`\"\"`".to_owned(),
        Value::String(text) => format!("`{}`", toml_string(text)),
        Value::Array(items) if items.is_empty() => "`[]`".to_owned(),
        Value::Object(map) if map.is_empty() => "`{}`".to_owned(),
        other => format!("`{}`", inline(other)),
    }
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default().replace('|', "\\|")
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => toml_string(text),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(inline).collect::<Vec<_>>().join(", "))
        }
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter().map(|(k, v)| format!("{k} = {}", inline(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The doc comment in one paragraph, safe inside a table cell, with the kind of value
/// where it is not plain from the default (durations, choices).
fn description(schema: &Value) -> String {
    let doc = schema.get("description").and_then(Value::as_str).unwrap_or_default();
    let mut text = one_paragraph(doc).replace('|', "\\|");
    if let Some(kind) = kind(schema) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("({kind})"));
    }
    text
}

fn one_paragraph(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "a duration", "one of `a`, `b`" or nothing.
fn kind(schema: &Value) -> Option<String> {
    let variants = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array);
    let consts: Vec<String> = match (schema.get("enum").and_then(Value::as_array), variants) {
        (Some(values), _) => values.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        (None, Some(variants)) => variants
            .iter()
            .filter_map(|variant| {
                variant
                    .get("const")
                    .or_else(|| variant.pointer("/enum/0"))?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect(),
        _ => Vec::new(),
    };
    if !consts.is_empty() {
        let listed: Vec<String> = consts.iter().map(|c| format!("`{c}`")).collect();
        return Some(format!("one of {}", listed.join(", ")));
    }
    let is_duration = |schema: &Value| {
        schema.get("format").and_then(Value::as_str) == Some("duration")
            || schema.get("$ref").and_then(Value::as_str).is_some_and(|r| r.ends_with("/Duration"))
    };
    let any_duration =
        is_duration(schema) || variants.is_some_and(|variants| variants.iter().any(is_duration));
    any_duration.then(|| "a duration".to_owned())
}

/// Not used outside tests; kept with the page so the two read together.
#[cfg(test)]
fn rows(page: &str) -> serde_json::Map<String, Value> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once('`'))
        .map(|(key, rest)| (key.to_owned(), Value::String(rest.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The checked-in page is what the types say; a stale one is rewritten, and the test fails
    /// so the new page gets committed.
    #[test]
    fn docs_configuration_md_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let fresh = markdown();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            std::fs::write(&path, &fresh).unwrap();
            panic!("docs/configuration.md was stale and has been regenerated; commit it");
        }
    }

    #[test]
    fn every_setting_has_a_row_with_its_default_and_variable() {
        let page = markdown();
        let rows = rows(&page);
        let row = |key: &str| {
            rows.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no row for {key}"))
        };
        assert!(row("listen").contains("`\"127.0.0.1:8787\"`"), "{}", row("listen"));
        assert!(row("listen").contains("`OFFSTAGE_LISTEN`"));
        assert!(
            row("jobs.timeout").contains("`\"5m\"`") && row("jobs.timeout").contains("a duration")
        );
        assert!(row("providers.openai.api_key").contains("`OPENAI_API_KEY`"));
        assert!(row("providers.gemini.api_key").contains("`GEMINI_API_KEY`, `GOOGLE_API_KEY`"));
        assert!(row("push.delivery").contains("one of `interrupt`, `when_idle`, `silent`"));
        assert!(row("routing.<name>.attempts").contains("`OFFSTAGE_ROUTING__<NAME>__ATTEMPTS`"));
        assert!(row("push.webhooks[].url").contains('—'));
        // Every setting says what it does.
        for (key, rest) in &rows {
            let cells: Vec<&str> = rest.as_str().unwrap().split(" | ").collect();
            assert!(
                cells.last().is_some_and(|doc| !doc.trim_matches([' ', '|']).is_empty()),
                "{key} has no doc"
            );
        }
        // Every provider has its table.
        for name in crate::providers::NAMES {
            assert!(page.contains(&format!("## `[providers.{name}]`")), "{name}");
        }
    }
}
