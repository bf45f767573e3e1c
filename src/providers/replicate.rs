//! The Replicate provider: Replicate's own asynchronous model (create a prediction, poll it until
//! it ends, download its output file) inside one [`ImageProvider::generate`] call, so that a job
//! is one prediction. Dropping the call cancels the prediction at Replicate.
//!
//! The wire format follows Replicate's HTTP API reference (<https://replicate.com/docs/reference/http>)
//! and its prediction guides (<https://replicate.com/docs/topics/predictions/lifecycle>):
//! `POST /v1/models/{owner}/{name}/predictions` with `{"input": {...}}` (or `POST /v1/predictions`
//! with `{"version", "input"}` for a pinned version), `Authorization: Bearer`, an optional
//! `Cancel-After` deadline; the prediction object (`id`, `status` `starting` | `processing` |
//! `succeeded` | `failed` | `canceled` | `aborted`, `output`, `error`, `urls.get`,
//! `urls.cancel`); `POST urls.cancel`; output files on Replicate's delivery host, fetched without
//! the token. Errors are problem JSON; see `replicate/wire.rs`.

mod settings;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::{Origin, Url};

pub use self::settings::ReplicateConfig;
use self::wire::{Prediction, Status};
use super::{
    GeneratedImage, ImageProvider, ImageRequest, ProviderError,
    http::{Api, Credential, MAX_ERROR_BODY_BYTES, parse_retry_after, read_capped, transport_error},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// A prediction object is a few KiB (the input echoed, a few log lines); a body far beyond that
/// is not one.
const MAX_PREDICTION_BYTES: usize = 4 * 1024 * 1024;

/// Failed polls in a row (5xx, timeouts, broken connections) tolerated before giving up: the
/// prediction keeps running at Replicate meanwhile, and starting over would pay for it twice.
const MAX_POLL_FAILURES: u32 = 3;

/// The `aspect_ratio` values of the FLUX models (`flux-schnell`, `flux-dev`, `flux-1.1-pro`), as
/// `(name, width, height)`. The model draws at its own pixel size for each (about a megapixel),
/// so we ask for the ratio nearest the requested size and the job records what came back.
const ASPECT_RATIOS: [(&str, u32, u32); 11] = [
    ("1:1", 1, 1),
    ("16:9", 16, 9),
    ("21:9", 21, 9),
    ("3:2", 3, 2),
    ("2:3", 2, 3),
    ("4:5", 4, 5),
    ("5:4", 5, 4),
    ("3:4", 3, 4),
    ("4:3", 4, 3),
    ("9:16", 9, 16),
    ("9:21", 9, 21),
];

/// Draws images with a model hosted on Replicate (`black-forest-labs/flux-schnell` by default).
#[derive(Debug)]
pub struct ReplicateProvider {
    api: Api,
    /// The token, as [`Api`] sends it: kept apart for the cancel a dropped call spawns.
    credential: Credential,
    /// Where predictions are created: the model's own endpoint, or `/v1/predictions` when a
    /// version is pinned.
    create_url: Url,
    /// `{base_url}/v1/predictions`, for poll and cancel URLs a response leaves out.
    predictions_url: Url,
    /// The API's origin. The token goes nowhere else: a poll or cancel URL a response names on
    /// another origin is never followed.
    origin: Origin,
    /// The pinned version id, sent as `version`; `None` runs the model's latest version.
    version: Option<String>,
    /// `owner/name`, for the job record.
    model: String,
    poll_interval: Duration,
    deadline: Duration,
    typical_latency: Duration,
}

/// The registry's entry: `[providers.replicate]` and `REPLICATE_API_TOKEN`. `auto` never
/// picks it.
impl ProviderSpec for ReplicateProvider {
    const NAME: &'static str = "replicate";
    type Settings = ReplicateConfig;
    /// The variable Replicate's own clients and examples read.
    const ENV: &'static [EnvVar] = &[EnvVar::plain("REPLICATE_API_TOKEN", "api_key")];

    fn check(settings: &ReplicateConfig) -> Result<(), SetupError> {
        settings.check()
    }

    /// Checks the token, model and base URL once, so that a bad configuration fails at start.
    fn build(config: &ReplicateConfig, context: &Context) -> Result<Self, SetupError> {
        config.check()?;
        let credential =
            spec::credential::<Self>(config.api_key.as_ref(), AUTHORIZATION, Some("Bearer"))?;
        let Some((owner, name, version)) = parse_model(&config.model) else {
            let message = format!("`{}` is not a model name", config.model);
            return Err(SetupError::invalid(Self::NAME, "model", message));
        };
        let bad_base_url = || SetupError::base_url(Self::NAME, &config.base_url);
        let endpoint = |path: &str| {
            super::http::endpoint_url(&config.base_url, path).ok_or_else(bad_base_url)
        };
        let predictions_url = endpoint("v1/predictions")?;
        let create_url = match version {
            Some(_) => predictions_url.clone(),
            None => endpoint(&format!("v1/models/{owner}/{name}/predictions"))?,
        };
        Ok(Self {
            api: Api::new(context.http.clone(), Some(credential.clone()), *config.request_timeout),
            credential,
            origin: create_url.origin(),
            create_url,
            predictions_url,
            version: version.map(str::to_owned),
            model: format!("{owner}/{name}"),
            poll_interval: *config.poll_interval,
            deadline: *config.deadline,
            typical_latency: *config.typical_latency,
        })
    }
}

impl ReplicateProvider {

    /// Replaces the output size cap; tests use it to reach the cap without 64 MiB files.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }

    /// `POST` the prediction. Answers the prediction object as created (usually `starting`).
    async fn create(&self, request: &ImageRequest) -> Result<Prediction, ProviderError> {
        let mut body = Map::new();
        if let Some(version) = &self.version {
            body.insert("version".to_owned(), json!(version));
        }
        body.insert("input".to_owned(), Value::Object(input(request)));
        let post = self.api.http.post(self.create_url.clone());
        // Replicate stops the prediction itself at the deadline, even if we are gone by then.
        let post = post.header("cancel-after", cancel_after(self.deadline)).json(&body);
        let response = self.api.send(post).await?;
        self.read_prediction(response).await
    }

    /// `GET urls.get` once.
    async fn poll(&self, url: &Url) -> Result<Prediction, ProviderError> {
        let response = self.api.send(self.api.http.get(url.clone())).await?;
        self.read_prediction(response).await
    }

    async fn read_prediction(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Prediction, ProviderError> {
        let status = response.status();
        if !status.is_success() {
            let retry_after = parse_retry_after(response.headers());
            let body = read_capped(&mut response, MAX_ERROR_BODY_BYTES).await?.unwrap_or_default();
            return Err(wire::status_error(status, retry_after, &body, self.credential.secret.expose()));
        }
        let body = read_capped(&mut response, MAX_PREDICTION_BYTES).await?.ok_or_else(|| {
            ProviderError::InvalidResponse(format!(
                "a prediction object over {MAX_PREDICTION_BYTES} bytes"
            ))
        })?;
        serde_json::from_slice(&body).map_err(|error| {
            ProviderError::InvalidResponse(format!("not a prediction object: {error}"))
        })
    }

    /// Polls until the prediction ends or the deadline passes. A 429 waits as long as it asks;
    /// a few transient failures in a row are waited out, since the prediction runs on meanwhile.
    async fn wait(
        &self,
        mut prediction: Prediction,
        started: Instant,
    ) -> Result<Prediction, ProviderError> {
        // Created already ended (a fast model, a cached result): there is nothing to follow.
        if prediction.status() != Status::Running {
            return Ok(prediction);
        }
        let poll_url = self.poll_url(&prediction)?;
        let mut failures = 0;
        let mut wait = self.poll_interval;
        while prediction.status() == Status::Running {
            if started.elapsed() + wait > self.deadline {
                return Err(ProviderError::Timeout);
            }
            tokio::time::sleep(wait).await;
            wait = self.poll_interval;
            match self.poll(&poll_url).await {
                Ok(next) => {
                    failures = 0;
                    if next.status != prediction.status {
                        tracing::debug!(id = ?next.id, status = ?next.status, "replicate polled");
                    }
                    prediction = next;
                }
                Err(ProviderError::RateLimited { retry_after }) => {
                    wait = retry_after.unwrap_or(self.poll_interval).max(self.poll_interval);
                }
                Err(error) if error.is_retryable() && failures + 1 < MAX_POLL_FAILURES => {
                    failures += 1;
                    tracing::debug!(%error, failures, "replicate poll failed; polling again");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(prediction)
    }

    /// Fetches the output file. It lives on Replicate's delivery host, which needs no token, so
    /// none is sent.
    async fn download(&self, prediction: &Prediction) -> Result<GeneratedImage, ProviderError> {
        let invalid = |what: String| ProviderError::InvalidResponse(what);
        if prediction.data_removed {
            return Err(invalid("the output was already removed".to_owned()));
        }
        let text = prediction
            .output_url()
            .ok_or_else(|| invalid("a succeeded prediction without an output URL".to_owned()))?;
        let url = output_url(&self.origin, text)?;
        // Output files live on Replicate's delivery host: fetched without the token.
        let get = self.api.http.get(url).timeout(self.api.timeout);
        let mut response = get.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                429 | 500..=599 => ProviderError::Unavailable {
                    status: status.as_u16(),
                    retry_after: parse_retry_after(response.headers()),
                },
                other => invalid(format!("the output file answered HTTP {other}")),
            });
        }
        let limit = self.api.body_limit;
        let bytes = read_capped(&mut response, limit)
            .await?
            .ok_or_else(|| invalid(format!("the output file exceeds {limit} bytes")))?;
        if bytes.is_empty() {
            return Err(invalid("an empty output file".to_owned()));
        }
        Ok(GeneratedImage { bytes: bytes.into(), model: self.model.clone() })
    }

    /// `urls.get`, which must be on the API's origin; built from the id when absent.
    fn poll_url(&self, prediction: &Prediction) -> Result<Url, ProviderError> {
        let named = prediction.urls.as_ref().and_then(|urls| urls.get.as_deref());
        match named {
            Some(text) => self.same_origin(text).ok_or_else(|| {
                ProviderError::InvalidResponse(
                    "the poll URL is not on the API's origin; not following it".to_owned(),
                )
            }),
            None => self.prediction_url(prediction, "").ok_or_else(|| {
                ProviderError::InvalidResponse("a prediction without an id".to_owned())
            }),
        }
    }

    /// `urls.cancel` when it is on the API's origin, else the documented cancel URL for the id,
    /// so that even a surprising answer cannot send the token elsewhere or leave us unable to
    /// stop the prediction.
    fn cancel_url(&self, prediction: &Prediction) -> Option<Url> {
        let named = prediction.urls.as_ref().and_then(|urls| urls.cancel.as_deref());
        named
            .and_then(|text| self.same_origin(text))
            .or_else(|| self.prediction_url(prediction, "/cancel"))
    }

    fn same_origin(&self, text: &str) -> Option<Url> {
        Url::parse(text).ok().filter(|url| url.origin() == self.origin)
    }

    /// `{base_url}/v1/predictions/{id}{suffix}`, for an id that is a plain token.
    fn prediction_url(&self, prediction: &Prediction, suffix: &str) -> Option<Url> {
        let id = prediction.id.as_deref().filter(|id| is_token(id))?;
        Url::parse(&format!("{}/{id}{suffix}", self.predictions_url)).ok()
    }
}

#[async_trait]
impl ImageProvider for ReplicateProvider {
    fn name(&self) -> &'static str {
        "replicate"
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }


    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let started = Instant::now();
        let prediction = self.create(request).await?;
        tracing::debug!(
            id = ?prediction.id,
            status = ?prediction.status,
            model = %self.model,
            "replicate prediction created"
        );
        // From here on, a dropped future or an error before the end cancels the prediction.
        let mut guard = CancelOnDrop {
            http: self.api.http.clone(),
            url: self.cancel_url(&prediction),
            authorization: self.credential.value.clone(),
            timeout: self.api.timeout,
        };
        let prediction = self.wait(prediction, started).await?;
        guard.disarm();
        match prediction.status() {
            Status::Succeeded => self.download(&prediction).await,
            Status::Failed => {
                let error = wire::failure(&prediction);
                tracing::debug!(id = ?prediction.id, %error, "replicate prediction failed");
                Err(error)
            }
            Status::Canceled => Err(ProviderError::InvalidResponse(
                "the prediction was canceled at Replicate (by its owner or its deadline)"
                    .to_owned(),
            )),
            // Aborted: the deadline passed before it started. (`wait` returns only ended
            // predictions; one still running would be out of time all the same.)
            Status::Aborted | Status::Running => Err(ProviderError::Timeout),
        }
    }
}

