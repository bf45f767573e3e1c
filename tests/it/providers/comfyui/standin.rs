//! A local stand-in for a ComfyUI server: `POST /prompt` validates the workflow the way
//! ComfyUI does for the nodes it knows (answering ComfyUI's own 400 bodies), `/history/{id}`
//! stays `{}` until the scripted run ends, `/view` serves the saved PNG at the latent's size,
//! and `/queue` and `/interrupt` manage what waits and what runs. Everything is recorded.
//!
//! Shapes follow ComfyUI's `server.py` and `execution.py`: `{"prompt_id", "number",
//! "node_errors"}`; `{"error": {"type", "message", "details", "extra_info"}, "node_errors":
//! {id: {"errors": [...], "dependent_outputs", "class_type"}}}`; history entries with
//! `outputs` and `status: {status_str, completed, messages}`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::providers::standin::{self, Recorded, png};

/// The checkpoints this ComfyUI has installed.
pub(crate) const CHECKPOINTS: &[&str] =
    &["sd_xl_base_1.0.safetensors", "flux1-schnell.safetensors"];

/// What happens to one prompt that passed validation.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Runs at once; `/history` answers `{}` for `polls` polls, then the saved image.
    Image { polls: usize },
    /// Runs, then fails inside the KSampler node with this exception.
    ExecutionError { exception_type: &'static str, message: &'static str },
    /// Runs to success without saving anything.
    NoImage,
    /// Runs and never finishes, unless interrupted.
    Running,
    /// Waits behind other work and never starts, unless deleted.
    Queued,
    /// `POST /prompt` answers with this status and body.
    Reject { status: u16, body: Value },
    /// `POST /prompt` never answers (an hour, or until the stand-in is dropped).
    Hang,
}

impl Reply {
    pub(crate) fn image() -> Self {
        Reply::Image { polls: 0 }
    }

    /// What PyTorch raises when the GPU is full.
    pub(crate) fn out_of_memory() -> Self {
        Reply::ExecutionError {
            exception_type: "torch.OutOfMemoryError",
            message: "Allocation on device",
        }
    }
}

/// A running ComfyUI stand-in.
pub(crate) type StandIn = standin::StandIn<ComfyUi>;
type Shared = standin::Shared<ComfyUi>;

/// The stand-in's state: the server's own, behind one lock, and the proxy's key.
pub(crate) struct ComfyUi {
    state: Mutex<Comfy>,
    /// A proxy in front: requests without `Authorization: Bearer {key}` get 401.
    key: Option<String>,
}

#[derive(Debug, Default)]
struct Comfy {
    script: VecDeque<Reply>,
    requests: Vec<Recorded>,
    prompts: Vec<Prompt>,
    /// Saved files by (subfolder, filename, type), with their pixel size.
    files: HashMap<(String, String, String), (u32, u32)>,
    number: u64,
    saved: u32,
}

#[derive(Debug, Clone)]
struct Prompt {
    id: String,
    number: u64,
    workflow: Value,
    client_id: Value,
    reply: Reply,
    polls_left: usize,
    run: Run,
}

#[derive(Debug, Clone, PartialEq)]
enum Run {
    Pending,
    Running,
    Deleted,
    Done(Value),
}

impl ComfyUi {
    /// Every request received so far, rejected ones included.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Requests with this method and path.
    pub(crate) fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|request| request.is(method, path)).collect()
    }

    /// The workflows of `POST /prompt` bodies, in order.
    pub(crate) fn workflows(&self) -> Vec<Value> {
        self.requests_to("POST", "/prompt").into_iter().map(|r| r.body["prompt"].clone()).collect()
    }

    /// Ids of the prompts queued so far.
    pub(crate) fn prompt_ids(&self) -> Vec<String> {
        self.state().prompts.iter().map(|prompt| prompt.id.clone()).collect()
    }

    /// Waits until a request matches, for at most `within`; true when one did.
    pub(crate) async fn saw(&self, within: Duration, matches: impl Fn(&Recorded) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.state().requests.iter().any(&matches) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn state(&self) -> MutexGuard<'_, Comfy> {
        standin::lock(&self.state)
    }
}

