//! A local stand-in for Replicate's predictions API: it creates predictions (validating the body
//! as the real API does for `black-forest-labs/flux-schnell`), lets each live out a scripted plan
//! over successive polls, cancels them, serves their output files and records every request.
//!
//! Shapes follow Replicate's HTTP API reference: `POST /v1/models/{owner}/{name}/predictions` and
//! `POST /v1/predictions` answer 201 with the prediction object (`id`, `status`, `output`, `error`,
//! `urls.get`, `urls.cancel`, ...); `GET /v1/predictions/{id}` and `POST .../cancel` answer it
//! too; errors are problem JSON `{"title", "detail", "status"}` (422 adds `invalid_fields`).
//! Output files live under `/files/` on the same server and, like Replicate's delivery host,
//! need no token.
//!
//! Unknown `input` fields are rejected here; that is stricter than needed, so the provider is
//! held to sending only what the model's schema names.

#![allow(
    clippy::result_large_err,
    reason = "a rejection is the HTTP response the stand-in sends; boxing it would only add noise"
)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    providers::standin::{self, Log, Script, encode, lock},
    support::SOON,
};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

/// The one model this stand-in hosts.
pub(crate) const MODEL: &str = "black-forest-labs/flux-schnell";
/// Its one version id (made up, shaped like a real one).
pub(crate) const VERSION: &str = "c846a69991daf4c0e5d016514849d14ee5b2e6846ce6b9d6f21369e564cfe51e";

/// `aspect_ratio` values and the pixel size FLUX draws for each at one megapixel.
pub(crate) const ASPECT_SIZES: [(&str, u32, u32); 11] = [
    ("1:1", 1024, 1024),
    ("16:9", 1344, 768),
    ("21:9", 1536, 640),
    ("3:2", 1216, 832),
    ("2:3", 832, 1216),
    ("4:5", 896, 1088),
    ("5:4", 1088, 896),
    ("3:4", 896, 1152),
    ("4:3", 1152, 896),
    ("9:16", 768, 1344),
    ("9:21", 640, 1536),
];

/// What flux-schnell's safety checker says when every output was NSFW.
pub(crate) const NSFW_ERROR: &str =
    "NSFW content detected. Try running it again, or try a different prompt.";

/// Where the poll and cancel URLs of [`Plan::foreign_urls`] point.
pub(crate) const FOREIGN_ORIGIN: &str = "http://replicate-proxy.invalid";

/// The id of the `n`th prediction a stand-in creates (from 1): letters and digits, like Replicate's.
pub(crate) fn prediction_id(n: usize) -> String {
    format!("rs{n:06}q7f3k2m9x4")
}

/// The pixel size drawn for an aspect ratio.
pub(crate) fn size_for(aspect_ratio: &str) -> Option<(u32, u32)> {
    ASPECT_SIZES.iter().find(|(name, ..)| *name == aspect_ratio).map(|&(_, w, h)| (w, h))
}

/// What the stand-in answers to one create request that passed validation.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 201, and a prediction that lives out the plan.
    Prediction(Plan),
    /// Problem JSON with an optional raw `Retry-After` header.
    Error { status: u16, body: Value, retry_after: Option<&'static str> },
    /// Never answers (sleeps for an hour, or until the stand-in is dropped).
    Hang,
}

/// How one prediction lives: `starting` for some polls, `processing` for some more, then its end.
/// The create answer counts as the first look, so the default plan answers `starting` to the
/// create, `processing` to the first poll and `succeeded` to the second.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub starting: usize,
    pub processing: usize,
    pub end: End,
    /// Answers to the first polls, before the plan goes on: `(status, Retry-After)`.
    pub poll_errors: Vec<(u16, Option<&'static str>)>,
    /// `output` as one URL rather than a list of them.
    pub single_output: bool,
    /// Serve this many bytes as the output file instead of an image.
    pub file_bytes: Option<usize>,
    /// Put `urls.get` and `urls.cancel` on [`FOREIGN_ORIGIN`].
    pub foreign_urls: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            starting: 1,
            processing: 1,
            end: End::Succeeded,
            poll_errors: Vec::new(),
            single_output: false,
            file_bytes: None,
            foreign_urls: false,
        }
    }
}

