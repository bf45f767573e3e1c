//! Compact input schemas: every token of a tool definition competes with the persona and the
//! dialogue in a realtime model's context, so each tool's source schema (schemars output, or one
//! built from a manifest) is compiled to the smallest schema every stack takes as it is.
//!
//! [`compile`] is the one compiler, in two steps. [`exact`] writes the smallest JSON Schema that
//! accepts the same inputs as the source: it inlines `$ref`s (recursive types stay as `$ref`
//! into a trimmed `$defs`), drops what only humans or tooling read (`$schema`, `$id`, titles,
//! examples, storage formats, `default: null`, the top-level description), turns nullable
//! unions on optional properties into plain optional properties, folds `oneOf`s of constants
//! into one `enum`, and flattens single-branch `allOf`/`anyOf`/`oneOf`. Property descriptions
//! stay as written. [`portable::lower`] then rewrites that into the subset that Gemini, OpenAI
//! (strict or not), google-genai's MCP converter, pipecat, LiveKit and the MCP Inspector all
//! accept; where the subset cannot say something it accepts more, never less, and the server
//! still validates every call against the source schema.

pub mod portable;

use std::collections::{BTreeMap, BTreeSet};

use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Map, Value};

/// The schema of `T` exactly as schemars writes it (what most MCP servers publish).
pub fn source<T: JsonSchema>() -> Map<String, Value> {
    let schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Object(root) => root,
        // Input types are structs by construction; a non-object root is a programming error.
        other => panic!("tool input schema must be an object, got {other}"),
    }
}

/// What models see in `tools/list` and the OpenAI Realtime export: the [`exact`] form lowered
/// into the portable subset. Always an object schema (`{"type": "object"}` at the least).
pub fn compile(source: &Map<String, Value>) -> Map<String, Value> {
    let mut compiled =
        portable::lower(&exact(source), portable::Dialect::JsonSchema).unwrap_or_default();
    // Lowering may turn a root keyword the subset lacks (an `enum` of non-strings) into prose;
    // at the root that prose only costs tokens, as `exact` already decided for descriptions,
    // and keeping it would make compiling the output again change it.
    compiled.remove("description");
    // MCP requires `"type": "object"` at the root, and arguments are always an object.
    compiled.insert("type".to_owned(), "object".into());
    compiled
}

/// The smallest JSON Schema that accepts exactly what `source` accepts (but `null` for a
/// property that may be left out).
pub fn exact(source: &Map<String, Value>) -> Map<String, Value> {
    let root = Value::Object(source.clone());
    let mut compiler = Compiler::new(&root);
    let mut compiled = match compiler.schema(&root, 0) {
        Value::Object(compiled) => compiled,
        // `true` (anything) or `false` (nothing); tool arguments are an object either way.
        Value::Bool(true) => Map::new(),
        other => Map::from_iter([("allOf".to_owned(), Value::Array(vec![other]))]),
    };
    // The tool's own description says what it does; a second one at the root only costs tokens.
    compiled.remove("description");
    if !compiled.contains_key("type") && !compiled.contains_key("$ref") {
        // MCP requires `"type": "object"` at the root, and arguments are always an object.
        compiled.insert("type".to_owned(), "object".into());
    }
    let mut defs = compiler.kept_definitions();
    if compiler.unresolved {
        // A reference we could not follow may point into these; keep them as written.
        for key in ["$id", "definitions"] {
            if let Some(value) = source.get(key) {
                compiled.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(Value::Object(written)) = source.get("$defs") {
            for (name, definition) in written {
                defs.entry(name.clone()).or_insert_with(|| definition.clone());
            }
        }
    }
    if !defs.is_empty() {
        compiled.insert("$defs".to_owned(), Value::Object(defs));
    }
    compiled
}

/// Guards against pathological (non-recursive but deeply nested) reference chains; recursive
/// types never get this far because they are kept as references.
const MAX_INLINE_DEPTH: usize = 32;

/// String formats kept because they tell a model how to write the value. Other formats are
/// dropped: schemars puts a storage width (`int32`, `uint64`, `double`) on every number, which a
/// model cannot act on, and `minimum`/`maximum` already carry the bounds that matter. `format` is
/// an annotation in 2020-12, so dropping it never changes which inputs are valid.
const MODEL_FORMATS: &[&str] = &["date-time", "date", "time", "duration", "email", "uri", "uuid"];

/// Metadata for humans and tooling; `$defs`/`definitions` are rebuilt from what is still used.
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// Keywords that never change which inputs are valid: on a merge the outer value wins.
const ANNOTATIONS: &[&str] =
    &["description", "default", "deprecated", "title", "examples", "$comment", "format"];

/// Keywords whose value is one subschema (or, for draft-07 `items`, an array of them).
const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];

/// Keywords whose value is an array of subschemas.
const SCHEMA_LIST_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value maps names to subschemas (`properties` is handled on its own).
const SCHEMA_MAP_KEYWORDS: &[&str] = &["patternProperties", "dependentSchemas"];

/// Keywords that read their siblings: two schemas touching the same group cannot be merged
/// into one object without changing what they accept.
const SIBLING_GROUPS: &[&[&str]] = &[
    &["properties", "patternProperties", "additionalProperties", "unevaluatedProperties"],
    &["prefixItems", "items", "additionalItems", "unevaluatedItems", "contains"],
    &["contains", "minContains", "maxContains"],
    &["if", "then", "else"],
];

/// Walks one source document; `root` is what `#` means.
struct Compiler<'a> {
    root: &'a Value,
    /// JSON pointers of schemas that reach themselves through references: kept as `$ref`.
    recursive: BTreeSet<String>,
    /// Pointer → name under the output's `$defs`, for every reference left in the output.
    kept: BTreeMap<String, String>,
    /// A reference was not a JSON pointer into this document (or pointed nowhere).
    unresolved: bool,
}

