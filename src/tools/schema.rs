//! Compact input schemas: every token of a tool definition competes with the persona and the
//! dialogue in a realtime model's context, so schemas are generated from the Rust input types
//! and then stripped to the smallest correct form.
//!
//! Inlined (no `$ref`/`$defs`), no `$schema`, titles or `format`, optional fields simply left out
//! of `required` instead of being `null` unions, and no top-level description (the tool has one).

use std::sync::Arc;

use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Map, Value};

/// The schema of `T` exactly as schemars writes it (what most MCP servers publish).
pub fn source<T: JsonSchema>() -> Map<String, Value> {
    let schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Object(root) => root,
        other => panic!("tool input schema must be an object, got {other}"),
    }
}

/// The smallest correct form of a source schema.
pub fn compile(source: &Map<String, Value>) -> Map<String, Value> {
    let mut value = inline_refs(&Value::Object(source.clone()), source, 0);
    compact(&mut value);
    match value {
        Value::Object(mut root) => {
            root.remove("description");
            root
        }
        _ => Map::new(),
    }
}

/// Replaces `{"$ref": "#/$defs/X"}` with the definition it names (bounded depth, for
/// recursive types).
fn inline_refs(value: &Value, root: &Map<String, Value>, depth: usize) -> Value {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref")
                && depth < 16
                && let Some(name) = reference.strip_prefix("#/$defs/")
                && let Some(target) = root.get("$defs").and_then(|defs| defs.get(name))
            {
                let mut merged = inline_refs(target, root, depth + 1);
                if let Value::Object(merged) = &mut merged {
                    for (key, value) in object.iter().filter(|(key, _)| *key != "$ref") {
                        merged.insert(key.clone(), inline_refs(value, root, depth));
                    }
                }
                return merged;
            }
            Value::Object(
                object
                    .iter()
                    .map(|(key, value)| (key.clone(), inline_refs(value, root, depth)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| inline_refs(item, root, depth)).collect())
        }
        other => other.clone(),
    }
}

/// The compact schema of `T`, an object type.
pub fn input_schema<T: JsonSchema>() -> Arc<Map<String, Value>> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    compact(&mut value);
    if let Value::Object(root) = &mut value {
        root.remove("description");
    }
    match value {
        Value::Object(root) => Arc::new(root),
        // Input types are structs by construction; a non-object root is a programming error.
        other => panic!("tool input schema must be an object, got {other}"),
    }
}

fn compact(value: &mut Value) {
    let Value::Object(object) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(compact);
        }
        return;
    };
    for key in ["$schema", "title", "format", "$defs", "definitions"] {
        object.remove(key);
    }
    if object.get("default").is_some_and(Value::is_null) {
        object.remove("default");
    }
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) {
                drop_null(property);
            }
        }
    }
    object.values_mut().for_each(compact);
}

/// Turns `type: [T, "null"]` into `type: T` and `anyOf: [S, {type: null}]` into `S`.
fn drop_null(property: &mut Value) {
    let Value::Object(object) = property else { return };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|kind| kind != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".to_owned(), only);
        }
    }
    if let Some(enumeration) = object.get_mut("enum").and_then(Value::as_array_mut) {
        enumeration.retain(|option| !option.is_null());
    }
    let Some(Value::Array(branches)) = object.get("anyOf") else { return };
    let non_null: Vec<&Value> =
        branches.iter().filter(|branch| branch.get("type").is_none_or(|t| t != "null")).collect();
    if let [Value::Object(only)] = non_null.as_slice() {
        let only = only.clone();
        object.remove("anyOf");
        for (key, value) in only {
            object.entry(key).or_insert(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::images::ImageSize;

    /// A doc comment that must not reach the schema.
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        /// What to draw.
        prompt: String,
        /// Square if omitted.
        size: Option<ImageSize>,
        #[schemars(range(max = 20000))]
        wait_ms: Option<u64>,
    }

    #[test]
    fn schemas_are_flat_and_free_of_nullable_unions() {
        let schema = Value::Object((*input_schema::<Example>()).clone());
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "description": "What to draw."},
                    "size": {
                        "type": "string",
                        "enum": ["square", "portrait", "landscape"],
                        "description": "Square if omitted."
                    },
                    "wait_ms": {"type": "integer", "minimum": 0, "maximum": 20000}
                },
                "required": ["prompt"],
                "additionalProperties": false
            })
        );
    }
}
