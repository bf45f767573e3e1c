//! `tools export`: tool definitions in the exact shapes realtime platforms take, so an app can
//! paste them into its session set-up instead of going through MCP at runtime.
//!
//! - `openai-realtime`: the `session.tools` array of a Realtime `session.update` (flat
//!   function tools: `{"type":"function","name","description","parameters"}`).
//! - `gemini-live`: the `tools` value of a Live API setup message,
//!   `[{"functionDeclarations":[{"name","description","behavior","parameters"}]}]`, with
//!   parameters in Gemini's `Schema` spelling of the portable subset
//!   ([`portable::Dialect::Gemini`]). Job tools are `NON_BLOCKING` (their placeholder answers
//!   the call at once, and the finished job's `toolResponse` arrives later, scheduled by the
//!   delivery hint); inline tools are `BLOCKING`, which Gemini 3.8 no longer assumes.
//! - `mcp`: `{"tools":[…]}` as in a `tools/list` result, without the paging and cache fields.
//!
//! All three start from the compact schema, never the source one.

use std::{fmt, str::FromStr};

use serde_json::{Map, Value, json};

use super::schema::portable::{self, Dialect};
use crate::tools::{Annotations, Mode, ToolDefinition};

/// A target platform for [`export`]; parses from `openai-realtime`, `gemini-live` or `mcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    OpenAiRealtime,
    GeminiLive,
    Mcp,
}

/// A format name that is not one of [`ExportFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}; use openai-realtime, gemini-live or mcp")]
pub struct ExportFormatError(pub String);

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] =
        [ExportFormat::OpenAiRealtime, ExportFormat::GeminiLive, ExportFormat::Mcp];

    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::OpenAiRealtime => "openai-realtime",
            ExportFormat::GeminiLive => "gemini-live",
            ExportFormat::Mcp => "mcp",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = ExportFormatError;

    fn from_str(name: &str) -> Result<ExportFormat, ExportFormatError> {
        ExportFormat::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| ExportFormatError(name.to_owned()))
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `tools` in `format`, ready to serialize.
pub fn export(tools: &[ToolDefinition], format: ExportFormat) -> Value {
    match format {
        ExportFormat::OpenAiRealtime => tools.iter().map(openai_realtime_tool).collect(),
        ExportFormat::GeminiLive => {
            let declarations: Vec<Value> = tools.iter().map(gemini_function_declaration).collect();
            json!([{ "functionDeclarations": declarations }])
        }
        ExportFormat::Mcp => {
            json!({ "tools": tools.iter().map(mcp_tool).collect::<Vec<_>>() })
        }
    }
}

/// One Realtime function tool. The compact schema is valid as `parameters` as it is.
pub fn openai_realtime_tool(definition: &ToolDefinition) -> Value {
    json!({
        "type": "function",
        "name": &*definition.name,
        "description": &*definition.description,
        "parameters": &*definition.input_schema,
    })
}

/// One Gemini `FunctionDeclaration`. A tool without arguments leaves `parameters` unset, as
/// Google's `FunctionDeclaration` reference asks.
pub fn gemini_function_declaration(definition: &ToolDefinition) -> Value {
    let mut declaration = Map::new();
    declaration.insert("name".to_owned(), definition.name.as_ref().into());
    declaration.insert("description".to_owned(), definition.description.as_ref().into());
    declaration.insert("behavior".to_owned(), gemini_behavior(definition.mode).into());
    let parameters = portable::lower(&definition.input_schema, Dialect::Gemini);
    let has_arguments = parameters
        .as_ref()
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object)
        .is_some_and(|properties| !properties.is_empty());
    if let (Some(parameters), true) = (parameters, has_arguments) {
        declaration.insert("parameters".to_owned(), Value::Object(parameters));
    }
    Value::Object(declaration)
}

/// Gemini's `Behavior` for a tool: whether the model keeps talking while the call is open.
pub fn gemini_behavior(mode: Mode) -> &'static str {
    match mode {
        Mode::Job => "NON_BLOCKING",
        Mode::Inline { .. } => "BLOCKING",
    }
}

/// One tool as `tools/list` shows it (the same shape `mcp::convert::tool` builds).
pub fn mcp_tool(definition: &ToolDefinition) -> Value {
    json!({
        "name": &*definition.name,
        "description": &*definition.description,
        "inputSchema": &*definition.input_schema,
        "annotations": mcp_annotations(&definition.annotations),
    })
}

/// MCP tool annotations. Destructive and idempotent hints only mean something for tools that
/// write, so read-only tools leave them out.
pub fn mcp_annotations(annotations: &Annotations) -> Value {
    let mut hints = Map::new();
    hints.insert("readOnlyHint".to_owned(), annotations.read_only.into());
    if !annotations.read_only {
        hints.insert("destructiveHint".to_owned(), annotations.destructive.into());
        hints.insert("idempotentHint".to_owned(), annotations.idempotent.into());
    }
    hints.insert("openWorldHint".to_owned(), annotations.open_world.into());
    Value::Object(hints)
}

#[cfg(test)]
mod tests;
