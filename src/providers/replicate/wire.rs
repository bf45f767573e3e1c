//! Replicate's wire format as the provider reads it: the prediction object, the problem JSON of
//! error answers, and what each of them means as a [`ProviderError`]. Pure functions only; the
//! HTTP exchanges live in `replicate.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::super::{ProviderError, http::truncate};

/// The prediction object (`predictions.create` and `predictions.get` answer with it), every field
/// possibly absent so that a surprising answer becomes a clear error rather than a parse failure.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Prediction {
    pub(super) id: Option<String>,
    pub(super) status: Option<String>,
    /// A URL, a list of URLs, or whatever else a model returns; `null` until it succeeded.
    #[serde(default)]
    pub(super) output: Value,
    /// Usually a string; `null` unless the prediction failed.
    #[serde(default)]
    pub(super) error: Value,
    pub(super) urls: Option<PredictionUrls>,
    /// True once Replicate deleted the output files (an hour after an API prediction ends).
    #[serde(default)]
    pub(super) data_removed: bool,
}

/// `urls`: where to poll and where to cancel this prediction.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PredictionUrls {
    pub(super) get: Option<String>,
    pub(super) cancel: Option<String>,
}

/// Where a prediction stands, as far as the provider cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// `starting` or `processing`, and any status we do not know yet: keep polling (the deadline
    /// still bounds the wait).
    Running,
    Succeeded,
    Failed,
    /// Stopped by someone other than us: the owner (dashboard, another client) or, while it
    /// ran, its `Cancel-After` deadline.
    Canceled,
    /// The deadline passed before the prediction started; Replicate does not bill these.
    Aborted,
}

impl Prediction {
    pub(super) fn status(&self) -> Status {
        match self.status.as_deref() {
            Some("succeeded") => Status::Succeeded,
            Some("failed") => Status::Failed,
            Some("canceled") => Status::Canceled,
            Some("aborted") => Status::Aborted,
            _ => Status::Running,
        }
    }

    /// The first output URL: models answer with one URL (`flux-1.1-pro`) or a list of them
    /// (`flux-schnell`, one per `num_outputs`).
    pub(super) fn output_url(&self) -> Option<&str> {
        let first = match &self.output {
            Value::Array(outputs) => outputs.first()?,
            single => single,
        };
        first.as_str().map(str::trim).filter(|url| !url.is_empty())
    }

    /// The `error` text, shortened: it is the model's own message and ends up in job records.
    pub(super) fn error_text(&self) -> String {
        match &self.error {
            Value::Null => String::new(),
            Value::String(text) => truncate(text.trim()),
            other => truncate(&other.to_string()),
        }
    }
}

/// Words in a failed prediction's `error` that mean a safety checker declined: the NSFW checkers
/// of the FLUX and Stable Diffusion models ("NSFW content detected. Try running it again, or
/// try a different prompt."), and the "flagged as sensitive" of hosted partner models.
const REFUSAL_MARKERS: &[&str] =
    &["nsfw", "safety", "sensitive", "content policy", "moderation", "flagged", "inappropriate"];

/// Words that mark a failure of the machinery rather than of the request: Replicate's own
/// "Prediction interrupted; please retry", a worker out of memory, a model setup that timed out.
const TRANSIENT_MARKERS: &[&str] = &[
    "interrupted",
    "please retry",
    "out of memory",
    "timed out",
    "temporarily unavailable",
    "failed to start",
];

/// What a prediction that ended `failed` means. A refusal is final and spoken as one; a
/// failure of Replicate's machinery is worth another prediction, so it is reported as
/// `Unavailable` with 503 standing for "the service could not run it" (no HTTP answer carried
/// that status); anything else is the model rejecting what we sent, which trying again will not
/// change.
pub(super) fn failure(prediction: &Prediction) -> ProviderError {
    let error = prediction.error_text();
    let lowered = error.to_lowercase();
    if REFUSAL_MARKERS.iter().any(|marker| lowered.contains(marker)) {
        return ProviderError::Refused { reason: error };
    }
    if TRANSIENT_MARKERS.iter().any(|marker| lowered.contains(marker)) {
        return ProviderError::Unavailable { status: 503, retry_after: None };
    }
    if error.is_empty() {
        return ProviderError::InvalidResponse("the prediction failed without an error".to_owned());
    }
    ProviderError::InvalidResponse(format!("the prediction failed: {error}"))
}

/// Problem JSON (RFC 7807) as Replicate sends it with every error status:
/// `{"title", "detail", "status"}`, and for 422 `invalid_fields` naming each rejected field.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    invalid_fields: Vec<InvalidField>,
}

#[derive(Debug, Deserialize)]
struct InvalidField {
    field: Option<String>,
    description: Option<String>,
}

impl Problem {
    /// `detail`, else `title`, followed by each invalid field's description.
    fn message(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(text) = self.detail.as_deref().or(self.title.as_deref()) {
            parts.push(text.trim().to_owned());
        }
        for invalid in &self.invalid_fields {
            match (invalid.field.as_deref(), invalid.description.as_deref()) {
                (Some(field), Some(text)) if !field.is_empty() => {
                    parts.push(format!("{field}: {text}"));
                }
                (_, Some(text)) => parts.push(text.to_owned()),
                (Some(field), None) => parts.push(format!("{field}: invalid")),
                (None, None) => {}
            }
        }
        parts.retain(|part| !part.is_empty());
        parts.join("; ")
    }
}

/// Maps a non-2xx answer of the API, following the documented meaning of each status.
/// `api_key` is scrubbed from anything passed on, in case a proxy echoes it.
pub(super) fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    api_key: &str,
) -> ProviderError {
    // A body that is not problem JSON (a proxy's HTML page) still has a meaningful status.
    let problem = serde_json::from_slice::<Problem>(body).unwrap_or_default();
    let message = || match problem.message() {
        text if text.is_empty() => format!("HTTP {}", status.as_u16()),
        text => truncate(&text.replace(api_key, "<redacted>")),
    };
    match status.as_u16() {
        401 => ProviderError::Unauthorized,
        // "Insufficient credit": more attempts cannot help until someone buys some.
        402 => ProviderError::QuotaExhausted,
        // The token may not run this model (a private one of another account).
        403 => ProviderError::Unauthorized,
        404 => ProviderError::BadRequest(format!("model or prediction not found: {}", message())),
        408 => ProviderError::Unavailable { status: 408, retry_after },
        429 => ProviderError::RateLimited { retry_after },
        // 400 malformed, 409 conflict, 413 too large, 422 `input` rejected by the model's schema.
        400..=499 => ProviderError::BadRequest(message()),
        500..=599 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        other => ProviderError::InvalidResponse(format!("unexpected HTTP status {other}")),
    }
}
