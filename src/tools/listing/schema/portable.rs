//! Portable schemas: a compact schema lowered into the one subset every stack we serve takes
//! unchanged, in two spellings ([`Dialect`]).
//!
//! Each stack reads tool schemas through a converter of its own, and each breaks on something
//! different: google-genai's MCP converter (`_mcp_utils`) walks `additionalProperties` as a
//! schema and crashes on `false`; Gemini's `Schema` has one `type`, string-only `enum`s and no
//! `const`, `oneOf`, `$ref` or `default`; LiveKit's Gemini path refuses type lists and
//! recursive references; OpenAI's strict mode (openai-agents' `convert_schemas_to_strict`)
//! rejects `default`, `minLength`, `maxLength`, `oneOf` and open objects; the MCP Inspector's
//! `--strict` lint flags bare booleans and type lists. What all of them accept is small:
//!
//! `type` (one name), `description`, `enum` (strings, with `type: string`), `properties`,
//! `required`, `items`, `anyOf` (below the root), `minimum`, `maximum`, `minItems`,
//! `maxItems` and `format: date-time`; in the Gemini spelling also `nullable`.
//!
//! Everything else is rewritten or dropped, always towards accepting more, never less:
//!
//! - `additionalProperties` is dropped: a closed object stays closed because the server
//!   validates arguments against the source schema (serde's `deny_unknown_fields`, the
//!   manifest checker) and answers a stray argument with a sentence the model can act on.
//! - Non-string `enum`s and `const`s are named in the description ("One of: 1, 2, 3."); a
//!   string `const` becomes a one-value `enum`. An informative `default` is named in the
//!   description too ("Default: 5.").
//! - `null` in a type list, `enum` or union becomes an `anyOf` branch `{"type": "null"}` (JSON
//!   Schema) or `nullable: true` (Gemini); other type lists become `anyOf`. `oneOf` becomes
//!   `anyOf` (exclusivity is lost); `allOf` branches are merged.
//! - Exclusive bounds become inclusive ones (exactly for integers); tuples (`prefixItems`)
//!   become an `items` union; other formats, lengths, patterns and the rest are dropped.
//! - References are inlined; a recursive type is unrolled twice, and below that a value keeps
//!   only its type.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The two spellings of the portable subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// JSON Schema, as in `tools/list` and the OpenAI Realtime export.
    JsonSchema,
    /// Gemini's OpenAPI-3 `Schema` (upper-case types, `nullable`), as in the Gemini Live export.
    Gemini,
}

/// Keys a lowered schema node may carry (`nullable` only in [`Dialect::Gemini`]).
pub const KEYS: &[&str] = &[
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
];

/// JSON Schema type names and their Gemini `Type` names.
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

/// `schema` in the portable subset, or `None` when nothing of it can be expressed.
pub fn lower(schema: &Map<String, Value>, dialect: Dialect) -> Option<Map<String, Value>> {
    let root = Value::Object(schema.clone());
    let mut lowering =
        Lowering { root: &root, dialect, unrolled: BTreeMap::from([(String::new(), 1)]) };
    lowering.node(&root)
}

struct Lowering<'a> {
    root: &'a Value,
    dialect: Dialect,
    /// How often each reference target is being expanded on the current path.
    unrolled: BTreeMap<String, usize>,
}

