//! Tests for the schema compiler: the exact shapes it writes for schemars and hand-written
//! sources, that source and exact schemas accept the same inputs, and that the compiled
//! (portable) schemas use only the portable subset and accept at least what the source does.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::portable::tests::Folder;
use super::*;
use crate::images::ImageSize;

fn compiled<T: JsonSchema>() -> Value {
    Value::Object(exact(&source::<T>()))
}

fn compile_value(source: Value) -> Value {
    let Value::Object(source) = source else { panic!("test sources are objects") };
    Value::Object(exact(&source))
}

fn portable_value(source: &Value) -> Value {
    Value::Object(compile(source.as_object().expect("test sources are objects")))
}

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
    assert_eq!(
        compiled::<Example>(),
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

/// How the order is placed.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Delivery {
    /// Left at the door.
    Doorstep,
    /// Handed over in person.
    InPerson,
    Locker,
}

/// Where to send it.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Address {
    /// Street and number.
    street: String,
    postcode: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Order {
    /// How to hand it over.
    delivery: Option<Delivery>,
    fallback: Delivery,
    address: Address,
    /// Another address, if the first fails.
    backup: Option<Address>,
    items: Vec<Address>,
    counts: HashMap<String, u8>,
    #[serde(default)]
    express: bool,
    #[serde(default = "three")]
    attempts: u32,
    #[schemars(range(min = 1, max = 10))]
    rating: Option<u16>,
    #[schemars(email)]
    email: Option<String>,
    pair: (u8, String),
    extra: Value,
}

fn three() -> u32 {
    3
}

#[test]
fn doc_commented_enum_variants_become_one_enum_without_variant_docs() {
    let schema = compiled::<Order>();
    assert_eq!(
        schema["properties"]["delivery"],
        json!({
            "type": "string",
            "enum": ["locker", "doorstep", "in_person"],
            "description": "How to hand it over."
        })
    );
    // A required enum keeps its type's doc, the only description it has.
    assert_eq!(
        schema["properties"]["fallback"],
        json!({
            "type": "string",
            "enum": ["locker", "doorstep", "in_person"],
            "description": "How the order is placed."
        })
    );
}

#[test]
fn nested_structs_are_inlined_and_compacted() {
    let schema = compiled::<Order>();
    let address = json!({
        "type": "object",
        "description": "Where to send it.",
        "properties": {
            "street": {"type": "string", "description": "Street and number."},
            "postcode": {"type": "string"}
        },
        "required": ["street"]
    });
    assert_eq!(schema["properties"]["address"], address);
    let mut backup = address.clone();
    backup["description"] = json!("Another address, if the first fails.");
    assert_eq!(schema["properties"]["backup"], backup);
    assert_eq!(schema["properties"]["items"], json!({"type": "array", "items": address}));
    assert!(schema.get("$defs").is_none(), "{schema:#}");
}

#[test]
fn maps_tuples_ranges_defaults_and_formats() {
    let properties = compiled::<Order>()["properties"].clone();
    assert_eq!(
        properties["counts"],
        json!({
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 255}
        })
    );
    assert_eq!(
        properties["pair"],
        json!({
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 255}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2
        })
    );
    // `default: false` says nothing a model would not assume; `default: 3` does.
    assert_eq!(properties["express"], json!({"type": "boolean"}));
    assert_eq!(properties["attempts"], json!({"type": "integer", "minimum": 0, "default": 3}));
    assert_eq!(properties["rating"], json!({"type": "integer", "minimum": 1, "maximum": 10}));
    assert_eq!(properties["email"], json!({"type": "string", "format": "email"}));
    assert_eq!(properties["extra"], json!(true));
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Browse {
    /// The tree to show.
    root: Option<Folder>,
    depth: u8,
}

#[test]
fn recursive_types_stay_references_into_a_trimmed_defs() {
    let schema = compiled::<Browse>();
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "root": {"$ref": "#/$defs/Folder", "description": "The tree to show."},
                "depth": {"type": "integer", "minimum": 0, "maximum": 255}
            },
            "required": ["depth"],
            "$defs": {
                "Folder": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Folder"}}
                    },
                    "required": ["name", "children"]
                }
            }
        })
    );
    // A recursive root refers to itself as `#`.
    assert_eq!(compiled::<Folder>()["properties"]["children"]["items"], json!({"$ref": "#"}));
}