/// Where a prediction ends up.
#[derive(Debug, Clone)]
pub(crate) enum End {
    Succeeded,
    /// `failed` with this `error`.
    Failed(String),
    /// `canceled` by someone else (the dashboard, another client).
    Canceled,
    /// Stays `processing` until cancelled.
    Never,
}

impl Reply {
    pub(crate) fn image() -> Self {
        Reply::Prediction(Plan::default())
    }

    pub(crate) fn failed(error: &str) -> Self {
        Reply::Prediction(Plan { end: End::Failed(error.to_owned()), ..Plan::default() })
    }

    pub(crate) fn nsfw() -> Self {
        Reply::failed(NSFW_ERROR)
    }

    pub(crate) fn canceled_elsewhere() -> Self {
        Reply::Prediction(Plan { end: End::Canceled, ..Plan::default() })
    }

    pub(crate) fn stalled() -> Self {
        Reply::Prediction(Plan { end: End::Never, ..Plan::default() })
    }

    pub(crate) fn unauthorized() -> Self {
        problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    }

    pub(crate) fn payment_required() -> Self {
        problem(
            402,
            "Insufficient credit",
            "You have insufficient credit to run this model. Go to \
             https://replicate.com/account/billing#billing to purchase credit.",
        )
    }

    pub(crate) fn invalid(field: &str, description: &str) -> Self {
        let mut reply =
            problem(422, "Input validation failed", &format!("- {field}: {description}"));
        if let Reply::Error { body, .. } = &mut reply {
            body["invalid_fields"] =
                json!([{"type": "invalid", "field": field, "description": description}]);
        }
        reply
    }

    pub(crate) fn throttled(retry_after: Option<&'static str>) -> Self {
        let mut reply = problem(
            429,
            "Request was throttled.",
            "Request was throttled. Expected available in 1 second.",
        );
        if let Reply::Error { retry_after: header, .. } = &mut reply {
            *header = retry_after;
        }
        reply
    }

    pub(crate) fn server_error(status: u16) -> Self {
        problem(status, "Internal Server Error", "Something went wrong; please try again later.")
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::Error {
        status,
        body: json!({"title": title, "detail": detail, "status": status}),
        retry_after: None,
    }
}

/// What one request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Poll,
    Cancel,
    Download,
    Other,
}

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    pub kind: Kind,
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body; `Null` when there was none or it was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A running Replicate stand-in.
pub(crate) type StandIn = standin::StandIn<Replicate>;
type Shared = standin::Shared<Replicate>;

/// The stand-in's state: its script, its log and the predictions it created.
pub(crate) struct Replicate {
    script: Script<Reply>,
    requests: Log<RecordedRequest>,
    predictions: Mutex<HashMap<String, Prediction>>,
}

/// A prediction the stand-in created.
#[derive(Debug, Clone)]
struct Prediction {
    id: String,
    version: String,
    input: Value,
    plan: Plan,
    /// Successful polls so far; the plan's progress.
    polls: usize,
    /// Polls answered with an error so far.
    poll_errors: usize,
    canceled: bool,
}

