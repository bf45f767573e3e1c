//! `GET /v1/jobs/{id}` (JSON) and `GET /v1/jobs/{id}/image`, which answers at once: a
//! placeholder while the job works, the image once done, a failure image otherwise.
//!
//! The image URL is a capability: the unguessable job id is the credential, because the
//! parties that fetch it (OpenAI Realtime's `input_image`, a browser `<img>`) cannot send our
//! bearer token. The JSON view needs the token like `/mcp`.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use crate::{
    images::placeholder::{PlaceholderKind, placeholder_png},
    jobs::{Job, JobId, JobStatus},
    tools::{
        Caller, Services, edit_image,
        generate_image::{ImageJobInput, ImageJobOutput},
    },
};

/// Finished images never change, so clients may keep them for as long as we do.
const FINAL_CACHE: &str = "public, max-age=86400, immutable";
/// A placeholder must never be mistaken for the final image by any cache.
const PLACEHOLDER_CACHE: &str = "no-store";

pub async fn job(
    State(services): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = services.job_for(&caller, &id).await.map_err(|_| ApiError::JobNotFound(id))?;
    let view = services.view(&job).await.map_err(|error| ApiError::Internal(error.to_string()))?;
    let mut response = Json(view).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn image(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::JobNotFound(id.clone());
    let job_id = JobId::parse(&id).ok_or_else(not_found)?;
    let job = services
        .runner
        .get(&job_id)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .ok_or_else(not_found)?;
    if !edit_image::produces_image(&job.tool) {
        return Err(not_found());
    }
    let Some(input) = ImageJobInput::of(&job) else { return Err(not_found()) };
    let kind = match job.status {
        JobStatus::Completed => return final_image(&services, &job, &request_headers).await,
        JobStatus::Working => match partial_image(&services, &job).await {
            Some(response) => return Ok(response),
            None => PlaceholderKind::InProgress,
        },
        JobStatus::Failed => PlaceholderKind::Failed,
        JobStatus::Cancelled => PlaceholderKind::Cancelled,
    };
    let png = placeholder_png(kind, input.size);
    Ok(image_response(StatusCode::OK, "image/png", PLACEHOLDER_CACHE, &job, Body::from(png)))
}

/// The newest partial image of a working job that has shown one, as a placeholder that must
/// not be cached. `None` when there is none (yet, or it was just replaced by the final image).
async fn partial_image(services: &Services, job: &Job) -> Option<Response> {
    let shown = job.progress.as_ref()?.get("partial_images")?.as_u64()?;
    let bytes = tokio::fs::read(services.images.partial_path(&job.id)).await.ok()?;
    let mime = match image::guess_format(&bytes).ok()? {
        image::ImageFormat::Png => "image/png",
        image::ImageFormat::Jpeg => "image/jpeg",
        image::ImageFormat::WebP => "image/webp",
        _ => return None,
    };
    let mut response =
        image_response(StatusCode::OK, mime, PLACEHOLDER_CACHE, job, Body::from(bytes));
    response.headers_mut().insert("offstage-partial-image", HeaderValue::from(shown));
    Some(response)
}

async fn final_image(
    services: &Services,
    job: &Job,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let gone = || ApiError::JobNotFound(job.id.to_string());
    let output = ImageJobOutput::of(job).ok_or_else(gone)?;
    let etag = format!("\"{}\"", job.id);
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mime = output.image.format.mime();
    if matches {
        return Ok(image_response(StatusCode::NOT_MODIFIED, mime, FINAL_CACHE, job, Body::empty()));
    }
    let path = services.images.path(&job.id, output.image.format);
    let file = tokio::fs::File::open(&path).await.map_err(|error| {
        tracing::warn!(job = %job.id, %error, "completed job has no image file");
        gone()
    })?;
    let body = Body::from_stream(ReaderStream::new(file));
    let mut response = image_response(StatusCode::OK, mime, FINAL_CACHE, job, body);
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(output.bytes));
    Ok(response)
}

fn image_response(
    status: StatusCode,
    mime: &'static str,
    cache: &'static str,
    job: &Job,
    body: Body,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("offstage-job-status", HeaderValue::from_static(job.status.as_str()));
    if job.status == JobStatus::Completed
        && let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", job.id))
    {
        headers.insert(header::ETAG, etag);
    }
    response
}
