//! `[providers.comfyui]`: where ComfyUI listens, which workflow it runs, and the check that an
//! operator's workflow file is one the provider can fill in (API format, with `{{prompt}}`).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    providers::spec::{self, SetupError}, settings::{HumanDuration, Secret}};

/// The placeholder every workflow must contain somewhere, so the user's words reach the model.
pub(super) const PROMPT_PLACEHOLDER: &str = "{{prompt}}";

/// A workflow file larger than this is not a workflow; reading stops there.
const MAX_WORKFLOW_BYTES: u64 = 4 * 1024 * 1024;

/// A ComfyUI server (usually on this machine or the LAN) running an API-format workflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ComfyUiConfig {
    /// Where ComfyUI listens; a path prefix (a reverse proxy's) is kept.
    pub base_url: String,
    /// An API-format workflow ("Export (API)" in ComfyUI) with `{{prompt}}` where the
    /// description goes. `None` runs the built-in text-to-image workflow.
    pub workflow: Option<PathBuf>,
    /// The checkpoint the built-in workflow loads (and any workflow's `{{checkpoint}}`).
    pub checkpoint: String,
    /// What any workflow's `{{negative}}` becomes.
    pub negative_prompt: String,
    /// How often `/history` is asked whether the image is done.
    pub poll_interval: HumanDuration,
    /// One HTTP request's limit; the job's own timeout bounds the whole generation.
    pub request_timeout: HumanDuration,
    /// Typical generation time, reported to callers as `eta_ms`.
    pub typical_latency: HumanDuration,
    /// From `COMFYUI_API_KEY`: a bearer token for a ComfyUI behind an authenticating proxy.
    /// ComfyUI itself has no keys. Never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<Secret>,
}

impl Default for ComfyUiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8188".to_owned(),
            workflow: None,
            checkpoint: "sd_xl_base_1.0.safetensors".to_owned(),
            negative_prompt: "blurry, low quality, watermark, text".to_owned(),
            poll_interval: HumanDuration::from_millis(500),
            request_timeout: HumanDuration::from_secs(30),
            typical_latency: HumanDuration::from_secs(20),
            api_key: None,
        }
    }
}

impl ComfyUiConfig {
    /// The base URL, and a workflow file the provider can fill in: checked whichever provider
    /// is chosen, like every provider's base URL, so a typo fails at start rather than at a
    /// switch.
    pub(crate) fn check(&self) -> Result<(), SetupError> {
        spec::check_base_url::<super::ComfyUiProvider>(&self.base_url)?;
        if let Some(path) = &self.workflow {
            read_workflow(path).map_err(|message| SetupError::invalid("comfyui", "workflow", message))?;
        }
        if self.poll_interval.is_zero() {
            return Err(SetupError::invalid("comfyui", "poll_interval", "must be longer than 0s"));
        }
        Ok(())
    }
}

/// Reads an API-format workflow and checks it can be filled in. The message says what to fix.
///
/// The API format maps node ids to `{"class_type", "inputs"}`; the UI format (what "Save"
/// writes) has `nodes` and `links` lists instead and cannot be queued.
pub(super) fn read_workflow(path: &Path) -> Result<Value, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|error| format!("cannot read workflow `{shown}`: {error}"))?
        .len();
    if size > MAX_WORKFLOW_BYTES {
        return Err(format!("workflow `{shown}` is {size} bytes; a workflow is far smaller"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read workflow `{shown}`: {error}"))?;
    let workflow: Value = serde_json::from_str(&text)
        .map_err(|error| format!("workflow `{shown}` is not JSON: {error}"))?;
    check_workflow(&workflow).map_err(|problem| format!("workflow `{shown}` {problem}"))?;
    Ok(workflow)
}

/// The shape checks of [`read_workflow`], for a workflow already parsed.
pub(super) fn check_workflow(workflow: &Value) -> Result<(), String> {
    let Some(nodes) = workflow.as_object().filter(|nodes| !nodes.is_empty()) else {
        return Err("is not an API-format workflow (an object of nodes by id)".to_owned());
    };
    if nodes.get("nodes").is_some_and(Value::is_array) {
        return Err("is in the UI format; in ComfyUI use \"Export (API)\" to save the \
                    API format"
            .to_owned());
    }
    for (id, node) in nodes {
        if node.get("class_type").and_then(Value::as_str).is_none() {
            return Err(format!(
                "is not an API-format workflow: node `{id}` has no `class_type` (in ComfyUI \
                 use \"Export (API)\")"
            ));
        }
    }
    if !mentions(workflow, PROMPT_PLACEHOLDER) {
        return Err(format!(
            "has no `{PROMPT_PLACEHOLDER}` placeholder; put it where the description goes \
             (for example a CLIPTextEncode node's `text`)"
        ));
    }
    Ok(())
}

/// True when any string value in the tree contains `placeholder`.
pub(super) fn mentions(value: &Value, placeholder: &str) -> bool {
    match value {
        Value::String(text) => text.contains(placeholder),
        Value::Array(items) => items.iter().any(|item| mentions(item, placeholder)),
        Value::Object(fields) => fields.values().any(|field| mentions(field, placeholder)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn api_format_with_the_placeholder_passes() {
        let workflow = json!({
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo of {{prompt}}"}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}
        });
        assert_eq!(check_workflow(&workflow), Ok(()));
    }

    #[test]
    fn wrong_shapes_are_named() {
        let problem = |workflow: Value| check_workflow(&workflow).unwrap_err();
        assert!(problem(json!([])).contains("API-format"));
        assert!(problem(json!({})).contains("API-format"));
        let ui = json!({"nodes": [], "links": [], "version": 0.4});
        assert!(problem(ui).contains("Export (API)"));
        let no_class = json!({"3": {"inputs": {"text": "{{prompt}}"}}});
        assert!(problem(no_class).contains("node `3`"));
        let no_placeholder = json!({"3": {"class_type": "X", "inputs": {"text": "{{ prompt }}"}}});
        assert!(problem(no_placeholder).contains("{{prompt}}"));
    }
}