impl Lowering<'_> {
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
        let mut kind = types.first().copied();
        if kind.is_none() && nullable && !has_constraints(object) {
            return Some(self.null_only());
        }
        let mut out = Map::new();
        let mut notes = Vec::new();
        if let Some(name) = kind.and_then(|kind| self.type_name(kind)) {
            out.insert("type".to_owned(), name.into());
        }
        if let Some(values) = listed_values(object) {
            nullable |= values.iter().any(Value::is_null);
            let values: Vec<Value> = values.into_iter().filter(|value| !value.is_null()).collect();
            let strings = values.iter().all(Value::is_string);
            if strings && !values.is_empty() && kind.is_none_or(|kind| kind == "string") {
                out.insert("type".to_owned(), self.type_name("string").into());
                out.insert("enum".to_owned(), Value::Array(values));
                // The value is one of these strings: object, array or number keywords beside
                // the list constrain nothing and must not retype it.
                kind = Some("string");
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
                        Some(branch) if self.is_null_only(&branch) => nullable = true,
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
        Some(self.finish(out, describe(object, notes), nullable))
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
            let kind = target.get("type").and_then(Value::as_str);
            let name = kind.and_then(|kind| self.type_name(kind));
            return Some(name.map(|name| ("type".to_owned(), name.into())).into_iter().collect());
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
            single.remove("default");
            if let Some(branch) = self.node(&Value::Object(single)) {
                branches.push(Value::Object(branch));
            }
        }
        if branches.is_empty() {
            return None;
        }
        let mut out = Map::new();
        merge_union(&mut out, branches);
        Some(self.finish(out, describe(object, Vec::new()), nullable))
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
        let mut lowered = Map::new();
        for (name, property) in properties {
            match self.node(property) {
                Some(property) => {
                    lowered.insert(name.clone(), Value::Object(property));
                }
                // An optional property can simply be left out; a required one cannot.
                None if required.contains(&name.as_str()) => return false,
                None => {}
            }
        }
        let required: Vec<&str> =
            required.into_iter().filter(|name| lowered.contains_key(*name)).collect();
        out.insert("type".to_owned(), self.type_name("object").into());
        out.insert("properties".to_owned(), Value::Object(lowered));
        if !required.is_empty() {
            out.insert("required".to_owned(), required.into());
        }
        true
    }

    /// `items` (a tuple's members as one union), `minItems`, `maxItems`; false when the items
    /// cannot be described.
    fn array_keywords(
        &mut self,
        object: &Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> bool {
        let mut members = Vec::new();
        for prefix in object.get("prefixItems").and_then(Value::as_array).into_iter().flatten() {
            match self.node(prefix) {
                Some(member) => members.push(Value::Object(member)),
                None => return false,
            }
        }
        match object.get("items") {
            Some(items @ Value::Object(_)) => {
                let Some(items) = self.node(items) else { return false };
                members.push(Value::Object(items));
            }
            Some(Value::Bool(false)) | None => {}
            // `items: true` after a tuple: the rest may be anything, and so may the union.
            Some(_) => members.clear(),
        }
        members.dedup();
        if !members.is_empty() {
            let mut items = Map::new();
            merge_union(&mut items, members);
            out.insert("items".to_owned(), Value::Object(items));
        }
        for key in ["minItems", "maxItems"] {
            if let Some(count) = object.get(key).filter(|count| count.is_u64()) {
                out.insert(key.to_owned(), count.clone());
            }
        }
        true
    }

    fn type_name(&self, kind: &str) -> Option<&'static str> {
        let (json, gemini) = TYPES.iter().find(|(json, _)| *json == kind)?;
        Some(match self.dialect {
            Dialect::JsonSchema => json,
            Dialect::Gemini => gemini,
        })
    }

    /// A node that allows only `null`.
    fn null_only(&self) -> Map<String, Value> {
        let (key, value) = match self.dialect {
            Dialect::JsonSchema => ("type", Value::from("null")),
            Dialect::Gemini => ("nullable", Value::Bool(true)),
        };
        Map::from_iter([(key.to_owned(), value)])
    }

    fn is_null_only(&self, node: &Map<String, Value>) -> bool {
        *node == self.null_only()
    }

    /// The node with its description, and `null` allowed as the dialect spells it.
    fn finish(
        &self,
        mut out: Map<String, Value>,
        description: Option<String>,
        nullable: bool,
    ) -> Map<String, Value> {
        if nullable && !out.is_empty() {
            match self.dialect {
                Dialect::Gemini => {
                    out.insert("nullable".to_owned(), true.into());
                }
                Dialect::JsonSchema => {
                    out.remove("description");
                    let null = Value::Object(self.null_only());
                    out = match out.remove("anyOf") {
                        // A union already: `null` is one more branch.
                        Some(Value::Array(mut branches)) if out.is_empty() => {
                            branches.push(null);
                            Map::from_iter([("anyOf".to_owned(), Value::Array(branches))])
                        }
                        branches => {
                            if let Some(branches) = branches {
                                out.insert("anyOf".to_owned(), branches);
                            }
                            let union = vec![Value::Object(out), null];
                            Map::from_iter([("anyOf".to_owned(), Value::Array(union))])
                        }
                    };
                }
            }
        }
        if let Some(description) = description {
            out.insert("description".to_owned(), description.into());
        }
        out
    }
}

/// Whether a node says anything about its value besides `type`.
fn has_constraints(object: &Map<String, Value>) -> bool {
    object.keys().any(|key| !["type", "description", "default"].contains(&key.as_str()))
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

/// The node's description, followed by notes on what the subset could not say: the listed
/// values it could not keep, then its default.
fn describe(object: &Map<String, Value>, mut notes: Vec<String>) -> Option<String> {
    if let Some(default) = object.get("default").filter(|value| !value.is_null()) {
        let shown = default.as_str().map_or_else(|| default.to_string(), str::to_owned);
        notes.push(format!("Default: {shown}."));
    }
    let description = object.get("description").and_then(Value::as_str);
    let mut parts: Vec<&str> = description.into_iter().collect();
    parts.extend(notes.iter().map(String::as_str));
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
pub(crate) mod tests;
