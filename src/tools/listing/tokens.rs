//! Token counts of tool definitions as a realtime model receives them, with the o200k tokenizer
//! (the GPT-4o family's, which OpenAI's realtime models share; Gemini's tokenizer differs, so
//! for Gemini the counts are a close yardstick rather than exact).
//!
//! What is counted: the tool's name, description and parameters, serialized as compact JSON in
//! the OpenAI Realtime function form `{"name","description","parameters"}`. MCP annotations are
//! not counted: realtime models never see them (OpenAI Realtime and Gemini Live take name,
//! description and parameters; annotations only steer the client's approval UI). Neither is the
//! `"type":"function"` envelope or any vendor framing: both are fixed per tool, unpublished and
//! outside our control, so leaving them out keeps counts comparable between tools.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use tiktoken_rs::CoreBPE;

use crate::tools::ToolDefinition;

/// Loading the ranks takes about 100 ms, so it happens once, on first use.
static O200K: LazyLock<CoreBPE> = LazyLock::new(|| {
    tiktoken_rs::o200k_base().expect("the o200k_base ranks are embedded in tiktoken-rs")
});

/// Tokens in `text` (special-token markers in it count as plain text).
pub fn count(text: &str) -> usize {
    O200K.encode_ordinary(text).len()
}

/// Tokens the model spends on `definition`: name, description and the compact schema.
pub fn of_definition(definition: &ToolDefinition) -> usize {
    count_tool(definition, &definition.input_schema)
}

/// The same tool with its schema as written (before [`super::schema::compile`]), for showing
/// what compaction saves.
pub fn of_source(definition: &ToolDefinition) -> usize {
    count_tool(definition, &definition.source_schema)
}

fn count_tool(definition: &ToolDefinition, parameters: &Map<String, Value>) -> usize {
    let tool = json!({
        "name": &*definition.name,
        "description": &*definition.description,
        "parameters": parameters,
    });
    count(&tool.to_string())
}

#[cfg(test)]
pub(in crate::tools) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tools::{
        Annotations, Mode,
        builtin::{cancel_job, edit_image, generate_image, job_status},
        listing::schema::compile,
    };

    #[test]
    fn counts_match_the_o200k_tokenizer() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        // Marker text in a description is just text, never a control token.
        assert!(count("<|endoftext|>") > 1);
    }

    #[test]
    fn counts_name_description_and_compact_parameters_only() {
        let definition = ToolDefinition::from_source(
            "get_weather",
            "Tell the weather. Use when the user asks about the weather.",
            json!({"type": "object", "properties": {"city": {"type": "string"}}})
                .as_object()
                .cloned()
                .unwrap(),
            Annotations { read_only: true, destructive: false, idempotent: true, open_world: true },
            Mode::Inline { within: Duration::from_secs(2) },
        );
        let expected = count(
            r#"{"description":"Tell the weather. Use when the user asks about the weather.","name":"get_weather","parameters":{"properties":{"city":{"type":"string"}},"type":"object"}}"#,
        );
        assert_eq!(of_definition(&definition), expected);
        assert_eq!(of_source(&definition), expected);
    }

    /// The built-in tools, built as `tools::builtin::all` does but without services.
    pub(in crate::tools) fn builtin() -> [ToolDefinition; 4] {
        let annotations = Annotations {
            read_only: false,
            destructive: false,
            idempotent: false,
            open_world: false,
        };
        [
            ToolDefinition::typed::<generate_image::GenerateImageInput>(
                generate_image::NAME,
                generate_image::DESCRIPTION,
                annotations,
                Mode::Job,
            ),
            ToolDefinition::typed::<edit_image::EditImageInput>(
                edit_image::NAME,
                edit_image::DESCRIPTION,
                annotations,
                Mode::Job,
            ),
            ToolDefinition::typed::<job_status::JobStatusInput>(
                job_status::NAME,
                job_status::DESCRIPTION,
                annotations,
                Mode::Inline { within: Duration::from_secs(3) },
            ),
            ToolDefinition::typed::<cancel_job::CancelJobInput>(
                cancel_job::NAME,
                cancel_job::DESCRIPTION,
                annotations,
                Mode::Inline { within: Duration::from_secs(2) },
            ),
        ]
    }

    #[test]
    fn builtin_tools_fit_the_budget_and_compaction_pays() {
        for definition in builtin() {
            let (compact, source) = (of_definition(&definition), of_source(&definition));
            eprintln!("{}: compact {compact}, source {source}", definition.name);
            assert!(compact <= 120, "{} costs {compact} tokens", definition.name);
            assert!(compact < source, "{}: compact {compact} vs source {source}", definition.name);
            assert_eq!(*definition.input_schema, compile(&definition.source_schema));
        }
    }
}
