//! Gemini's function `parameters`: a compact JSON Schema rewritten into the OpenAPI-3 subset
//! Google documents as `Schema` (Gemini API reference, "Schema" and its `Type` enum; the Live
//! API guide "Tool use with Live API" takes the same `FunctionDeclaration`s in its setup).
//!
//! We use the `parameters` (`Schema`) form with upper-case types (`STRING`, `OBJECT`, …), as in
//! Google's function-calling docs, not the newer `parametersJsonSchema`, which not every Live
//! model or SDK accepts yet. The subset we emit is deliberately narrower than the reference
//! lists: `type`, `format`, `description`, `nullable`, `enum`, `items`, `properties`,
//! `required`, `minimum`, `maximum`, `minItems`, `maxItems`, `anyOf` and `propertyOrdering`.
//! Everything else is dropped or rewritten:
//!
//! - `enum` must be strings: string enums keep `type: STRING`; other enums are dropped and
//!   their values named in the description. A string `const` becomes a one-value `enum`.
//! - `null` in a type, enum or union becomes `nullable: true`; a type list becomes `anyOf`.
//! - `oneOf` becomes `anyOf` (exclusivity is lost) and `allOf` branches are merged.
//! - `format` is kept only for `date-time` on strings (the Gemini Developer API rejects most
//!   other formats); `exclusiveMinimum`/`exclusiveMaximum` become inclusive bounds.
//! - `additionalProperties`, `$defs`, `default`, `pattern`, lengths and tuples are dropped.
//! - Recursive `$ref`s are unrolled twice; below that a value keeps only its type (an `OBJECT`
//!   of any shape).
//!
//! The model may therefore send arguments the server still rejects; the server validates
//! against the real schema and answers with a message the model can act on.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Keys a Gemini schema node may carry in our output.
pub const ALLOWED_KEYS: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "anyOf",
    "propertyOrdering",
];

/// Gemini `Type` names for the JSON Schema types.
pub const TYPES: &[(&str, &str)] = &[
    ("string", "STRING"),
    ("number", "NUMBER"),
    ("integer", "INTEGER"),
    ("boolean", "BOOLEAN"),
    ("array", "ARRAY"),
    ("object", "OBJECT"),
];

/// How many times one recursive type is expanded inside itself.
const UNROLL: usize = 2;

/// The Gemini form of a compact schema (see [`crate::tools::schema::compile`]), or `None` when
/// nothing of it can be expressed.
pub fn parameters(schema: &Map<String, Value>) -> Option<Map<String, Value>> {
    let root = Value::Object(schema.clone());
    let mut converter = Converter { root: &root, unrolled: BTreeMap::from([(String::new(), 1)]) };
    converter.node(&root)
}

struct Converter<'a> {
    root: &'a Value,
    /// How often each reference target is being expanded on the current path.
    unrolled: BTreeMap<String, usize>,
}

