//! Filling in a workflow: placeholders are found by walking the JSON tree, never by editing the
//! file's text, so nothing a user says can change the workflow's structure.

use serde_json::Value;

use super::settings::PROMPT_PLACEHOLDER;

/// The values a workflow's placeholders stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fill<'a> {
    pub prompt: &'a str,
    pub negative: &'a str,
    pub checkpoint: &'a str,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

/// A copy of `template` with every placeholder replaced.
///
/// A string value that is exactly a placeholder becomes the value with its JSON type (numbers
/// stay numbers, as ComfyUI's INT inputs expect). Inside a longer string only `{{prompt}}` is
/// replaced, textually (`"photo of {{prompt}}, 35mm"`). The replacement is never scanned
/// again, so a prompt that itself says `{{seed}}` arrives verbatim.
pub(super) fn fill(template: &Value, values: &Fill<'_>) -> Value {
    match template {
        Value::String(text) => fill_string(text, values),
        Value::Array(items) => Value::Array(items.iter().map(|item| fill(item, values)).collect()),
        Value::Object(fields) => Value::Object(
            fields.iter().map(|(key, field)| (key.clone(), fill(field, values))).collect(),
        ),
        other => other.clone(),
    }
}

fn fill_string(text: &str, values: &Fill<'_>) -> Value {
    match text {
        PROMPT_PLACEHOLDER => Value::from(values.prompt),
        "{{negative}}" => Value::from(values.negative),
        "{{checkpoint}}" => Value::from(values.checkpoint),
        "{{width}}" => Value::from(values.width),
        "{{height}}" => Value::from(values.height),
        "{{seed}}" => Value::from(values.seed),
        text if text.contains(PROMPT_PLACEHOLDER) => {
            Value::from(text.replace(PROMPT_PLACEHOLDER, values.prompt))
        }
        text => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(prompt: &str) -> Fill<'_> {
        Fill {
            prompt,
            negative: "blurry",
            checkpoint: "model.safetensors",
            width: 1536,
            height: 1024,
            seed: 42,
        }
    }

    #[test]
    fn whole_placeholders_keep_their_json_type() {
        let template = json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20,
                  "model": ["4", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
            "5": {"class_type": "EmptyLatentImage",
                  "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative}}"}}
        });
        let filled = fill(&template, &values("a fox"));
        assert_eq!(filled["3"]["inputs"], json!({"seed": 42, "steps": 20, "model": ["4", 0]}));
        assert_eq!(filled["4"]["inputs"]["ckpt_name"], "model.safetensors");
        assert_eq!(filled["5"]["inputs"], json!({"width": 1536, "height": 1024, "batch_size": 1}));
        assert_eq!(filled["6"]["inputs"]["text"], "a fox");
        assert_eq!(filled["7"]["inputs"]["text"], "blurry");
    }

    #[test]
    fn only_the_prompt_is_replaced_inside_longer_strings() {
        let template = json!({"text": "photo of {{prompt}}, {{prompt}} again, seed {{seed}}"});
        let filled = fill(&template, &values("a fox"));
        assert_eq!(filled["text"], "photo of a fox, a fox again, seed {{seed}}");
    }

    #[test]
    fn hostile_prompts_arrive_verbatim() {
        let hostile = r#"a "quoted" }{ fox", "class_type": "Evil"} {{seed}} {{prompt}} \n"#;
        let template = json!({"6": {"inputs": {"text": "{{prompt}}", "wrapped": "<{{prompt}}>"}}});
        let filled = fill(&template, &values(hostile));
        assert_eq!(filled["6"]["inputs"]["text"], hostile);
        assert_eq!(filled["6"]["inputs"]["wrapped"], format!("<{hostile}>"));
        assert_eq!(filled["6"].as_object().unwrap().len(), 1, "no node gained a field");
    }

    #[test]
    fn the_built_in_workflow_has_every_placeholder() {
        let template: Value = serde_json::from_str(super::super::DEFAULT_WORKFLOW).unwrap();
        super::super::settings::check_workflow(&template).unwrap();
        let filled = fill(&template, &values("a fox"));
        let text = filled.to_string();
        assert!(!text.contains("{{"), "a placeholder was left: {text}");
        assert_eq!(filled["5"]["inputs"]["width"], 1536);
        assert_eq!(filled["3"]["inputs"]["seed"], 42);
    }
}
