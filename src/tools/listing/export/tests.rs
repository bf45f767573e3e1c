//! Tests for `tools export`: each format's exact output for a small tool set, and validators for
//! the documented shape rules run over every kind of schema the compiler writes.

use std::{collections::BTreeSet, time::Duration};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::tools::{
    Mode,
    listing::{
        schema::portable::tests::{Browse, assert_subset},
        tokens::tests::builtin,
    },
};

const READ_ONLY: Annotations =
    Annotations { read_only: true, destructive: false, idempotent: true, open_world: true };
const WRITES: Annotations =
    Annotations { read_only: false, destructive: false, idempotent: false, open_world: false };

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum Unit {
    /// Degrees Celsius.
    Celsius,
    /// Degrees Fahrenheit.
    Fahrenheit,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct WeatherInput {
    /// City name, e.g. "Lisbon".
    city: String,
    unit: Option<Unit>,
    #[schemars(range(min = 1, max = 7))]
    days: Option<u8>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct NoArguments {}

fn weather() -> ToolDefinition {
    ToolDefinition::typed::<WeatherInput>(
        "get_weather",
        "Tell the weather. Use when the user asks about the weather.",
        READ_ONLY,
        Mode::Inline { within: Duration::from_secs(2) },
    )
}

fn clock() -> ToolDefinition {
    ToolDefinition::typed::<NoArguments>(
        "get_time",
        "Tell the time. Use when the user asks what time it is.",
        WRITES,
        Mode::Inline { within: Duration::from_secs(1) },
    )
}

fn definition(name: &str, source: Value) -> ToolDefinition {
    ToolDefinition::from_source(
        name,
        "Test tool. Use when testing.",
        source.as_object().cloned().unwrap(),
        WRITES,
        Mode::Job,
    )
}

#[test]
fn format_names_parse_and_print() {
    for format in ExportFormat::ALL {
        assert_eq!(format.as_str().parse::<ExportFormat>(), Ok(format));
        assert_eq!(format.to_string(), format.as_str());
    }
    assert_eq!("Gemini-Live".parse(), Ok(ExportFormat::GeminiLive));
    let error = "openai".parse::<ExportFormat>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown export format \"openai\"; use openai-realtime, gemini-live or mcp"
    );
}

#[test]
fn openai_realtime_is_a_flat_session_tools_array() {
    assert_eq!(
        export(&[weather(), clock()], ExportFormat::OpenAiRealtime),
        json!([
            {
                "type": "function",
                "name": "get_weather",
                "description": "Tell the weather. Use when the user asks about the weather.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name, e.g. \"Lisbon\"."},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        "days": {"type": "integer", "minimum": 1, "maximum": 7}
                    },
                    "required": ["city"]
                }
            },
            {
                "type": "function",
                "name": "get_time",
                "description": "Tell the time. Use when the user asks what time it is.",
                "parameters": {"type": "object"}
            }
        ])
    );
}

#[test]
fn gemini_live_is_one_tool_of_function_declarations_with_upper_case_types() {
    assert_eq!(
        export(&[weather(), clock()], ExportFormat::GeminiLive),
        json!([{
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Tell the weather. Use when the user asks about the weather.",
                    "behavior": "BLOCKING",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING", "description": "City name, e.g. \"Lisbon\"."},
                            "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]},
                            "days": {"type": "INTEGER", "minimum": 1, "maximum": 7}
                        },
                        "required": ["city"]
                    }
                },
                {
                    "name": "get_time",
                    "description": "Tell the time. Use when the user asks what time it is.",
                    "behavior": "BLOCKING"
                }
            ]
        }])
    );
}

#[test]
fn gemini_job_tools_are_non_blocking_and_inline_tools_blocking() {
    let tools = builtin();
    let declarations = export(&tools, ExportFormat::GeminiLive)[0]["functionDeclarations"].clone();
    for (definition, declaration) in tools.iter().zip(declarations.as_array().unwrap()) {
        assert_eq!(declaration["name"], *definition.name);
        let expected = match definition.mode {
            Mode::Job => "NON_BLOCKING",
            Mode::Inline { .. } => "BLOCKING",
        };
        assert_eq!(declaration["behavior"], expected, "{declaration}");
    }
    let behaviors: BTreeSet<&str> =
        declarations.as_array().unwrap().iter().filter_map(|d| d["behavior"].as_str()).collect();
    assert_eq!(behaviors.len(), 2, "the built-in tools have both kinds: {declarations}");
}

