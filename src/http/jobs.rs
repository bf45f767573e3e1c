//! `GET /v1/jobs/{id}`: the job JSON, behind the bearer token like `/mcp` (the image route,
//! a capability URL, is `image.rs`).

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::tools::{Caller, Services};

pub(super) async fn job(
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