impl<'a> Compiler<'a> {
    fn new(root: &'a Value) -> Compiler<'a> {
        Compiler {
            root,
            recursive: recursive_pointers(root),
            kept: BTreeMap::new(),
            unresolved: false,
        }
    }

    fn schema(&mut self, value: &Value, depth: usize) -> Value {
        let Value::Object(object) = value else {
            return value.clone();
        };
        let mut out = Map::new();
        for (key, value) in object {
            let key_str = key.as_str();
            match key_str {
                "$ref" => {}
                _ if DROPPED.contains(&key_str) => {}
                "description" => {
                    if value.as_str().is_some_and(|text| !text.is_empty()) {
                        out.insert(key.clone(), value.clone());
                    }
                }
                "format" => {
                    if value.as_str().is_some_and(|format| MODEL_FORMATS.contains(&format)) {
                        out.insert(key.clone(), value.clone());
                    }
                }
                "default" => {
                    if informative_default(value) {
                        out.insert(key.clone(), value.clone());
                    }
                }
                "properties" => {
                    out.insert(key.clone(), self.properties(object, value, depth));
                }
                "dependencies" => {
                    // Draft-07: each value is a schema or a list of property names.
                    out.insert(key.clone(), self.map_of(value, depth, Value::is_array));
                }
                _ if SCHEMA_KEYWORDS.contains(&key_str) => {
                    let compiled = match value {
                        Value::Array(items) => Value::Array(
                            items.iter().map(|item| self.schema(item, depth)).collect(),
                        ),
                        other => self.schema(other, depth),
                    };
                    out.insert(key.clone(), compiled);
                }
                _ if SCHEMA_LIST_KEYWORDS.contains(&key_str) => {
                    let compiled = match value {
                        Value::Array(items) => Value::Array(
                            items.iter().map(|item| self.schema(item, depth)).collect(),
                        ),
                        other => other.clone(),
                    };
                    out.insert(key.clone(), compiled);
                }
                _ if SCHEMA_MAP_KEYWORDS.contains(&key_str) => {
                    out.insert(key.clone(), self.map_of(value, depth, |_| false));
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(Value::String(reference)) = object.get("$ref") {
            self.reference(&mut out, reference, depth);
        } else if let Some(reference) = object.get("$ref") {
            out.insert("$ref".to_owned(), reference.clone());
        }
        simplify(&mut out);
        Value::Object(out)
    }

    /// Each property compiled; a property that may be left out loses its `null` alternative.
    fn properties(&mut self, object: &Map<String, Value>, value: &Value, depth: usize) -> Value {
        let Value::Object(properties) = value else {
            return value.clone();
        };
        let required: BTreeSet<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let compiled = properties.iter().map(|(name, property)| {
            let mut property = self.schema(property, depth);
            if !required.contains(name.as_str()) {
                strip_null(&mut property);
            }
            (name.clone(), property)
        });
        Value::Object(compiled.collect())
    }

    /// A map of subschemas; values for which `verbatim` holds are copied as they are.
    fn map_of(&mut self, value: &Value, depth: usize, verbatim: fn(&Value) -> bool) -> Value {
        let Value::Object(map) = value else {
            return value.clone();
        };
        let compiled = map.iter().map(|(name, entry)| {
            let entry = if verbatim(entry) { entry.clone() } else { self.schema(entry, depth) };
            (name.clone(), entry)
        });
        Value::Object(compiled.collect())
    }

    /// Inlines the referenced schema into `out` (the referring schema's other keywords), or
    /// keeps the reference when the target is recursive or cannot be followed.
    fn reference(&mut self, out: &mut Map<String, Value>, reference: &str, depth: usize) {
        let target = pointer_of(reference)
            .and_then(|pointer| self.root.pointer(&pointer).map(|target| (pointer, target)));
        let Some((pointer, target)) = target else {
            self.unresolved = true;
            out.insert("$ref".to_owned(), reference.into());
            return;
        };
        if self.recursive.contains(&pointer) || depth >= MAX_INLINE_DEPTH {
            let kept = self.keep(pointer);
            out.insert("$ref".to_owned(), kept.into());
            return;
        }
        let inlined = self.schema(target, depth + 1);
        absorb(out, inlined);
    }

    /// The compiled targets of the references left in the output, by their `$defs` name.
    fn kept_definitions(&mut self) -> Map<String, Value> {
        let mut definitions = Map::new();
        loop {
            // Compiling one kept target can keep references to others.
            let pending: Vec<(String, String)> = self
                .kept
                .iter()
                .filter(|(_, name)| !definitions.contains_key(*name))
                .map(|(pointer, name)| (pointer.clone(), name.clone()))
                .collect();
            if pending.is_empty() {
                return definitions;
            }
            for (pointer, name) in pending {
                let target = self.root.pointer(&pointer).cloned().unwrap_or(Value::Bool(true));
                let compiled = self.schema(&target, 0);
                definitions.insert(name, compiled);
            }
        }
    }

    /// The output reference for a kept target: `#` for the root, else `#/$defs/<name>`.
    fn keep(&mut self, pointer: String) -> String {
        if pointer.is_empty() {
            return "#".to_owned();
        }
        if let Some(name) = self.kept.get(&pointer) {
            return format!("#/$defs/{name}");
        }
        let segments: Vec<&str> = pointer.split('/').skip(1).collect();
        let base = match segments.as_slice() {
            ["$defs" | "definitions", name] => (*name).to_owned(),
            _ => segments.join("_"),
        };
        // Plain names need no escaping in a JSON pointer or a URI fragment.
        let base: String = base
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' })
            .collect();
        let taken: BTreeSet<&String> = self.kept.values().collect();
        let mut name = base.clone();
        let mut suffix = 2;
        while taken.contains(&name) {
            name = format!("{base}_{suffix}");
            suffix += 1;
        }
        self.kept.insert(pointer, name.clone());
        format!("#/$defs/{name}")
    }
}

/// Defaults worth their tokens: a non-zero scalar says what leaving the argument out means.
/// `null`, `false`, `0` and `""` are what a model assumes of an omitted argument anyway, and
/// object or array defaults (from `#[serde(default)]` on a struct) are long and rarely read.
fn informative_default(value: &Value) -> bool {
    match value {
        Value::String(text) => !text.is_empty(),
        Value::Number(number) => number.as_f64() != Some(0.0),
        Value::Bool(flag) => *flag,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// The JSON pointer a local reference names (`#` → ``, `#/$defs/A` → `/$defs/A`), or `None` for
/// anchors and references to other documents.
fn pointer_of(reference: &str) -> Option<String> {
    let fragment = reference.strip_prefix('#')?;
    if !fragment.is_empty() && !fragment.starts_with('/') {
        return None;
    }
    percent_decode(fragment)
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let [first, tail @ ..] = rest {
        if *first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(*first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Pointers (reachable from the root) whose schema refers back to itself, directly or not.
fn recursive_pointers(root: &Value) -> BTreeSet<String> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(pointer) = todo.pop() {
        if edges.contains_key(&pointer) {
            continue;
        }
        let mut found = BTreeSet::new();
        if let Some(target) = root.pointer(&pointer) {
            references_in(root, target, &mut found);
        }
        todo.extend(found.iter().cloned());
        edges.insert(pointer, found);
    }
    let reaches_itself = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = edges[start].iter().collect();
        while let Some(next) = stack.pop() {
            if next == start {
                return true;
            }
            if seen.insert(next) {
                stack.extend(edges.get(next).into_iter().flatten());
            }
        }
        false
    };
    edges.keys().filter(|pointer| reaches_itself(pointer)).cloned().collect()
}

/// The resolvable local references used by `schema` (not descending into `$defs`, which only
/// matter through a reference).
fn references_in(root: &Value, schema: &Value, found: &mut BTreeSet<String>) {
    let Value::Object(object) = schema else { return };
    if let Some(pointer) = object.get("$ref").and_then(Value::as_str).and_then(pointer_of)
        && root.pointer(&pointer).is_some()
    {
        found.insert(pointer);
    }
    for (key, value) in object {
        let key = key.as_str();
        let is_map =
            key == "properties" || key == "dependencies" || SCHEMA_MAP_KEYWORDS.contains(&key);
        if SCHEMA_KEYWORDS.contains(&key) || SCHEMA_LIST_KEYWORDS.contains(&key) {
            match value {
                Value::Array(items) => {
                    items.iter().for_each(|item| references_in(root, item, found))
                }
                other => references_in(root, other, found),
            }
        } else if is_map && let Value::Object(map) = value {
            map.values().for_each(|entry| references_in(root, entry, found));
        }
    }
}

/// Merges `child` into `parent` when the result accepts exactly what both did together;
/// otherwise keeps it beside the parent's keywords as an `allOf` branch.
fn absorb(parent: &mut Map<String, Value>, child: Value) {
    match child {
        Value::Bool(true) => {}
        Value::Object(child) if can_merge(parent, &child) => {
            for (key, value) in child {
                // On annotation clashes the outer schema wins: a property's own description is
                // more specific than its type's.
                parent.entry(key).or_insert(value);
            }
        }
        other => match parent.get_mut("allOf") {
            Some(Value::Array(branches)) => branches.push(other),
            _ => {
                parent.insert("allOf".to_owned(), Value::Array(vec![other]));
            }
        },
    }
}

fn can_merge(parent: &Map<String, Value>, child: &Map<String, Value>) -> bool {
    let clash = child.iter().any(|(key, value)| {
        parent.get(key).is_some_and(|outer| outer != value && !ANNOTATIONS.contains(&key.as_str()))
    });
    let touches = |schema: &Map<String, Value>, group: &[&str]| {
        group.iter().any(|key| schema.contains_key(*key))
    };
    // `unevaluated*` see through applicators, so merging changes what they see.
    let unevaluated = |schema: &Map<String, Value>| {
        touches(schema, &["unevaluatedProperties", "unevaluatedItems"])
    };
    !clash
        && !unevaluated(parent)
        && !unevaluated(child)
        && !SIBLING_GROUPS.iter().any(|group| touches(parent, group) && touches(child, group))
}

/// Local clean-ups once a schema's subschemas are compiled.
fn simplify(object: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = object.get_mut("type") {
        let mut seen = BTreeSet::new();
        types.retain(|kind| seen.insert(kind.to_string()));
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".to_owned(), only);
        }
    }
    if object.get("required").and_then(Value::as_array).is_some_and(Vec::is_empty) {
        object.remove("required");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(key) {
            fold_constants(branches, key == "oneOf");
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let single = object.get(key).and_then(Value::as_array).is_some_and(|b| b.len() == 1);
        let merge_all = key == "allOf";
        if !(single || merge_all) {
            continue;
        }
        let Some(Value::Array(branches)) = object.remove(key) else { continue };
        // Every `allOf` branch must hold, as must a lone `anyOf`/`oneOf` branch: each can be
        // merged into the parent when nothing clashes, and stays an `allOf` branch otherwise.
        for branch in branches {
            absorb(object, branch);
        }
    }
}

/// Replaces the branches that only list values (`const` or `enum`, as schemars writes enums
/// with documented variants) by one `enum` branch. Per-variant descriptions are dropped: the
/// variant names are the words the model says, and the property's own description is where
/// their meaning is explained for models; variant docs are usually written for Rust readers.
fn fold_constants(branches: &mut Vec<Value>, exclusive: bool) {
    let lists: Vec<(usize, Vec<Value>)> = branches
        .iter()
        .enumerate()
        .filter_map(|(index, branch)| values_only(branch).map(|values| (index, values)))
        .collect();
    if lists.len() < 2 {
        return;
    }
    let mut values: Vec<Value> = Vec::new();
    for (_, list) in &lists {
        for value in list {
            if values.contains(value) {
                // `oneOf` rejects a value listed twice; one `enum` would accept it.
                if exclusive {
                    return;
                }
            } else {
                values.push(value.clone());
            }
        }
    }
    let mut merged = Map::new();
    if let Some(kind) = common_type(&values) {
        merged.insert("type".to_owned(), kind);
    }
    merged.insert("enum".to_owned(), Value::Array(values));
    let first = lists[0].0;
    let mut index = 0;
    branches.retain(|_| {
        let keep = index == first || !lists.iter().any(|(listed, _)| *listed == index);
        index += 1;
        keep
    });
    branches[first] = Value::Object(merged);
}

/// The values a branch allows when it is nothing but a list of them.
fn values_only(branch: &Value) -> Option<Vec<Value>> {
    let object = branch.as_object()?;
    let allowed = ["const", "enum", "type"];
    if object
        .keys()
        .any(|key| !allowed.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()))
    {
        return None;
    }
    let values = match (object.get("const"), object.get("enum")) {
        (Some(value), None) => vec![value.clone()],
        (None, Some(Value::Array(values))) => values.clone(),
        _ => return None,
    };
    // A `type` that rules some of them out would be lost in the merge.
    let conforms = match object.get("type") {
        None => true,
        Some(Value::String(kind)) => values.iter().all(|value| is_of_type(value, kind)),
        Some(_) => false,
    };
    conforms.then_some(values)
}

fn is_of_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// The JSON type all `values` share, `[T, "null"]` when some are null, or `None` when mixed.
fn common_type(values: &[Value]) -> Option<Value> {
    let mut kinds = BTreeSet::new();
    for value in values {
        kinds.insert(match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) if is_of_type(value, "integer") => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        });
    }
    if kinds.contains("number") {
        kinds.remove("integer");
    }
    let nullable = kinds.remove("null");
    let mut kinds = kinds.into_iter();
    match (kinds.next(), kinds.next(), nullable) {
        (Some(kind), None, false) => Some(kind.into()),
        (Some(kind), None, true) => Some(Value::Array(vec![kind.into(), "null".into()])),
        _ => None,
    }
}

/// Makes an optional property's schema reject `null`: leaving the property out says the same
/// thing in fewer tokens. Handles `type: [T, "null"]`, `null` in an `enum`, and `anyOf`/`oneOf`
/// with a null branch (schemars' `Option<T>` for a referenced `T`).
fn strip_null(schema: &mut Value) {
    let Value::Object(object) = schema else { return };
    if let Some(Value::Array(types)) = object.get_mut("type")
        && types.iter().any(|kind| kind != "null")
    {
        types.retain(|kind| kind != "null");
    }
    if let Some(Value::Array(values)) = object.get_mut("enum")
        && values.iter().any(|value| !value.is_null())
    {
        values.retain(|value| !value.is_null());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(key)
            && branches.iter().any(|branch| !allows_only_null(branch))
        {
            branches.retain(|branch| !allows_only_null(branch));
        }
    }
    simplify(object);
}

fn allows_only_null(schema: &Value) -> bool {
    let Some(object) = schema.as_object() else { return false };
    let type_null = match object.get("type") {
        Some(Value::String(kind)) => kind == "null",
        Some(Value::Array(kinds)) => kinds.iter().all(|kind| kind == "null"),
        _ => false,
    };
    let const_null = object.get("const").is_some_and(Value::is_null);
    let enum_null = object
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_null));
    type_null || const_null || enum_null
}

#[cfg(test)]
mod tests;