impl Converter<'_> {
    /// One schema node; `None` means the value cannot be described (and the property holding it
    /// is left out).
    fn node(&mut self, schema: &Value) -> Option<Map<String, Value>> {
        let object = match schema {
            Value::Bool(false) => return None,
            Value::Object(object) => object,
            _ => return Some(Map::new()),
        };
        if let Some(Value::String(reference)) = object.get("$ref") {
            return self.reference(object, reference);
        }
        let types: Vec<&str> = match object.get("type") {
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let mut nullable = types.contains(&"null");
        let types: Vec<&str> = types.into_iter().filter(|kind| *kind != "null").collect();
        if types.len() > 1 {
            return self.type_union(object, &types, nullable);
        }
        let kind = types.first().copied();
        let mut out = Map::new();
        let mut notes = Vec::new();
        if let Some(gemini) = kind.and_then(gemini_type) {
            out.insert("type".to_owned(), gemini.into());
        }
        if let Some(values) = listed_values(object) {
            nullable |= values.iter().any(Value::is_null);
            let values: Vec<Value> = values.into_iter().filter(|value| !value.is_null()).collect();
            let strings = values.iter().all(Value::is_string);
            if strings && !values.is_empty() && kind.is_none_or(|kind| kind == "string") {
                out.insert("type".to_owned(), "STRING".into());
                out.insert("enum".to_owned(), Value::Array(values));
            } else if !values.is_empty() {
                let names: Vec<String> = values.iter().map(Value::to_string).collect();
                notes.push(format!("One of: {}.", names.join(", ")));
            }
        }
        let applies = |wanted: &[&str]| kind.is_none_or(|kind| wanted.contains(&kind));
        if applies(&["object"]) && !self.object_keywords(object, &mut out) {
            return None;
        }
        if applies(&["array"]) && !self.array_keywords(object, &mut out) {
            return None;
        }
        if applies(&["number", "integer"]) {
            number_keywords(object, kind == Some("integer"), &mut out);
        }
        if kind == Some("string") && object.get("format") == Some(&"date-time".into()) {
            out.insert("format".to_owned(), "date-time".into());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = object.get(key) {
                let before = branches.len();
                let mut kept = Vec::new();
                for branch in branches {
                    match self.node(branch) {
                        Some(only_null) if is_null_marker(&only_null) => nullable = true,
                        Some(branch) => kept.push(Value::Object(branch)),
                        None => {}
                    }
                }
                if before > 0 && kept.is_empty() && !nullable {
                    return None;
                }
                merge_union(&mut out, kept);
            }
        }
        if let Some(Value::Array(branches)) = object.get("allOf") {
            for branch in branches {
                // Every branch must hold; the outer node's own keys win on a clash.
                for (key, value) in self.node(branch)? {
                    out.entry(key).or_insert(value);
                }
            }
        }
        describe(&mut out, object.get("description").and_then(Value::as_str), &notes);
        if nullable {
            out.insert("nullable".to_owned(), true.into());
        }
        Some(out)
    }

    fn reference(
        &mut self,
        site: &Map<String, Value>,
        reference: &str,
    ) -> Option<Map<String, Value>> {
        let pointer = reference.strip_prefix('#')?.to_owned();
        let target = self.root.pointer(&pointer)?;
        let depth = self.unrolled.entry(pointer.clone()).or_default();
        if *depth >= UNROLL {
            // Deeper levels keep their type but no longer say what is inside.
            let kind = target.get("type").and_then(Value::as_str).and_then(gemini_type);
            return Some(kind.map(|kind| ("type".to_owned(), kind.into())).into_iter().collect());
        }
        *depth += 1;
        let inner = self.node(target);
        *self.unrolled.entry(pointer).or_default() -= 1;
        let mut site = site.clone();
        site.remove("$ref");
        let mut out = self.node(&Value::Object(site))?;
        for (key, value) in inner? {
            out.entry(key).or_insert(value);
        }
        Some(out)
    }

    /// `type: [A, B]` as `anyOf` of one node per type, sharing the description.
    fn type_union(
        &mut self,
        object: &Map<String, Value>,
        types: &[&str],
        nullable: bool,
    ) -> Option<Map<String, Value>> {
        let mut branches = Vec::new();
        for kind in types {
            let mut single = object.clone();
            single.insert("type".to_owned(), (*kind).into());
            single.remove("description");
            if let Some(branch) = self.node(&Value::Object(single)) {
                branches.push(Value::Object(branch));
            }
        }
        if branches.is_empty() {
            return None;
        }
        let mut out = Map::new();
        merge_union(&mut out, branches);
        describe(&mut out, object.get("description").and_then(Value::as_str), &[]);
        if nullable {
            out.insert("nullable".to_owned(), true.into());
        }
        Some(out)
    }

    /// `properties` and `required`; false when a required property cannot be described.
    fn object_keywords(
        &mut self,
        object: &Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> bool {
        let Some(Value::Object(properties)) = object.get("properties") else { return true };
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut converted = Map::new();
        for (name, property) in properties {
            match self.node(property) {
                Some(property) => {
                    converted.insert(name.clone(), Value::Object(property));
                }
                // An optional property can simply be left out; a required one cannot.
                None if required.contains(&name.as_str()) => return false,
                None => {}
            }
        }
        out.insert("type".to_owned(), "OBJECT".into());
        out.insert("properties".to_owned(), Value::Object(converted));
        if !required.is_empty() {
            out.insert("required".to_owned(), required.into());
        }
        true
    }

    /// `items`, `minItems`, `maxItems`; false when the items cannot be described.
    fn array_keywords(
        &mut self,
        object: &Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> bool {
        if let Some(items @ Value::Object(_)) = object.get("items") {
            let Some(items) = self.node(items) else { return false };
            out.insert("items".to_owned(), Value::Object(items));
        }
        for key in ["minItems", "maxItems"] {
            if let Some(count) = object.get(key).filter(|count| count.is_u64()) {
                out.insert(key.to_owned(), count.clone());
            }
        }
        true
    }
}

fn gemini_type(kind: &str) -> Option<&'static str> {
    TYPES.iter().find(|(json, _)| *json == kind).map(|(_, gemini)| *gemini)
}

/// The values an `enum` or `const` allows.
fn listed_values(object: &Map<String, Value>) -> Option<Vec<Value>> {
    match (object.get("enum"), object.get("const")) {
        (Some(Value::Array(values)), _) => Some(values.clone()),
        (_, Some(value)) => Some(vec![value.clone()]),
        _ => None,
    }
}

/// Bounds, with exclusive ones made inclusive (exactly for integers, approximately otherwise).
fn number_keywords(object: &Map<String, Value>, integer: bool, out: &mut Map<String, Value>) {
    for (inclusive, exclusive, step) in
        [("minimum", "exclusiveMinimum", 1.0), ("maximum", "exclusiveMaximum", -1.0)]
    {
        if let Some(bound) = object.get(inclusive).filter(|bound| bound.is_number()) {
            out.insert(inclusive.to_owned(), bound.clone());
        } else if let Some(bound) = object.get(exclusive).and_then(Value::as_f64) {
            // The next integer inside the bound: above an exclusive minimum, below a maximum.
            let bound = if integer {
                let edge = if step > 0.0 { bound.floor() } else { bound.ceil() };
                Value::from((edge + step) as i64)
            } else {
                Value::from(bound)
            };
            out.insert(inclusive.to_owned(), bound);
        }
    }
}

/// A converted `{type: null}` branch: nothing but `nullable`.
fn is_null_marker(branch: &Map<String, Value>) -> bool {
    branch.len() == 1 && branch.get("nullable") == Some(&Value::Bool(true))
}

/// One branch is merged into the node; several become `anyOf`.
fn merge_union(out: &mut Map<String, Value>, mut branches: Vec<Value>) {
    match branches.len() {
        0 => {}
        1 => {
            if let Value::Object(only) = branches.remove(0) {
                for (key, value) in only {
                    out.entry(key).or_insert(value);
                }
            }
        }
        _ => {
            out.insert("anyOf".to_owned(), Value::Array(branches));
        }
    }
}

/// The node's description, followed by notes on what the subset could not say.
fn describe(out: &mut Map<String, Value>, description: Option<&str>, notes: &[String]) {
    let mut parts: Vec<&str> = description.into_iter().collect();
    parts.extend(notes.iter().map(String::as_str));
    if !parts.is_empty() {
        out.insert("description".to_owned(), parts.join(" ").into());
    }
}