#[test]
fn draft7_definitions_and_nested_references_are_inlined() {
    let schema = compile_value(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://example.test/tool.json",
        "title": "Input",
        "description": "Said by the tool already.",
        "type": "object",
        "properties": {
            "where": {"$ref": "#/definitions/Place"},
            "when": {"$ref": "#/definitions/Moment", "description": "When to go."}
        },
        "required": ["where"],
        "definitions": {
            "Place": {"title": "Place", "type": "object",
                      "properties": {"city": {"$ref": "#/definitions/City"}}},
            "City": {"type": "string", "examples": ["Paris"]},
            "Moment": {"type": "string", "format": "date-time", "description": "A moment."}
        }
    }));
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "where": {"type": "object", "properties": {"city": {"type": "string"}}},
                "when": {"type": "string", "format": "date-time", "description": "When to go."}
            },
            "required": ["where"]
        })
    );
}

#[test]
fn references_that_cannot_be_followed_keep_what_they_may_point_into() {
    let source = json!({
        "$id": "https://example.test/tool.json",
        "type": "object",
        "properties": {
            "here": {"$ref": "#/$defs/Here"},
            "there": {"$ref": "other.json#/$defs/There"},
            "anchor": {"$ref": "#spot"}
        },
        "$defs": {"Here": {"type": "string"}, "Spot": {"$anchor": "spot", "type": "integer"}}
    });
    assert_eq!(
        compile_value(source),
        json!({
            "$id": "https://example.test/tool.json",
            "type": "object",
            "properties": {
                "here": {"type": "string"},
                "there": {"$ref": "other.json#/$defs/There"},
                "anchor": {"$ref": "#spot"}
            },
            "$defs": {"Here": {"type": "string"}, "Spot": {"$anchor": "spot", "type": "integer"}}
        })
    );
}

#[test]
fn every_nullable_spelling_becomes_optional_but_required_nulls_stay() {
    let schema = compile_value(json!({
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "B."},
            "c": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
            "d": {"type": ["string", "null"], "enum": ["x", "y", null]},
            "e": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "kept": {"type": ["string", "null"]}
        },
        "required": ["kept"]
    }));
    assert_eq!(
        schema["properties"],
        json!({
            "a": {"type": "string"},
            "b": {"type": "integer", "description": "B."},
            "c": {"type": "boolean"},
            "d": {"type": "string", "enum": ["x", "y"]},
            "e": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "kept": {"type": ["string", "null"]}
        })
    );
}

#[test]
fn single_branch_combinators_flatten_unless_they_clash() {
    let schema = compile_value(json!({
        "type": "object",
        "properties": {
            "flat": {"allOf": [{"type": "string", "maxLength": 9}], "description": "Flat."},
            "clash": {"type": "string", "allOf": [{"type": "integer"}]},
            "merged": {"allOf": [{"minimum": 1}, {"maximum": 5}], "type": "integer"},
            "siblings": {
                "additionalProperties": false,
                "allOf": [{"properties": {"x": {"type": "string"}}}]
            },
            "constant": {"oneOf": [{"const": 4}]}
        }
    }));
    assert_eq!(
        schema["properties"],
        json!({
            "flat": {"type": "string", "maxLength": 9, "description": "Flat."},
            "clash": {"type": "string", "allOf": [{"type": "integer"}]},
            "merged": {"type": "integer", "minimum": 1, "maximum": 5},
            // `additionalProperties` would start to see `x`: merging would accept more.
            "siblings": {
                "additionalProperties": false,
                "allOf": [{"properties": {"x": {"type": "string"}}}]
            },
            "constant": {"const": 4}
        })
    );
}

#[test]
fn keywords_are_only_dropped_where_they_are_keywords() {
    let schema = compile_value(json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "title": "Title"},
            "format": {"type": "string", "format": "uint8"},
            "default": {"enum": [{"title": "kept", "default": null}]},
            "note": {"type": "integer", "format": "int32", "default": null, "examples": [1]}
        },
        "required": []
    }));
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "format": {"type": "string"},
                "default": {"enum": [{"title": "kept", "default": null}]},
                "note": {"type": "integer"}
            }
        })
    );
}

#[test]
fn compiling_twice_changes_nothing() {
    for source in [source::<Example>(), source::<Order>(), source::<Browse>(), source::<Folder>()] {
        let once = exact(&source);
        assert_eq!(exact(&once), once);
        let portable = compile(&source);
        assert_eq!(compile(&portable), portable);
    }
}

#[test]
fn compiled_schemas_are_closed_by_the_server_not_by_additional_properties() {
    assert_eq!(
        portable_value(&Value::Object(source::<Example>())),
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
            "required": ["prompt"]
        })
    );
}