#[test]
fn mcp_is_a_tools_list_result_with_the_read_only_rule() {
    assert_eq!(
        export(&[weather(), clock()], ExportFormat::Mcp),
        json!({
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Tell the weather. Use when the user asks about the weather.",
                    "inputSchema": *weather().input_schema,
                    "annotations": {"readOnlyHint": true, "openWorldHint": true}
                },
                {
                    "name": "get_time",
                    "description": "Tell the time. Use when the user asks what time it is.",
                    "inputSchema": {"type": "object"},
                    "annotations": {
                        "readOnlyHint": false,
                        "destructiveHint": false,
                        "idempotentHint": false,
                        "openWorldHint": false
                    }
                }
            ]
        })
    );
}

#[test]
fn mcp_export_matches_what_the_server_lists() {
    // The server's own conversion is the reference; this catches the two drifting apart.
    for annotations in [READ_ONLY, WRITES] {
        for mut definition in builtin().into_iter().chain([weather(), clock()]) {
            definition.annotations = annotations;
            let listed = serde_json::to_value(crate::mcp::convert::tool(&definition)).unwrap();
            assert_eq!(mcp_tool(&definition), listed);
        }
    }
}

fn assert_gemini(schema: &Value) {
    assert_subset(schema, Dialect::Gemini);
}

/// Every kind of schema the compiler writes, as tools.
fn varied_tools() -> Vec<ToolDefinition> {
    let mut tools = builtin().to_vec();
    tools.extend([weather(), clock()]);
    tools.push(ToolDefinition::typed::<Browse>("browse_files", "Use when.", WRITES, Mode::Job));
    tools.push(definition(
        "mixed_bag",
        json!({
            "type": "object",
            "properties": {
                "level": {"type": "integer", "enum": [1, 2, 3]},
                "kind": {"oneOf": [{"const": "a"}, {"const": "b", "description": "B."}]},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}], "items": false},
                "any": true,
                "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                "list": {"type": "array", "items": {"type": ["string", "null"]}, "maxItems": 3},
                "deep": {"$ref": "#/$defs/Deep"}
            },
            "$defs": {"Deep": {"type": "object", "properties": {"x": {"type": "number"}}}}
        }),
    ));
    tools
}

#[test]
fn every_export_keeps_the_documented_shapes() {
    let tools = varied_tools();
    let openai = export(&tools, ExportFormat::OpenAiRealtime);
    for tool in openai.as_array().unwrap() {
        check_openai_tool(tool);
    }
    let gemini = export(&tools, ExportFormat::GeminiLive);
    let [holder] = gemini.as_array().unwrap().as_slice() else { panic!("one tool: {gemini}") };
    assert_eq!(holder.as_object().unwrap().keys().collect::<Vec<_>>(), ["functionDeclarations"]);
    for declaration in holder["functionDeclarations"].as_array().unwrap() {
        check_gemini_declaration(declaration);
    }
    let mcp = export(&tools, ExportFormat::Mcp);
    for tool in mcp["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(tool["annotations"]["readOnlyHint"].is_boolean(), "{tool}");
    }
}

/// Realtime function tools: exactly these four keys, a function name, an object schema.
fn check_openai_tool(tool: &Value) {
    let keys: Vec<&String> = tool.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["description", "name", "parameters", "type"], "{tool}");
    assert_eq!(tool["type"], "function");
    let name = tool["name"].as_str().unwrap();
    assert!(
        (1..=64).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{name}"
    );
    assert_eq!(tool["parameters"]["type"], "object", "{tool}");
}

/// Gemini declarations: a valid name and parameters using only the `Schema` subset.
fn check_gemini_declaration(declaration: &Value) {
    let object = declaration.as_object().unwrap();
    let keys = ["name", "description", "behavior", "parameters"];
    assert!(object.keys().all(|key| keys.contains(&key.as_str())));
    assert!(["BLOCKING", "NON_BLOCKING"].contains(&object["behavior"].as_str().unwrap()));
    let name = object["name"].as_str().unwrap();
    let first = name.chars().next().unwrap();
    assert!(first.is_ascii_alphabetic() || first == '_', "{name}");
    assert!(
        name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    );
    if let Some(parameters) = object.get("parameters") {
        assert_eq!(parameters["type"], "OBJECT", "{declaration}");
        assert_gemini(parameters);
    }
}
