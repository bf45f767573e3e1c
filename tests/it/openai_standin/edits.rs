//! The stand-in's `POST /v1/images/edits`: it reads the multipart body as the real API does,
//! checks the image part (present, named, typed, and really an image of that type) and the
//! fields our provider sends, records everything, and answers from the shared script.

use std::sync::{Arc, PoisonError};

use axum::{
    extract::{Multipart, State, multipart::MultipartRejection},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};
use serde_json::Value;

use super::{RecordedFile, RecordedRequest, Rejection, Reply, Shared, check_auth, error};

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
    let (fields, files) = parts.clone().unwrap_or_default();
    let request = RecordedRequest {
        method,
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body: Value::Null,
        fields,
        files,
    };
    shared.requests.lock().unwrap_or_else(PoisonError::into_inner).push(request.clone());
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
    match shared.next_reply() {
        Reply::Stream(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The stand-in was scripted to stream, but edits are not streamed here.",
            None,
            None,
        ),
        reply => shared.answer(reply).await,
    }
}

type Parts = (Vec<(String, String)>, Vec<RecordedFile>);

async fn read_parts(mut multipart: Multipart) -> Result<Parts, String> {
    let (mut fields, mut files) = (Vec::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|error| error.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        if file_name.is_some() {
            let bytes = field.bytes().await.map_err(|error| error.body_text())?.to_vec();
            files.push(RecordedFile { name, file_name, content_type, bytes });
        } else {
            fields.push((name, field.text().await.map_err(|error| error.body_text())?));
        }
    }
    Ok((fields, files))
}

/// The checks the real endpoint makes on what our provider sends, with its wording. Stricter
/// in one way: `model` and `size` are required, because our provider always sends them.
fn validate(request: &RecordedRequest) -> Result<(), Rejection> {
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
fn check_image(request: &RecordedRequest, gpt_image: bool) -> Result<(), Rejection> {
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
