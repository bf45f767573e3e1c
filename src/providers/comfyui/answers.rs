//! What ComfyUI's answers mean: a `/history/{prompt_id}` entry read as the image to fetch or
//! the error that stopped the prompt, and a `POST /prompt` rejection read as one short line.
//!
//! Shapes follow ComfyUI's `server.py` and `execution.py`. A history entry is
//! `{"prompt", "outputs": {node_id: {"images": [{filename, subfolder, type}]}}, "status":
//! {"status_str": "success"|"error", "completed", "messages": [[event, data], ...]}}`; a failed
//! run has an `execution_error` message (`node_id`, `node_type`, `exception_type`,
//! `exception_message`) or an `execution_interrupted` one. A rejected prompt is answered 400
//! with `{"error": {"type", "message", "details", "extra_info"}, "node_errors": {node_id:
//! {"errors": [{"type", "message", "details", "extra_info"}], "class_type", ...}}}`.

use serde::Deserialize;
use serde_json::Value;

use super::super::{ProviderError, http::truncate};

/// One image an output node saved, as `/view` wants it back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct ImageRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    /// `output` (SaveImage), `temp` (PreviewImage) or `input`.
    #[serde(rename = "type", default = "output_type")]
    pub kind: String,
}

fn output_type() -> String {
    "output".to_owned()
}

/// The image to fetch from a finished prompt's history entry, or why there is none.
///
/// Saved images (`output`) win over previews (`temp`); among equals the lowest node id wins,
/// so a workflow that saves one image always yields that one.
pub(super) fn finished_image(entry: &Value) -> Result<ImageRef, ProviderError> {
    let status = entry.get("status");
    let messages = status.and_then(|s| s.get("messages")).and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        let (Some(event), Some(data)) = (message.get(0).and_then(Value::as_str), message.get(1))
        else {
            continue;
        };
        match event {
            "execution_error" => return Err(execution_error(data)),
            "execution_interrupted" => {
                return Err(ProviderError::InvalidResponse(format!(
                    "ComfyUI interrupted the prompt{}",
                    at_node(data)
                )));
            }
            _ => {}
        }
    }
    let status_str = status.and_then(|s| s.get("status_str")).and_then(Value::as_str);
    if status_str == Some("error") {
        return Err(ProviderError::InvalidResponse(
            "ComfyUI reported an error without saying which".to_owned(),
        ));
    }
    let mut images: Vec<(u8, NodeOrder, ImageRef)> = Vec::new();
    let outputs = entry.get("outputs").and_then(Value::as_object);
    for (node_id, output) in outputs.into_iter().flatten() {
        let listed = output.get("images").and_then(Value::as_array);
        // Other output kinds (`gifs`, `text`, ...) and malformed entries are skipped.
        let found = listed.into_iter().flatten().filter_map(|image| {
            ImageRef::deserialize(image).ok().filter(|image| !image.filename.is_empty())
        });
        for image in found {
            let rank = u8::from(image.kind != "output");
            images.push((rank, NodeOrder::of(node_id), image));
        }
    }
    images.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    images.into_iter().next().map(|(_, _, image)| image).ok_or_else(|| {
        ProviderError::InvalidResponse(
            "the workflow finished without an image; it needs a SaveImage node".to_owned(),
        )
    })
}

/// Node ids are usually numbers (`"9"` before `"10"`), sometimes `"115:37"` or names.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NodeOrder(Option<u64>, String);

impl NodeOrder {
    fn of(id: &str) -> NodeOrder {
        NodeOrder(id.parse().ok(), id.to_owned())
    }
}