#[test]
fn compiled_schemas_say_in_words_what_the_subset_cannot() {
    let properties = portable_value(&Value::Object(source::<Order>()))["properties"].clone();
    assert_eq!(
        properties["attempts"],
        json!({"type": "integer", "minimum": 0, "description": "Default: 3."})
    );
    assert_eq!(properties["counts"], json!({"type": "object"}));
    assert_eq!(
        properties["pair"],
        json!({
            "type": "array",
            "items": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 255}, {"type": "string"}]},
            "minItems": 2,
            "maxItems": 2
        })
    );
    assert_eq!(properties["email"], json!({"type": "string"}));
    let schema = portable_value(&json!({
        "type": "object",
        "properties": {
            "level": {"type": "integer", "enum": [1, 2, 3], "description": "How loud."},
            "kept": {"type": ["string", "null"], "description": "Kept."},
            "named": {"type": "string", "maxLength": 9, "pattern": "^a", "default": "abc"}
        },
        "required": ["kept"]
    }));
    assert_eq!(
        schema["properties"],
        json!({
            "level": {"type": "integer", "description": "How loud. One of: 1, 2, 3."},
            "kept": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Kept."},
            "named": {"type": "string", "description": "Default: abc."}
        })
    );
}

#[test]
fn compiled_schemas_use_only_the_portable_subset() {
    let sources = [
        source::<Example>(),
        source::<Order>(),
        source::<Browse>(),
        source::<Folder>(),
        source::<crate::tools::builtin::generate_image::GenerateImageInput>(),
        source::<crate::tools::builtin::job_status::JobStatusInput>(),
    ];
    for source in sources {
        let compiled = Value::Object(compile(&source));
        portable::tests::assert_subset(&compiled, portable::Dialect::JsonSchema);
        assert!(!compiled.to_string().contains("additionalProperties"), "{compiled}");
    }
}

#[test]
fn compiled_schemas_accept_everything_the_source_does() {
    for (source, inputs) in cases() {
        let source = Value::Object(source);
        let compiled = portable_value(&source);
        for input in inputs {
            if validate::accepts(&source, &input) {
                assert!(
                    validate::accepts(&compiled, &input),
                    "{input} lost\nsource: {source:#}\ncompiled: {compiled:#}"
                );
            }
        }
    }
}

/// Source schemas with inputs on both sides of them.
fn cases() -> Vec<(Map<String, Value>, Vec<Value>)> {
    vec![
        (
            source::<Example>(),
            vec![
                json!({"prompt": "a fox"}),
                json!({"prompt": "a fox", "size": "portrait", "wait_ms": 20000}),
                json!({"prompt": "a fox", "wait_ms": 20001}),
                json!({"prompt": "a fox", "size": "huge"}),
                json!({"prompt": "a fox", "colour": "red"}),
                json!({"size": "square"}),
                json!({"prompt": 3}),
            ],
        ),
        (
            source::<Order>(),
            vec![
                order(json!({})),
                order(json!({"delivery": "in_person", "rating": 10, "email": "a@b.c"})),
                order(json!({"delivery": "by_drone"})),
                order(json!({"rating": 0})),
                order(json!({"backup": {"street": "Main 1", "postcode": "1000"}})),
                order(json!({"backup": {"postcode": "1000"}})),
                order(json!({"counts": {"apples": 256}})),
                order(json!({"pair": [1, "x", 3]})),
                order(json!({"items": [{"street": 5}]})),
            ],
        ),
        (
            source::<Browse>(),
            vec![
                json!({"depth": 1}),
                json!({"depth": 1, "root": {"name": "/", "children": [
                    {"name": "a", "children": []}
                ]}}),
                json!({"depth": 1, "root": {"name": "/", "children": [{"name": "a"}]}}),
            ],
        ),
    ]
}

#[test]
fn exact_and_source_schemas_accept_the_same_inputs() {
    for (source, inputs) in cases() {
        let source = Value::Object(source);
        let compact = compile_value(source.clone());
        let mut verdicts = BTreeSet::new();
        for input in inputs {
            let verdict = validate::accepts(&source, &input);
            assert_eq!(
                verdict,
                validate::accepts(&compact, &input),
                "disagree on {input}\nsource: {source:#}\ncompact: {compact:#}"
            );
            verdicts.insert(verdict);
        }
        // Each case has inputs on both sides, or it would prove little.
        assert_eq!(verdicts.len(), 2, "{source:#}");
    }
}

#[test]
fn only_nulls_for_optional_properties_are_rejected_in_addition() {
    let source = Value::Object(source::<Order>());
    let compact = compile_value(source.clone());
    let input = order(json!({"delivery": null, "backup": null}));
    assert!(validate::accepts(&source, &input));
    assert!(!validate::accepts(&compact, &input));
}

