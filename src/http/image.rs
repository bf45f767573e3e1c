//! `GET /v1/jobs/{id}/image[?w=512&format=webp]`, which answers at once: a placeholder while
//! the job works (its newest partial image once it has one), the image once done, a failure
//! image otherwise. `w` and `format` select a rendition of the finished image, rendered once
//! on the image pool and kept.
//!
//! The image URL is a capability: the unguessable job id is the credential, because the
//! parties that fetch it (OpenAI Realtime's `input_image`, a browser `<img>`) cannot send our
//! bearer token.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::{
    images::{
        ImageFormat, Variant,
        files::Stored,
        pipeline::PipelineError,
        placeholder::{PlaceholderKind, placeholder_png},
    },
    jobs::{Job, JobId, JobOutput, JobStatus},
    tools::{
        Services,
        image_record::{ImageJobInput, ImageJobOutput},
    },
};

/// Finished images never change, so clients may keep them for as long as we do.
const FINAL_CACHE: &str = "public, max-age=86400, immutable";
/// A placeholder must never be mistaken for the final image by any cache.
const PLACEHOLDER_CACHE: &str = "no-store";
/// A rendition request waits this long for the image pool before being told to come back.
const RENDER_WAIT: Duration = Duration::from_secs(20);

pub(super) async fn image(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let variant = Variant::parse_query(query.as_deref().unwrap_or_default())
        .map_err(|error| ApiError::BadQuery(error.to_string()))?;
    let not_found = || ApiError::JobNotFound(id.clone());
    let job_id = JobId::parse(&id).ok_or_else(not_found)?;
    let job = services
        .runner
        .get(&job_id)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .ok_or_else(not_found)?;
    if job.produces != JobOutput::Image {
        return Err(not_found());
    }
    let Some(input) = ImageJobInput::of(&job) else { return Err(not_found()) };
    let kind = match job.status {
        JobStatus::Completed => {
            return final_image(&services, &job, variant, &request_headers).await;
        }
        JobStatus::Working => match partial_image(&services, &job).await {
            Some(response) => return Ok(response),
            None => PlaceholderKind::InProgress,
        },
        JobStatus::Failed => PlaceholderKind::Failed,
        JobStatus::Cancelled => PlaceholderKind::Cancelled,
    };
    let png = placeholder_png(kind, input.size);
    Ok(image_response(StatusCode::OK, "image/png", PLACEHOLDER_CACHE, &job, None, Body::from(png)))
}

/// The newest partial image of a working job that has shown one, as a placeholder that must
/// not be cached. `None` when there is none (yet, or it was just replaced by the final image).
async fn partial_image(services: &Services, job: &Job) -> Option<Response> {
    let shown = job.progress.as_ref()?.get("partial_images")?.as_u64()?;
    let bytes = services.pipeline.files().read(&job.id, &Stored::Partial).await.ok()?;
    let mime = ImageFormat::sniff(&bytes)?.mime();
    let mut response =
        image_response(StatusCode::OK, mime, PLACEHOLDER_CACHE, job, None, Body::from(bytes));
    response.headers_mut().insert("offstage-partial-image", HeaderValue::from(shown));
    Some(response)
}

/// The original, or the rendition the query names (rendered now if it is the first ask).
async fn final_image(
    services: &Services,
    job: &Job,
    variant: Variant,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let gone = || ApiError::JobNotFound(job.id.to_string());
    let output = ImageJobOutput::of(job).ok_or_else(gone)?;
    let rendition = variant.resolve(&output.image);
    let (format, tag) = match rendition {
        Some(rendition) => (rendition.format, format!("\"{}-{}\"", job.id, rendition.file_name())),
        None => (output.image.format, format!("\"{}\"", job.id)),
    };
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|given| given.trim() == tag || given.trim() == "*")
        });
    if matches {
        let response = image_response(
            StatusCode::NOT_MODIFIED,
            format.mime(),
            FINAL_CACHE,
            job,
            Some(&tag),
            Body::empty(),
        );
        return Ok(response);
    }
    let Some(rendition) = rendition else {
        let original = Stored::Original(output.image.format);
        return serve_stored(services, job, &original, format, &tag, None).await;
    };
    let rendered = services.pipeline.rendition(&job.id, &output.image, rendition);
    let fresh = match tokio::time::timeout(RENDER_WAIT, rendered).await {
        Err(_elapsed) => return Err(ApiError::Busy("the image pool is busy; try again shortly")),
        Ok(Err(PipelineError::Storage(error))) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(job = %job.id, %error, "completed job has no image file");
            return Err(gone());
        }
        Ok(Err(error)) => return Err(ApiError::Internal(error.to_string())),
        Ok(Ok(found)) => found,
    };
    let stored = Stored::Rendition(rendition.file_name());
    let cache = Some(if fresh { "miss" } else { "hit" });
    serve_stored(services, job, &stored, format, &tag, cache).await
}

/// Streams a stored image. `cache` says whether a rendition was found (`hit`) or made now.
async fn serve_stored(
    services: &Services,
    job: &Job,
    stored: &Stored,
    format: ImageFormat,
    tag: &str,
    cache: Option<&'static str>,
) -> Result<Response, ApiError> {
    let opened = services.pipeline.files().open_stream(&job.id, stored).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            tracing::warn!(job = %job.id, %error, "completed job has no image file");
            ApiError::JobNotFound(job.id.to_string())
        } else {
            ApiError::Internal(format!("could not read a stored image: {error}"))
        }
    })?;
    let body = Body::from_stream(opened.body);
    let mut response =
        image_response(StatusCode::OK, format.mime(), FINAL_CACHE, job, Some(tag), body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.length));
    if let Some(cache) = cache {
        headers.insert("offstage-rendition", HeaderValue::from_static(cache));
    }
    Ok(response)
}

fn image_response(
    status: StatusCode,
    mime: &'static str,
    cache: &'static str,
    job: &Job,
    etag: Option<&str>,
    body: Body,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("offstage-job-status", HeaderValue::from_static(job.status.as_str()));
    if let Some(etag) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}