/// Starts a stand-in on an ephemeral loopback port. Each valid prompt takes the next reply;
/// once the script is down to one reply, that reply repeats.
pub(crate) async fn spawn(script: Vec<Reply>) -> StandIn {
    spawn_with(script, None).await
}

/// A stand-in behind an authenticating proxy that wants `key` as a bearer token.
pub(crate) async fn spawn_behind_proxy(script: Vec<Reply>, key: &str) -> StandIn {
    spawn_with(script, Some(key.to_owned())).await
}

async fn spawn_with(script: Vec<Reply>, key: Option<String>) -> StandIn {
    assert!(!script.is_empty(), "the stand-in needs at least one reply");
    let state = Comfy { script: script.into(), ..Comfy::default() };
    let state = |_: &str| ComfyUi { state: Mutex::new(state), key };
    standin::spawn(state, Router::new().fallback(handle)).await
}

async fn handle(State(shared): State<Arc<Shared>>, request: Recorded) -> Response {
    lock(&shared).requests.push(request.clone());
    let Recorded { method, path, params: query, .. } = &request;
    let json: Option<Value> = serde_json::from_slice(&request.raw).ok();
    if let Some(key) = &shared.key
        && request.header(header::AUTHORIZATION.as_str()) != Some(format!("Bearer {key}").as_str())
    {
        return (StatusCode::UNAUTHORIZED, "401: Unauthorized").into_response();
    }
    match (method.as_str(), path.as_str()) {
        ("POST", "/prompt") => post_prompt(&shared, json).await,
        ("GET", "/queue") => get_queue(&shared),
        ("POST", "/queue") => post_queue(&shared, json),
        ("POST", "/interrupt") => post_interrupt(&shared, json),
        ("GET", "/view") => view(&shared, query),
        ("GET", _) if path.starts_with("/history/") => history(&shared, &path["/history/".len()..]),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Comfy> {
    standin::lock(&shared.state.state)
}

async fn post_prompt(shared: &Shared, body: Option<Value>) -> Response {
    let Some(body) = body.filter(|body| body.get("prompt").is_some()) else {
        let error = error_body("no_prompt", "No prompt provided", "No prompt provided");
        return bad_request(json!({ "error": error, "node_errors": {} }));
    };
    let workflow = body["prompt"].clone();
    if let Err(rejection) = validate(&workflow) {
        return bad_request(rejection);
    }
    let reply = {
        let mut state = lock(shared);
        if state.script.len() > 1 {
            state.script.pop_front()
        } else {
            state.script.front().cloned()
        }
    };
    let reply = reply.expect("the script is never empty");
    match reply {
        Reply::Reject { status, body } => {
            let status = StatusCode::from_u16(status).expect("a valid scripted status");
            return (status, axum::Json(body)).into_response();
        }
        Reply::Hang => {
            shared.hang().await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        _ => {}
    }
    let mut state = lock(shared);
    // Current ComfyUI keeps a prompt id the client chose.
    let id = match body.get("prompt_id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => format!("00000000-0000-4000-8000-{:012}", state.number + 1),
    };
    let number = state.number;
    state.number += 1;
    let polls_left = match &reply {
        Reply::Image { polls } => *polls,
        _ => 0,
    };
    let run = if matches!(reply, Reply::Queued) { Run::Pending } else { Run::Running };
    let client_id = body.get("client_id").cloned().unwrap_or(Value::Null);
    state.prompts.push(Prompt {
        id: id.clone(),
        number,
        workflow,
        client_id,
        reply,
        polls_left,
        run,
    });
    axum::Json(json!({ "prompt_id": id, "number": number, "node_errors": {} })).into_response()
}

fn history(shared: &Shared, prompt_id: &str) -> Response {
    let mut state = lock(shared);
    let state = &mut *state;
    let Some(prompt) = state.prompts.iter_mut().find(|prompt| prompt.id == prompt_id) else {
        return axum::Json(json!({})).into_response();
    };
    if prompt.run == Run::Running && !matches!(prompt.reply, Reply::Running) {
        if prompt.polls_left > 0 {
            prompt.polls_left -= 1;
        } else {
            let entry = finish(prompt, &mut state.files, &mut state.saved);
            prompt.run = Run::Done(entry);
        }
    }
    let mut history = serde_json::Map::new();
    if let Run::Done(entry) = &prompt.run {
        history.insert(prompt_id.to_owned(), entry.clone());
    }
    axum::Json(Value::Object(history)).into_response()
}

/// The history entry of a prompt that ran to its scripted end.
fn finish(
    prompt: &Prompt,
    files: &mut HashMap<(String, String, String), (u32, u32)>,
    saved: &mut u32,
) -> Value {
    let start =
        json!(["execution_start", {"prompt_id": prompt.id, "timestamp": 1_700_000_000_000u64}]);
    let cached = json!(["execution_cached", {"nodes": [], "prompt_id": prompt.id,
                        "timestamp": 1_700_000_000_001u64}]);
    match &prompt.reply {
        Reply::ExecutionError { exception_type, message } => {
            let (node_id, _) =
                node_of(&prompt.workflow, "KSampler").unwrap_or(("3".to_owned(), json!({})));
            let error = json!(["execution_error", {
                "prompt_id": prompt.id, "node_id": node_id, "node_type": "KSampler",
                "executed": [], "exception_message": message, "exception_type": exception_type,
                "traceback": ["  File \"execution.py\", line 1, in execute\n"],
                "current_inputs": {}, "current_outputs": [], "timestamp": 1_700_000_000_002u64
            }]);
            entry(prompt, json!({}), "error", false, vec![start, cached, error])
        }
        Reply::NoImage => {
            let success = json!(["execution_success", {"prompt_id": prompt.id, "timestamp": 2}]);
            entry(prompt, json!({}), "success", true, vec![start, cached, success])
        }
        _ => {
            let (width, height) = latent_size(&prompt.workflow);
            let mut outputs = serde_json::Map::new();
            for (node_id, node) in nodes(&prompt.workflow) {
                let kind = match node["class_type"].as_str() {
                    Some("SaveImage") => "output",
                    Some("PreviewImage") => "temp",
                    _ => continue,
                };
                let prefix = node["inputs"]["filename_prefix"].as_str().unwrap_or("ComfyUI");
                let (subfolder, base) = prefix.rsplit_once('/').unwrap_or(("", prefix));
                *saved += 1;
                let filename = format!("{base}_{saved:05}_.png");
                files.insert(
                    (subfolder.to_owned(), filename.clone(), kind.to_owned()),
                    (width, height),
                );
                let image = json!({"filename": filename, "subfolder": subfolder, "type": kind});
                outputs.insert(node_id, json!({ "images": [image] }));
            }
            let success = json!(["execution_success", {"prompt_id": prompt.id, "timestamp": 2}]);
            entry(prompt, Value::Object(outputs), "success", true, vec![start, cached, success])
        }
    }
}

fn entry(
    prompt: &Prompt,
    outputs: Value,
    status: &str,
    completed: bool,
    messages: Vec<Value>,
) -> Value {
    let output_ids: Vec<String> =
        outputs.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    json!({
        "prompt": [prompt.number, prompt.id, prompt.workflow, {"client_id": prompt.client_id}, output_ids],
        "outputs": outputs,
        "status": {"status_str": status, "completed": completed, "messages": messages},
        "meta": {}
    })
}

fn get_queue(shared: &Shared) -> Response {
    let state = lock(shared);
    let item = |prompt: &Prompt| json!([prompt.number, prompt.id, prompt.workflow, {"client_id": prompt.client_id}, []]);
    let of = |run: Run| -> Vec<Value> {
        state.prompts.iter().filter(|prompt| prompt.run == run).map(item).collect()
    };
    axum::Json(json!({ "queue_running": of(Run::Running), "queue_pending": of(Run::Pending) }))
        .into_response()
}

/// `{"delete": [ids]}` removes pending prompts; running ones are untouched, as in ComfyUI.
fn post_queue(shared: &Shared, body: Option<Value>) -> Response {
    let mut state = lock(shared);
    let body = body.unwrap_or_default();
    if body.get("clear").and_then(Value::as_bool) == Some(true) {
        for prompt in state.prompts.iter_mut().filter(|prompt| prompt.run == Run::Pending) {
            prompt.run = Run::Deleted;
        }
    }
    let ids = body.get("delete").and_then(Value::as_array).cloned().unwrap_or_default();
    for prompt in state.prompts.iter_mut() {
        if prompt.run == Run::Pending && ids.iter().any(|id| id.as_str() == Some(&prompt.id)) {
            prompt.run = Run::Deleted;
        }
    }
    StatusCode::OK.into_response()
}

/// With a `prompt_id`, interrupts only that prompt and only while it runs (current ComfyUI);
/// without one, whatever runs.
fn post_interrupt(shared: &Shared, body: Option<Value>) -> Response {
    let mut state = lock(shared);
    let wanted =
        body.as_ref().and_then(|b| b.get("prompt_id")).and_then(Value::as_str).map(str::to_owned);
    for prompt in state.prompts.iter_mut().filter(|prompt| prompt.run == Run::Running) {
        if wanted.as_ref().is_none_or(|id| *id == prompt.id) {
            let interrupted = json!(["execution_interrupted", {"prompt_id": prompt.id,
                "node_id": "3", "node_type": "KSampler", "executed": [], "timestamp": 3}]);
            let done = entry(prompt, json!({}), "error", false, vec![interrupted]);
            prompt.run = Run::Done(done);
        }
    }
    StatusCode::OK.into_response()
}

/// `server.py`'s checks: a filename without `..` or a leading `/`, a known type, a file.
fn view(shared: &Shared, query: &BTreeMap<String, String>) -> Response {
    let Some(filename) = query.get("filename") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if filename.starts_with('/') || filename.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let kind = query.get("type").map_or("output", String::as_str);
    if !matches!(kind, "output" | "temp" | "input") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let subfolder = query.get("subfolder").cloned().unwrap_or_default();
    let key = (subfolder, filename.clone(), kind.to_owned());
    let Some(&(width, height)) = lock(shared).files.get(&key) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    ([(header::CONTENT_TYPE, "image/png")], png(width, height)).into_response()
}

/// Required inputs, and which of them are INTs.
type Schema = (&'static [&'static str], &'static [&'static str]);

/// The inputs ComfyUI requires of the nodes the stand-in knows, and which are INTs.
fn node_schema(class_type: &str) -> Option<Schema> {
    let schema: Schema = match class_type {
        "CheckpointLoaderSimple" => (&["ckpt_name"], &[]),
        "CLIPTextEncode" => (&["text", "clip"], &[]),
        "EmptyLatentImage" => {
            (&["width", "height", "batch_size"], &["width", "height", "batch_size"])
        }
        "KSampler" => (
            &[
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise",
            ],
            &["seed", "steps"],
        ),
        "VAEDecode" => (&["samples", "vae"], &[]),
        "SaveImage" => (&["images", "filename_prefix"], &[]),
        "PreviewImage" => (&["images"], &[]),
        _ => return None,
    };
    Some(schema)
}

/// ComfyUI's `validate_prompt`, for the nodes above: known classes, an output node, required
/// inputs present, INTs convertible and in range, the checkpoint installed.
fn validate(workflow: &Value) -> Result<(), Value> {
    let Some(nodes) = workflow.as_object() else {
        let error = error_body("invalid_prompt", "Invalid prompt", "the prompt is not an object");
        return Err(json!({ "error": error, "node_errors": {} }));
    };
    for (id, node) in nodes {
        let class_type = node["class_type"].as_str().unwrap_or_default();
        if node_schema(class_type).is_none() {
            let mut error = error_body(
                "missing_node_type",
                &format!("Node '{class_type}' not found. The custom node may not be installed."),
                &format!("Node ID '#{id}'"),
            );
            error["extra_info"] =
                json!({"node_id": id, "class_type": class_type, "node_title": class_type});
            return Err(json!({ "error": error, "node_errors": {} }));
        }
    }
    let outputs: Vec<&String> = nodes
        .iter()
        .filter(|(_, node)| {
            matches!(node["class_type"].as_str(), Some("SaveImage" | "PreviewImage"))
        })
        .map(|(id, _)| id)
        .collect();
    if outputs.is_empty() {
        let error = error_body("prompt_no_outputs", "Prompt has no outputs", "");
        return Err(json!({ "error": error, "node_errors": {} }));
    }
    let mut node_errors = serde_json::Map::new();
    let mut lines = Vec::new();
    for (id, node) in nodes {
        let class_type = node["class_type"].as_str().unwrap_or_default();
        let (required, ints) = node_schema(class_type).expect("checked above");
        let inputs = &node["inputs"];
        let mut errors = Vec::new();
        for name in required {
            if inputs.get(*name).is_none() {
                errors.push(error_with(
                    "required_input_missing",
                    "Required input is missing",
                    (*name).to_owned(),
                    json!({"input_name": name}),
                ));
            }
        }
        for name in ints {
            let Some(value) = inputs.get(*name) else { continue };
            // ComfyUI runs `int(value)`: numbers and numeric strings pass.
            let number =
                value.as_u64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
            let (min, max) =
                if *name == "width" || *name == "height" { (16, 16384) } else { (0, u64::MAX) };
            match number {
                None => errors.push(error_with(
                    "invalid_input_type",
                    "Failed to convert an input value to a INT value",
                    format!("{name}, {value}, invalid literal for int()"),
                    json!({"input_name": name, "received_value": value}),
                )),
                Some(n) if n < min => errors.push(error_with(
                    "value_smaller_than_min",
                    &format!("Value {n} smaller than min of {min}"),
                    (*name).to_owned(),
                    json!({"input_name": name, "received_value": n}),
                )),
                Some(n) if n > max => errors.push(error_with(
                    "value_bigger_than_max",
                    &format!("Value {n} bigger than max of {max}"),
                    (*name).to_owned(),
                    json!({"input_name": name, "received_value": n}),
                )),
                Some(_) => {}
            }
        }
        if class_type == "CheckpointLoaderSimple" {
            let name = inputs["ckpt_name"].as_str().unwrap_or_default();
            if !CHECKPOINTS.contains(&name) {
                errors.push(error_with(
                    "value_not_in_list",
                    "Value not in list",
                    format!("ckpt_name: '{name}' not in {CHECKPOINTS:?}"),
                    json!({"input_name": "ckpt_name", "received_value": name}),
                ));
            }
        }
        if !errors.is_empty() {
            for error in &errors {
                lines.push(format!(
                    "{}: {}",
                    error["message"].as_str().unwrap(),
                    error["details"].as_str().unwrap()
                ));
            }
            node_errors.insert(
                id.clone(),
                json!({"errors": errors, "dependent_outputs": outputs, "class_type": class_type}),
            );
        }
    }
    if node_errors.is_empty() {
        return Ok(());
    }
    let error = error_body(
        "prompt_outputs_failed_validation",
        "Prompt outputs failed validation",
        &lines.join("\n"),
    );
    Err(json!({ "error": error, "node_errors": node_errors }))
}

fn error_body(kind: &str, message: &str, details: &str) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": {}})
}

fn error_with(kind: &str, message: &str, details: String, extra_info: Value) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": extra_info})
}

fn bad_request(body: Value) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn nodes(workflow: &Value) -> Vec<(String, Value)> {
    workflow
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn node_of(workflow: &Value, class_type: &str) -> Option<(String, Value)> {
    nodes(workflow).into_iter().find(|(_, node)| node["class_type"] == class_type)
}

/// The EmptyLatentImage size, which is the size the decoded image comes out at.
fn latent_size(workflow: &Value) -> (u32, u32) {
    let size = |value: &Value| value.as_u64().or_else(|| value.as_str()?.parse().ok());
    node_of(workflow, "EmptyLatentImage")
        .and_then(|(_, node)| {
            let width = size(&node["inputs"]["width"])?;
            let height = size(&node["inputs"]["height"])?;
            Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
        })
        .unwrap_or((512, 512))
}
