//! The stand-in's `POST /v1/images/edits`: it reads the multipart body as the real API does,
//! checks the image part (present, named, typed, and really an image of that type) and the
//! fields our provider sends, records everything, and answers from the shared script.

use std::sync::Arc;

use axum::{
    extract::{Multipart, State, multipart::MultipartRejection},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};
use serde_json::json;

use super::{Rejection, Reply, Shared, answer, check_auth, error};
use crate::providers::standin::{Recorded, RecordedFile, read_parts};

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let parts = match multipart {
        Ok(multipart) => read_parts(multipart).await,
        Err(rejection) => Err(rejection.body_text()),
    };
    let mut request = Recorded::new(&method, &uri, &headers, &[]);
    (request.fields, request.files) = parts.clone().unwrap_or_default();
    shared.log.push(request.clone());
    let checked = check_auth(&headers).and_then(|()| {
        parts.map_err(|message| Rejection {
            status: StatusCode::BAD_REQUEST,
            message: format!("Could not parse multipart form: {message}"),
            param: None,
            code: None,
        })?;
        validate(&request)
    });
    if let Err(rejection) = checked {
        return rejection.into_response();
    }
    match shared.script.next() {
        Reply::Stream(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The stand-in was scripted to stream, but edits are not streamed here.",
            None,
            None,
        ),
        reply => answer(&shared, reply, &json!({ "size": request.field("size") })).await,
    }
}

/// The checks the real endpoint makes on what our provider sends, with its wording. Stricter
/// in one way: `model` and `size` are required, because our provider always sends them.
fn validate(request: &Recorded) -> Result<(), Rejection> {
    let known = [
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "output_format",
        "response_format",
        "background",
        "input_fidelity",
        "user",
    ];
    if let Some((name, _)) = request.fields.iter().find(|(name, _)| !known.contains(&name.as_str()))
    {
        let message = format!("Unknown parameter: '{name}'.");
        return Err(Rejection::bad(message, "body", "unknown_parameter"));
    }
    for name in ["model", "prompt", "size"] {
        if request.field(name).is_none() {
            let message = format!("Missing required parameter: '{name}'.");
            let param = if name == "model" { "model" } else { "prompt" };
            return Err(Rejection::bad(message, param, "missing_required_parameter"));
        }
    }
    let model = request.field("model").unwrap_or_default();
    let gpt_image = model.starts_with("gpt-image");
    if !gpt_image && model != "dall-e-2" {
        let message =
            format!("Invalid value: '{model}'. Value must be 'dall-e-2' or a GPT image model.");
        return Err(Rejection::bad(message, "model", "invalid_value"));
    }
    if request.field("prompt").is_some_and(|prompt| prompt.trim().is_empty()) {
        let message = "Invalid 'prompt': string too short. Expected a string with minimum \
                       length 1, but got an empty string instead.";
        return Err(Rejection::bad(message.to_owned(), "prompt", "string_below_min_length"));
    }
    let sizes: &[&str] = if gpt_image {
        &["1024x1024", "1536x1024", "1024x1536", "auto"]
    } else {
        &["256x256", "512x512", "1024x1024"]
    };
    let size = request.field("size").unwrap_or_default();
    if !sizes.contains(&size) {
        let message = format!("Invalid value: '{size}'. Supported values are: {sizes:?}.");
        return Err(Rejection::bad(message, "size", "invalid_value"));
    }
    if request.field("n").is_some_and(|n| !n.parse::<u32>().is_ok_and(|n| (1..=10).contains(&n))) {
        let message = "Invalid 'n': expected an integer from 1 to 10.".to_owned();
        return Err(Rejection::bad(message, "n", "invalid_value"));
    }
    if gpt_image && request.field("response_format").is_some() {
        let message = "Unknown parameter: 'response_format'.".to_owned();
        return Err(Rejection::bad(message, "response_format", "unknown_parameter"));
    }
    check_image(request, gpt_image)
}

/// One `image` file part whose declared type is a supported one and matches its bytes.
fn check_image(request: &Recorded, gpt_image: bool) -> Result<(), Rejection> {
    let images: Vec<&RecordedFile> = request
        .files
        .iter()
        .filter(|file| matches!(file.name.as_str(), "image" | "image[]"))
        .collect();
    let [image] = images.as_slice() else {
        let message = if images.is_empty() {
            "Missing required parameter: 'image'.".to_owned()
        } else {
            "Invalid 'image': this stand-in takes exactly one image.".to_owned()
        };
        return Err(Rejection::bad(message, "image", "missing_required_parameter"));
    };
    let supported: &[&str] =
        if gpt_image { &["image/png", "image/jpeg", "image/webp"] } else { &["image/png"] };
    let declared = image.content_type.as_deref().unwrap_or("application/octet-stream");
    let sniffed = image::guess_format(&image.bytes).ok().map(|format| format.to_mime_type());
    if !supported.contains(&declared) || sniffed != Some(declared) {
        let message = format!(
            "Invalid file 'image': unsupported mimetype ('{declared}'). Supported file formats \
             are {supported:?}."
        );
        return Err(Rejection::bad(message, "image", "invalid_image_format"));
    }
    Ok(())
}