impl Replicate {
    /// Every request received so far, rejected ones included.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.all()
    }

    /// The requests of one kind, in order.
    pub(crate) fn of(&self, kind: Kind) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|request| request.kind == kind).collect()
    }

    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.of(kind).len()
    }

    /// The status the stand-in would report now for a prediction, without advancing it.
    pub(crate) fn status_of(&self, id: &str) -> Option<String> {
        lock(&self.predictions).get(id).map(|p| status(p).to_owned())
    }

    /// Waits until `kind` was requested `times` times; fails the test after [`SOON`].
    pub(crate) async fn wait_for(&self, kind: Kind, times: usize) {
        let deadline = tokio::time::Instant::now() + SOON;
        while self.count(kind) < times {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stand-in never saw {times} {kind:?} request(s): {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts a stand-in on an ephemeral loopback port. Each valid create takes the next reply;
/// once the script is down to one reply, that reply repeats.
pub(crate) async fn spawn(script: Vec<Reply>) -> StandIn {
    let state = |_: &str| Replicate {
        script: Script::new(script),
        requests: Log::default(),
        predictions: Mutex::new(HashMap::new()),
    };
    standin::spawn(state, Router::new().fallback(handle)).await
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let kind = match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "models", _, _, "predictions"] | ["v1", "predictions"]) => {
            Kind::Create
        }
        (&Method::GET, ["v1", "predictions", _]) => Kind::Poll,
        (&Method::POST, ["v1", "predictions", _, "cancel"]) => Kind::Cancel,
        (&Method::GET, ["files", _, _]) => Kind::Download,
        _ => Kind::Other,
    };
    let json_body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.push(RecordedRequest {
        kind,
        path: path.clone(),
        headers: headers.clone(),
        body: json_body.clone(),
    });
    if kind == Kind::Download {
        return download(&shared, segments[1]);
    }
    if kind == Kind::Other {
        return problem_response(404, "Not found", &format!("{method} {path}: no such route"));
    }
    if let Err(rejection) = check_token(&headers) {
        return rejection;
    }
    match (kind, segments.as_slice()) {
        (Kind::Create, ["v1", "models", owner, name, _]) => {
            create(&shared, &headers, Some(format!("{owner}/{name}")), json_body).await
        }
        (Kind::Create, _) => create(&shared, &headers, None, json_body).await,
        (Kind::Poll, [.., id]) => poll(&shared, id),
        (Kind::Cancel, [.., id, _]) => cancel(&shared, id),
        _ => unreachable!("every kind is handled above"),
    }
}

fn check_token(headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if token.is_none_or(|token| token.trim().is_empty()) {
        let Reply::Error { status, body, .. } = Reply::unauthorized() else { unreachable!() };
        return Err(error_response(status, body, None));
    }
    Ok(())
}

/// `POST /v1/models/{owner}/{name}/predictions` (`model` is `Some`) or `POST /v1/predictions`.
async fn create(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    model: Option<String>,
    body: Value,
) -> Response {
    if let Err(rejection) = check_cancel_after(headers) {
        return rejection;
    }
    let Value::Object(body) = body else {
        return problem_response(400, "Bad request", "The request body must be a JSON object");
    };
    let version = match validate_target(model.as_deref(), &body) {
        Ok(version) => version,
        Err(rejection) => return rejection,
    };
    let input = match validate_input(body.get("input")) {
        Ok(input) => input,
        Err(rejection) => return rejection,
    };
    let plan = match shared.script.next() {
        Reply::Prediction(plan) => plan,
        Reply::Error { status, body, retry_after } => {
            return error_response(status, body, retry_after);
        }
        Reply::Hang => {
            shared.hang().await;
            return problem_response(500, "Internal Server Error", "shutting down");
        }
    };
    let mut predictions = lock(&shared.predictions);
    let id = prediction_id(predictions.len() + 1);
    let prediction = Prediction {
        id: id.clone(),
        version,
        input,
        plan,
        polls: 0,
        poll_errors: 0,
        canceled: false,
    };
    let view = render(&shared.base_url, &prediction);
    predictions.insert(id, prediction);
    (StatusCode::CREATED, axum::Json(view)).into_response()
}

/// `Cancel-After`, when sent, is a duration such as `90s`, `5m` or `1h30m`.
fn check_cancel_after(headers: &HeaderMap) -> Result<(), Response> {
    let Some(value) = headers.get("cancel-after") else { return Ok(()) };
    let text = value.to_str().unwrap_or_default();
    let well_formed = !text.is_empty()
        && humantime::parse_duration(text).is_ok_and(|deadline| deadline >= Duration::from_secs(1))
        && text.chars().all(|c| c.is_ascii_digit() || "hms".contains(c));
    if !well_formed {
        return Err(problem_response(
            400,
            "Invalid Cancel-After header",
            &format!("`{text}` is not a duration such as 30s, 5m or 1h30m"),
        ));
    }
    Ok(())
}