/// Cancels a prediction that is still running when the future driving it goes away (the job
/// was cancelled or timed out) or gives up on it, so that nobody pays for a picture nobody will
/// see. Best effort: the request runs in a task of its own, and its failure is only logged.
struct CancelOnDrop {
    http: reqwest::Client,
    /// `None` once the prediction ended (or when there is nowhere to send the cancel).
    url: Option<Url>,
    authorization: HeaderValue,
    timeout: Duration,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.url = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else { return };
        // Dropped outside a runtime (a runtime shutting down): nothing can send it any more.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .timeout(self.timeout);
        runtime.spawn(async move {
            match request.send().await {
                Ok(response) => {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        "replicate prediction canceled"
                    );
                }
                Err(error) => {
                    let error = transport_error(error);
                    tracing::warn!(%error, "could not cancel an abandoned replicate prediction");
                }
            }
        });
    }
}

/// `(owner, name, version)` from `owner/name` or `owner/name:version`.
fn parse_model(model: &str) -> Option<(&str, &str, Option<&str>)> {
    let (reference, version) = match model.trim().split_once(':') {
        Some((reference, version)) => (reference, Some(version)),
        None => (model.trim(), None),
    };
    let (owner, name) = reference.split_once('/')?;
    let is_name = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let version_ok = version.is_none_or(is_token);
    (is_name(owner) && is_name(name) && version_ok).then_some((owner, name, version))
}