/// An exception inside a node. Running out of GPU memory is load (another job, a larger
/// model): worth another attempt. Anything else is the workflow's own failure.
fn execution_error(data: &Value) -> ProviderError {
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default();
    let exception_type = text("exception_type");
    let message = text("exception_message").trim();
    let out_of_memory = exception_type.contains("OutOfMemoryError")
        || message.to_ascii_lowercase().contains("out of memory");
    if out_of_memory {
        tracing::warn!(node = text("node_type"), message, "ComfyUI ran out of GPU memory");
        // HTTP was fine throughout; 503 stands for "the service cannot take this load now".
        return ProviderError::Unavailable { status: 503, retry_after: None };
    }
    let exception = exception_type.rsplit('.').next().unwrap_or_default();
    let detail = match (exception, message) {
        ("", "") => String::new(),
        ("", message) => format!(": {message}"),
        (exception, "") => format!(": {exception}"),
        (exception, message) => format!(": {exception}: {message}"),
    };
    ProviderError::InvalidResponse(truncate(&format!("ComfyUI failed{}{detail}", at_node(data))))
}

/// `" at node 3 (KSampler)"`, or as much of it as the message says.
fn at_node(data: &Value) -> String {
    let text = |key: &str| data.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
    match (text("node_id"), text("node_type")) {
        (Some(id), Some(kind)) => format!(" at node {id} ({kind})"),
        (Some(id), None) => format!(" at node {id}"),
        (None, Some(kind)) => format!(" at a {kind} node"),
        (None, None) => String::new(),
    }
}

/// One line from a `POST /prompt` rejection: the first node error when there is one (it names
/// the node and the input, such as a checkpoint that is not installed), else the error itself.
pub(super) fn rejection_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let node_errors = body.get("node_errors").and_then(Value::as_object);
    let mut nodes: Vec<(&String, &Value)> = node_errors.into_iter().flatten().collect();
    nodes.sort_by_key(|(id, _)| NodeOrder::of(id));
    for (node_id, node) in nodes {
        let first = node.get("errors").and_then(Value::as_array).and_then(|e| e.first());
        let Some(error) = first else { continue };
        let class_type = node.get("class_type").and_then(Value::as_str).unwrap_or("node");
        return Some(truncate(&format!("{class_type} (node {node_id}): {}", describe(error))));
    }
    match body.get("error") {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(truncate(text.trim())),
        Some(error @ Value::Object(_)) => Some(truncate(&describe(error))),
        _ => None,
    }
}