/// The model route takes no `version`; `/v1/predictions` needs one naming our model.
fn validate_target(model: Option<&str>, body: &Map<String, Value>) -> Result<String, Response> {
    let allowed: &[&str] = match model {
        Some(_) => &["input", "webhook", "webhook_events_filter", "stream"],
        None => &["version", "input", "webhook", "webhook_events_filter", "stream"],
    };
    if let Some(extra) = body.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(invalid(&[("", &format!("Additional property {extra} is not allowed"))]));
    }
    match model {
        Some(MODEL) => Ok(VERSION.to_owned()),
        Some(_) => {
            Err(problem_response(404, "Not found", "The requested resource could not be found."))
        }
        None => {
            let version = body.get("version").and_then(Value::as_str).unwrap_or_default();
            // A version id, `owner/name:version`, or (since 2025) `owner/name` alone.
            let id = match version.strip_prefix(MODEL) {
                Some("") => VERSION,
                Some(rest) => rest.strip_prefix(':').unwrap_or(rest),
                None => version,
            };
            if id != VERSION {
                return Err(invalid(&[("version", "Invalid version or not permitted")]));
            }
            Ok(VERSION.to_owned())
        }
    }
}

/// flux-schnell's input schema.
fn validate_input(input: Option<&Value>) -> Result<Value, Response> {
    let Some(Value::Object(input)) = input else {
        return Err(invalid(&[("", "input is required")]));
    };
    let known = [
        "prompt",
        "aspect_ratio",
        "seed",
        "num_outputs",
        "num_inference_steps",
        "output_format",
        "output_quality",
        "disable_safety_checker",
        "go_fast",
        "megapixels",
    ];
    if let Some(unknown) = input.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(invalid(&[(
            "input",
            &format!("Additional property {unknown} is not allowed"),
        )]));
    }
    if input.get("prompt").and_then(Value::as_str).is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid(&[("input", "prompt is required")]));
    }
    if let Some(ratio) = input.get("aspect_ratio")
        && ratio.as_str().and_then(size_for).is_none()
    {
        let names: Vec<&str> = ASPECT_SIZES.iter().map(|(name, ..)| *name).collect();
        let description =
            format!("aspect_ratio must be one of the following: {}", names.join(", "));
        return Err(invalid(&[("input.aspect_ratio", &description)]));
    }
    if let Some(format) = input.get("output_format")
        && !matches!(format.as_str(), Some("webp" | "jpg" | "png"))
    {
        let description = "output_format must be one of the following: webp, jpg, png";
        return Err(invalid(&[("input.output_format", description)]));
    }
    if input.get("seed").is_some_and(|seed| !seed.is_i64()) {
        return Err(invalid(&[("input.seed", "Invalid type. Expected: integer")]));
    }
    Ok(Value::Object(input.clone()))
}

fn invalid(fields: &[(&str, &str)]) -> Response {
    let detail: Vec<String> = fields
        .iter()
        .map(|(field, description)| {
            if field.is_empty() {
                format!("- {description}")
            } else {
                format!("- {field}: {description}")
            }
        })
        .collect();
    let invalid_fields: Vec<Value> = fields
        .iter()
        .map(|(field, description)| json!({"type": "invalid", "field": field, "description": description}))
        .collect();
    let body = json!({
        "title": "Input validation failed",
        "detail": detail.join("\n"),
        "status": 422,
        "invalid_fields": invalid_fields,
    });
    error_response(422, body, None)
}

/// `GET /v1/predictions/{id}`: the plan's next step (or its next scripted poll error).
fn poll(shared: &Shared, id: &str) -> Response {
    let mut predictions = lock(&shared.predictions);
    let Some(prediction) = predictions.get_mut(id) else {
        return problem_response(404, "Not found", "The requested resource could not be found.");
    };
    if let Some(&(status, retry_after)) = prediction.plan.poll_errors.get(prediction.poll_errors) {
        prediction.poll_errors += 1;
        let Reply::Error { body, .. } = (match status {
            429 => Reply::throttled(None),
            status => Reply::server_error(status),
        }) else {
            unreachable!("both build errors")
        };
        return error_response(status, body, retry_after);
    }
    prediction.polls += 1;
    axum::Json(render(&shared.base_url, prediction)).into_response()
}