/// Prediction ids and version ids: letters and digits only, so they are safe in a URL path.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.len() <= 128 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The model input: what FLUX models take, and nothing they might reject.
fn input(request: &ImageRequest) -> Map<String, Value> {
    let mut input = Map::new();
    input.insert("prompt".to_owned(), json!(request.prompt));
    input.insert("aspect_ratio".to_owned(), json!(aspect_ratio(request.width, request.height)));
    // The pipeline validates PNG, JPEG and WebP alike; PNG is lossless and what we store.
    input.insert("output_format".to_owned(), json!("png"));
    // Seed 0 is "random" here; any other seed is passed on, within the 32 bits models accept.
    if request.seed != 0 {
        input.insert("seed".to_owned(), json!(request.seed % (1 << 32)));
    }
    input
}

/// The supported ratio nearest `width:height`.
fn aspect_ratio(width: u32, height: u32) -> &'static str {
    super::nearest_ratio(&ASPECT_RATIOS, width, height)
}

/// `Cancel-After` in whole seconds, rounded up so that a deadline never comes early.
fn cancel_after(deadline: Duration) -> String {
    let seconds = deadline.as_secs() + u64::from(deadline.subsec_nanos() > 0);
    format!("{}s", seconds.max(1))
}

/// Where the output may be fetched from: any `https` URL (Replicate's delivery host and its
/// subdomains change), or a plain-http URL on the API's own origin (a local proxy or stand-in).
fn output_url(api_origin: &Origin, text: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(text)
        .map_err(|_| ProviderError::InvalidResponse("the output is not a URL".to_owned()))?;
    let allowed = url.has_host()
        && (url.scheme() == "https" || (url.scheme() == "http" && url.origin() == *api_origin));
    if !allowed {
        return Err(ProviderError::InvalidResponse(
            "the output URL is neither https nor on the API's origin".to_owned(),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