/// A valid `Order` with some fields replaced.
fn order(changes: Value) -> Value {
    let mut order = json!({
        "fallback": "locker",
        "address": {"street": "Main 1"},
        "items": [],
        "counts": {},
        "pair": [1, "x"],
        "extra": null
    });
    for (key, value) in changes.as_object().unwrap() {
        order[key] = value.clone();
    }
    order
}

/// Just enough of a JSON Schema 2020-12 validator for the keywords compiled schemas use.
mod validate {
    use serde_json::Value;

    pub(super) fn accepts(root: &Value, instance: &Value) -> bool {
        valid(root, root, instance)
    }

    fn valid(root: &Value, schema: &Value, instance: &Value) -> bool {
        let object = match schema {
            Value::Bool(verdict) => return *verdict,
            Value::Object(object) => object,
            _ => return true,
        };
        object.iter().all(|(key, value)| keyword(root, object, key, value, instance))
    }

    fn keyword(
        root: &Value,
        schema: &serde_json::Map<String, Value>,
        key: &str,
        value: &Value,
        instance: &Value,
    ) -> bool {
        let number = instance.as_f64();
        let bound = value.as_f64();
        let list = || value.as_array().into_iter().flatten();
        match key {
            "$ref" => {
                let pointer = value.as_str().unwrap().trim_start_matches('#');
                valid(root, root.pointer(pointer).expect("reference resolves"), instance)
            }
            "type" => match value {
                Value::String(kind) => super::is_of_type(instance, kind),
                _ => list().any(|kind| super::is_of_type(instance, kind.as_str().unwrap())),
            },
            "enum" => list().any(|option| option == instance),
            "const" => value == instance,
            "minimum" => number.is_none_or(|n| n >= bound.unwrap()),
            "maximum" => number.is_none_or(|n| n <= bound.unwrap()),
            "maxLength" => {
                instance.as_str().is_none_or(|s| s.chars().count() as f64 <= bound.unwrap())
            }
            "minItems" => instance.as_array().is_none_or(|a| a.len() as f64 >= bound.unwrap()),
            "maxItems" => instance.as_array().is_none_or(|a| a.len() as f64 <= bound.unwrap()),
            "allOf" => list().all(|branch| valid(root, branch, instance)),
            "anyOf" => list().any(|branch| valid(root, branch, instance)),
            "oneOf" => list().filter(|branch| valid(root, branch, instance)).count() == 1,
            "required" => instance.as_object().is_none_or(|fields| {
                list().all(|name| fields.contains_key(name.as_str().unwrap()))
            }),
            "properties" => instance.as_object().is_none_or(|fields| {
                fields.iter().all(|(name, field)| {
                    value.get(name).is_none_or(|property| valid(root, property, field))
                })
            }),
            "additionalProperties" => instance.as_object().is_none_or(|fields| {
                let declared = schema.get("properties");
                fields
                    .iter()
                    .filter(|(name, _)| declared.and_then(|d| d.get(name.as_str())).is_none())
                    .all(|(_, field)| valid(root, value, field))
            }),
            "prefixItems" => instance.as_array().is_none_or(|items| {
                items.iter().zip(list()).all(|(item, prefix)| valid(root, prefix, item))
            }),
            "items" => instance.as_array().is_none_or(|items| {
                let skip = schema.get("prefixItems").and_then(Value::as_array).map_or(0, Vec::len);
                items.iter().skip(skip).all(|item| valid(root, value, item))
            }),
            _ => true,
        }
    }
}

#[test]
fn compiling_an_object_with_an_array_enum_stays_in_the_portable_subset() {
    // Found by `scripts/fuzz schema`: an enum of non-strings on an object root.
    let source = json!({"proription": "Square if omitted.",
        "enum": [["square", "portrait", "landscape"], "prompt"], "type": "object"});
    let once = compile(source.as_object().unwrap());
    for key in once.keys() {
        assert!(portable::KEYS.contains(&key.as_str()), "{key} in {once:?}");
    }
    assert_eq!(compile(&once), once);
}

#[test]
fn compiling_an_unknown_type_name_is_stable() {
    // Found by `scripts/fuzz schema`: a type name JSON Schema does not have, under an enum.
    let source = json!({"properties": {"job_kd": {"properties": {"job_kd": {"tywe": "string"},
        "wait_ms": {"minymum": 0, "type": "in|eg\r"}}, "tywe": "tted.", "enum": ["squandscape"],
        "y pt e": "g"}}, "typeired": ["prompt"], "type": "object"});
    let once = compile(source.as_object().unwrap());
    assert_eq!(compile(&once), once);
}