/// `POST /v1/predictions/{id}/cancel`: running predictions become `canceled`; ended ones stay.
fn cancel(shared: &Shared, id: &str) -> Response {
    let mut predictions = lock(&shared.predictions);
    let Some(prediction) = predictions.get_mut(id) else {
        return problem_response(404, "Not found", "The requested resource could not be found.");
    };
    if matches!(status(prediction), "starting" | "processing") {
        prediction.canceled = true;
    }
    axum::Json(render(&shared.base_url, prediction)).into_response()
}

/// `GET /files/{id}/out-0.{ext}`: the image for a succeeded prediction, in its output format.
fn download(shared: &Shared, id: &str) -> Response {
    let predictions = lock(&shared.predictions);
    let Some(prediction) = predictions.get(id).filter(|p| status(p) == "succeeded") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if let Some(size) = prediction.plan.file_bytes {
        return ([(header::CONTENT_TYPE, "image/png")], vec![0_u8; size]).into_response();
    }
    let ratio = prediction.input["aspect_ratio"].as_str().unwrap_or("1:1");
    let (width, height) = size_for(ratio).expect("validated aspect ratio");
    let format = prediction.input["output_format"].as_str().unwrap_or("webp");
    let (bytes, content_type) = image(width, height, format);
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// The status a prediction shows after its polls so far.
fn status(prediction: &Prediction) -> &'static str {
    let plan = &prediction.plan;
    if prediction.canceled {
        return "canceled";
    }
    if prediction.polls < plan.starting {
        return "starting";
    }
    if prediction.polls < plan.starting + plan.processing {
        return "processing";
    }
    match plan.end {
        End::Succeeded => "succeeded",
        End::Failed(_) => "failed",
        End::Canceled => "canceled",
        End::Never => "processing",
    }
}

/// The prediction object as Replicate renders it.
fn render(base_url: &str, prediction: &Prediction) -> Value {
    let id = &prediction.id;
    let status = status(prediction);
    let extension = match prediction.input["output_format"].as_str() {
        Some("png") => "png",
        Some("jpg") => "jpg",
        _ => "webp",
    };
    let file = format!("{base_url}/files/{id}/out-0.{extension}");
    let output = match status {
        "succeeded" if prediction.plan.single_output => json!(file),
        "succeeded" => json!([file]),
        _ => Value::Null,
    };
    let error = match (&prediction.plan.end, status) {
        (End::Failed(error), "failed") => json!(error),
        _ => Value::Null,
    };
    let api = if prediction.plan.foreign_urls { FOREIGN_ORIGIN } else { base_url };
    let ended = matches!(status, "succeeded" | "failed" | "canceled");
    json!({
        "id": id,
        "model": MODEL,
        "version": prediction.version,
        "input": prediction.input,
        "logs": if status == "starting" { "" } else { "Using seed: 1234\n" },
        "output": output,
        "data_removed": false,
        "error": error,
        "status": status,
        "created_at": "2025-06-01T12:00:00.000000Z",
        "started_at": if status == "starting" { Value::Null } else { json!("2025-06-01T12:00:00.500000Z") },
        "completed_at": if ended { json!("2025-06-01T12:00:01.200000Z") } else { Value::Null },
        "urls": {
            "get": format!("{api}/v1/predictions/{id}"),
            "cancel": format!("{api}/v1/predictions/{id}/cancel"),
            "web": format!("https://replicate.com/p/{id}"),
        },
        "metrics": if ended { json!({"predict_time": 0.7}) } else { json!({}) },
    })
}

fn problem_response(status: u16, title: &str, detail: &str) -> Response {
    let Reply::Error { status, body, .. } = problem(status, title, detail) else { unreachable!() };
    error_response(status, body, None)
}

fn error_response(status: u16, body: Value, retry_after: Option<&'static str>) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid scripted status");
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let Some(value) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(value));
    }
    response
}

/// A real image in the requested format.
fn image(width: u32, height: u32, format: &str) -> (Vec<u8>, &'static str) {
    let (format, content_type) = match format {
        "png" => (image::ImageFormat::Png, "image/png"),
        "jpg" => (image::ImageFormat::Jpeg, "image/jpeg"),
        _ => (image::ImageFormat::WebP, "image/webp"),
    };
    (encode(width, height, format), content_type)
}
