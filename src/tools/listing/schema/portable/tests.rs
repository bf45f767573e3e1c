//! Tests for the portable lowering: what each dialect writes for what the subset cannot say,
//! recursion, and a checker (used by the export tests too) that a schema stays in the subset.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::tools::listing::schema;

/// Asserts that `schema` uses only the portable subset in `dialect`'s spelling.
pub(crate) fn assert_subset(schema: &Value, dialect: Dialect) {
    let object = schema.as_object().unwrap_or_else(|| panic!("not a schema object: {schema}"));
    for key in object.keys() {
        assert!(KEYS.contains(&key.as_str()), "`{key}` is outside the subset: {schema}");
    }
    if dialect == Dialect::JsonSchema {
        assert!(!object.contains_key("nullable"), "{schema}");
    }
    if let Some(kind) = object.get("type") {
        let kind = kind.as_str().unwrap_or_else(|| panic!("one type name: {schema}"));
        let known = TYPES.iter().any(|(json, gemini)| match dialect {
            Dialect::JsonSchema => kind == *json || kind == "null",
            Dialect::Gemini => kind == *gemini,
        });
        assert!(known, "{schema}");
    }
    if let Some(values) = object.get("enum") {
        let string = match dialect {
            Dialect::JsonSchema => "string",
            Dialect::Gemini => "STRING",
        };
        assert_eq!(object["type"], string, "{schema}");
        assert!(values.as_array().unwrap().iter().all(Value::is_string), "{schema}");
    }
    if let Some(format) = object.get("format") {
        assert_eq!(format, "date-time");
    }
    if let Some(nullable) = object.get("nullable") {
        assert_eq!(nullable, true);
    }
    let properties = object.get("properties").and_then(Value::as_object);
    for name in object.get("required").and_then(Value::as_array).into_iter().flatten() {
        let declared = properties.is_some_and(|p| p.contains_key(name.as_str().unwrap()));
        assert!(declared, "required {name} is not a property: {schema}");
    }
    let children = properties
        .into_iter()
        .flat_map(|p| p.values())
        .chain(object.get("items"))
        .chain(object.get("anyOf").and_then(Value::as_array).into_iter().flatten());
    for child in children {
        assert_subset(child, dialect);
    }
}

fn lowered(schema: Value, dialect: Dialect) -> Value {
    Value::Object(lower(schema.as_object().unwrap(), dialect).unwrap())
}

/// One schema with everything the subset cannot say.
fn awkward() -> Value {
    json!({
        "type": "object",
        "properties": {
            "level": {"type": "integer", "enum": [1, 2, 3], "description": "How loud."},
            "mode": {"const": "fast"},
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string", "format": "uri"},
            "note": {"type": ["string", "null"]},
            "either": {"type": ["string", "integer"], "description": "Name or id."},
            "shape": {"oneOf": [
                {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
                {"type": "object", "properties": {"side": {"type": "number"}}}
            ]},
            "size": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "both": {"allOf": [{"type": "string"}, {"maxLength": 5, "description": "Short."}]},
            "count": {"type": "integer", "default": 5},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}]}
        },
        "required": ["level", "note"],
        "additionalProperties": false
    })
}

#[test]
fn gemini_rewrites_what_its_subset_cannot_say() {
    assert_eq!(
        lowered(awkward(), Dialect::Gemini),
        json!({
            "type": "OBJECT",
            "properties": {
                "level": {"type": "INTEGER", "description": "How loud. One of: 1, 2, 3."},
                "mode": {"type": "STRING", "enum": ["fast"]},
                "when": {"type": "STRING", "format": "date-time"},
                "site": {"type": "STRING"},
                "note": {"type": "STRING", "nullable": true},
                "either": {
                    "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}],
                    "description": "Name or id."
                },
                "shape": {"anyOf": [
                    {"type": "OBJECT", "properties": {"r": {"type": "NUMBER"}}, "required": ["r"]},
                    {"type": "OBJECT", "properties": {"side": {"type": "NUMBER"}}}
                ]},
                "size": {"type": "INTEGER", "minimum": 1, "maximum": 9},
                "tags": {"type": "OBJECT"},
                "both": {"type": "STRING", "description": "Short."},
                "count": {"type": "INTEGER", "description": "Default: 5."},
                "pair": {"type": "ARRAY", "items": {"type": "INTEGER"}}
            },
            "required": ["level", "note"]
        })
    );
}

#[test]
fn json_schema_spells_the_same_with_null_branches() {
    assert_eq!(
        lowered(awkward(), Dialect::JsonSchema),
        json!({
            "type": "object",
            "properties": {
                "level": {"type": "integer", "description": "How loud. One of: 1, 2, 3."},
                "mode": {"type": "string", "enum": ["fast"]},
                "when": {"type": "string", "format": "date-time"},
                "site": {"type": "string"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "either": {
                    "anyOf": [{"type": "string"}, {"type": "integer"}],
                    "description": "Name or id."
                },
                "shape": {"anyOf": [
                    {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
                    {"type": "object", "properties": {"side": {"type": "number"}}}
                ]},
                "size": {"type": "integer", "minimum": 1, "maximum": 9},
                "tags": {"type": "object"},
                "both": {"type": "string", "description": "Short."},
                "count": {"type": "integer", "description": "Default: 5."},
                "pair": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["level", "note"]
        })
    );
}

#[test]
fn a_nullable_union_gets_one_more_branch() {
    let schema = json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]});
    assert_eq!(
        lowered(schema.clone(), Dialect::JsonSchema),
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]})
    );
    assert_eq!(
        lowered(schema, Dialect::Gemini),
        json!({"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": true})
    );
}

#[test]
fn lowering_is_idempotent_and_stays_in_the_subset() {
    for dialect in [Dialect::JsonSchema, Dialect::Gemini] {
        let once = lowered(awkward(), dialect);
        assert_subset(&once, dialect);
        if dialect == Dialect::JsonSchema {
            assert_eq!(lowered(once.clone(), dialect), once);
        }
    }
}

// A recursive type, as a file browser's input would be (no doc comment: that would be its
// schema's description).
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Folder {
    name: String,
    children: Vec<Folder>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Browse {
    root: Option<Folder>,
}

#[test]
fn recursive_types_are_unrolled_twice() {
    let exact = schema::exact(&schema::source::<Browse>());
    let folder = |object: &str, string: &str, array: &str, children: Value| {
        json!({
            "type": object,
            "properties": {"name": {"type": string}, "children": {"type": array, "items": children}},
            "required": ["name", "children"]
        })
    };
    let gemini = Value::Object(lower(&exact, Dialect::Gemini).unwrap());
    let inner = folder("OBJECT", "STRING", "ARRAY", json!({"type": "OBJECT"}));
    assert_eq!(gemini["properties"]["root"], folder("OBJECT", "STRING", "ARRAY", inner));
    let json = Value::Object(schema::compile(&schema::source::<Browse>()));
    let inner = folder("object", "string", "array", json!({"type": "object"}));
    assert_eq!(json["properties"]["root"], folder("object", "string", "array", inner));
    assert!(!json.to_string().contains("$ref"), "{json}");
}