/// `"{message}: {details}"`, or whichever of the two is there, or the type.
fn describe(error: &Value) -> String {
    let text = |key: &str| {
        error.get(key).and_then(Value::as_str).map(str::trim).filter(|value| !value.is_empty())
    };
    match (text("message"), text("details"), text("type")) {
        (Some(message), Some(details), _) => format!("{message}: {details}"),
        (Some(message), None, _) => message.to_owned(),
        (None, Some(details), _) => details.to_owned(),
        (None, None, Some(kind)) => kind.to_owned(),
        (None, None, None) => "rejected".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image(filename: &str, kind: &str) -> Value {
        json!({"filename": filename, "subfolder": "", "type": kind})
    }

    fn success(outputs: Value) -> Value {
        json!({
            "outputs": outputs,
            "status": {"status_str": "success", "completed": true, "messages": [
                ["execution_start", {"prompt_id": "p", "timestamp": 1}],
                ["execution_success", {"prompt_id": "p", "timestamp": 2}]
            ]}
        })
    }

    #[test]
    fn saved_images_win_over_previews_and_lower_nodes_over_higher() {
        let entry = success(json!({
            "2": {"images": [image("preview.png", "temp")]},
            "10": {"images": [image("ten.png", "output")]},
            "9": {"images": [image("nine.png", "output"), image("nine-b.png", "output")]},
            "11": {"text": ["not an image"]}
        }));
        let found = finished_image(&entry).unwrap();
        assert_eq!(found.filename, "nine.png");
        let only_preview = success(json!({"2": {"images": [image("p.png", "temp")]}}));
        assert_eq!(finished_image(&only_preview).unwrap().kind, "temp");
    }

    #[test]
    fn an_entry_without_images_says_what_is_missing() {
        let error = finished_image(&success(json!({"3": {"latents": []}}))).unwrap_err();
        assert!(matches!(&error, ProviderError::InvalidResponse(m) if m.contains("SaveImage")));
    }

    #[test]
    fn out_of_memory_is_retryable_and_other_exceptions_are_not() {
        let failed = |exception_type: &str, message: &str| {
            finished_image(&json!({
                "outputs": {},
                "status": {"status_str": "error", "completed": false, "messages": [
                    ["execution_start", {"prompt_id": "p"}],
                    ["execution_error", {"prompt_id": "p", "node_id": "3", "node_type": "KSampler",
                     "exception_type": exception_type, "exception_message": message,
                     "traceback": [], "executed": []}]
                ]}
            }))
            .unwrap_err()
        };
        let oom = failed("torch.OutOfMemoryError", "Allocation on device");
        assert!(oom.is_retryable(), "{oom:?}");
        let oom = failed("RuntimeError", "CUDA out of memory. Tried to allocate 2.00 GiB");
        assert!(matches!(oom, ProviderError::Unavailable { .. }), "{oom:?}");
        let broken = failed("builtins.ValueError", "bad shape");
        let ProviderError::InvalidResponse(message) = &broken else { panic!("{broken:?}") };
        assert_eq!(message, "ComfyUI failed at node 3 (KSampler): ValueError: bad shape");
        assert!(!broken.is_retryable());
    }

    #[test]
    fn interruptions_and_bare_errors_are_failures() {
        let interrupted = json!({"outputs": {}, "status": {"status_str": "error",
            "completed": false, "messages": [["execution_interrupted",
            {"prompt_id": "p", "node_id": "3", "node_type": "KSampler", "executed": []}]]}});
        let error = finished_image(&interrupted).unwrap_err();
        assert!(matches!(&error, ProviderError::InvalidResponse(m) if m.contains("interrupted")));
        let bare = json!({"outputs": {"9": {"images": [image("x.png", "output")]}},
            "status": {"status_str": "error", "completed": false, "messages": []}});
        assert!(finished_image(&bare).is_err(), "an error status wins over stale outputs");
    }

    #[test]
    fn entries_from_servers_without_status_still_yield_their_image() {
        let old = json!({"outputs": {"9": {"images": [image("x.png", "output")]}}});
        assert_eq!(finished_image(&old).unwrap().filename, "x.png");
    }

    #[test]
    fn rejections_name_the_first_failing_node() {
        let missing_checkpoint = json!({
            "error": {"type": "prompt_outputs_failed_validation",
                      "message": "Prompt outputs failed validation",
                      "details": "Value not in list: ckpt_name: 'x.safetensors' not in []",
                      "extra_info": {}},
            "node_errors": {"4": {"errors": [{"type": "value_not_in_list",
                "message": "Value not in list",
                "details": "ckpt_name: 'x.safetensors' not in ['a.safetensors']",
                "extra_info": {"input_name": "ckpt_name"}}],
                "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}
        });
        let message = rejection_message(missing_checkpoint.to_string().as_bytes()).unwrap();
        assert_eq!(
            message,
            "CheckpointLoaderSimple (node 4): Value not in list: ckpt_name: 'x.safetensors' \
             not in ['a.safetensors']"
        );
        let no_outputs = json!({"error": {"type": "prompt_no_outputs",
            "message": "Prompt has no outputs", "details": "", "extra_info": {}},
            "node_errors": {}});
        let message = rejection_message(no_outputs.to_string().as_bytes());
        assert_eq!(message.as_deref(), Some("Prompt has no outputs"));
        let old = json!({"error": "no prompt", "node_errors": []});
        assert_eq!(rejection_message(old.to_string().as_bytes()).as_deref(), Some("no prompt"));
        assert_eq!(rejection_message(b"<html>"), None);
    }
}
