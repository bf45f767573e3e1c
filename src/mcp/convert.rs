//! Domain ⇄ rmcp types: tool definitions, tool results and errors, job resources.
//! The one place where MCP wire shapes are decided.

use rmcp::model::{
    CacheScope, CallToolResult, ContentBlock, ReadResourceResult, ResourceContents,
    ResourceTemplate, Tool, ToolAnnotations,
};
use serde_json::json;

use crate::tools::{JobView, ToolDefinition, ToolError, ToolOutput, view::RESOURCE_PREFIX};

/// `tools/list` may be cached this long: tools change only when `tools/` is reloaded, which
/// notifies every listening client; the others see the change within this time.
pub(crate) const TOOLS_TTL_MS: u64 = 60_000;

pub(crate) fn tool(definition: &ToolDefinition) -> Tool {
    let hints = definition.annotations;
    // Destructive and idempotent hints only mean something for tools that write; leaving them
    // out of read-only tools saves tokens without losing information.
    let writes = !hints.read_only;
    let annotations = ToolAnnotations::from_raw(
        None,
        Some(hints.read_only),
        writes.then_some(hints.destructive),
        writes.then_some(hints.idempotent),
        Some(hints.open_world),
    );
    let mut tool = Tool::default();
    tool.name = definition.name.to_string().into();
    tool.description = Some(definition.description.to_string().into());
    tool.input_schema = definition.input_schema.clone();
    tool.annotations = Some(annotations);
    tool
}

/// A tool's result as MCP content. `earlier` are one-line announcements of jobs that finished
/// meanwhile in this conversation; they lead the text, so the model reads them first.
pub(crate) fn call_result(
    result: Result<ToolOutput, ToolError>,
    tool: &str,
    earlier: &[String],
) -> CallToolResult {
    let lead = |text: String| {
        if earlier.is_empty() { text } else { format!("{}\n{text}", earlier.join("\n")) }
    };
    match result {
        Ok(output) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(lead(output.text))]);
            result.structured_content = Some(output.structured);
            result
        }
        Err(error) => {
            if let ToolError::Internal(detail) = &error {
                tracing::error!(tool, detail = %detail, "tool failed");
            }
            let mut result =
                CallToolResult::error(vec![ContentBlock::text(lead(error.to_string()))]);
            // Informative errors stop models from blind retry sweeps: say whether and when.
            let mut body = json!({
                "code": error.code(),
                "message": error.to_string(),
                "retryable": error.retryable(),
            });
            if let Some(after) = error.retry_after() {
                body["retry_after_s"] = json!(after.as_secs());
            }
            result.structured_content = Some(json!({ "error": body }));
            result
        }
    }
}

/// A failure of ours (the store), answered as an opaque internal error and logged here.
pub(crate) fn internal(error: impl std::fmt::Display) -> rmcp::ErrorData {
    tracing::error!(%error, "request failed");
    rmcp::ErrorData::internal_error("internal error", None)
}

pub(crate) fn job_template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{RESOURCE_PREFIX}{{job_id}}"), "job")
        .with_description("A background job: status, image_url and error, as JSON.")
        .with_mime_type("application/json")
}

pub(crate) fn job_resource(uri: &str, view: &JobView) -> ReadResourceResult {
    let text = serde_json::to_string(view).unwrap_or_default();
    let contents = ResourceContents::text(text, uri).with_mime_type("application/json");
    // A job changes under the reader's feet: never cache it, and only for its owner.
    ReadResourceResult::new(vec![contents]).with_ttl_ms(0).with_cache_scope(CacheScope::Private)
}
