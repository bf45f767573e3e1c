//! The OpenAI Images provider: one `POST {base_url}/v1/images/generations` per image (streamed
//! as Server-Sent Events when partial images are wanted, see [`stream`]) and one multipart
//! `POST {base_url}/v1/images/edits` per edit (see [`edit`]), with every documented failure
//! mapped onto a [`ProviderError`] the job runner can act on.
//!
//! The wire format follows OpenAI's Images API reference as the official SDK encodes it
//! (openai-python `types/image_generate_params.py`, `types/image_edit_params.py` and
//! `types/images_response.py`) and the error-code guide
//! (<https://platform.openai.com/docs/guides/error-codes>), whose error bodies all have the
//! shape `{"error": {"message", "type", "param", "code"}}`.

mod edit;
mod settings;
mod stream;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{RequestBuilder, StatusCode, header::CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use url::Url;

pub use self::settings::OpenAiConfig;
use super::{
    EditRequest, GeneratedImage, ImageProvider, ImageRequest, Partials, ProviderError,
    http::{Api, endpoint_url, parse_retry_after},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// Draws images with OpenAI's Images API (`gpt-image-*` or `dall-e-*` models).
#[derive(Debug)]
pub struct OpenAiProvider {
    api: Api,
    generations: Url,
    edits: Url,
    model: String,
    quality: String,
    /// `partial_images` asked for when a caller shows partial images; 0 never streams.
    partial_images: u8,
    typical_latency: Duration,
}

/// The registry's entry: `[providers.openai]`, `OPENAI_API_KEY` and `OPENAI_BASE_URL`.
impl ProviderSpec for OpenAiProvider {
    const NAME: &'static str = "openai";
    type Settings = OpenAiConfig;
    const ENV: &'static [EnvVar] = &[
        EnvVar::plain("OPENAI_API_KEY", "api_key"),
        // The SDK's variable includes `/v1`; our setting does not.
        EnvVar {
            name: "OPENAI_BASE_URL",
            setting: "base_url",
            normalize: |value| value.trim_end_matches('/').trim_end_matches("/v1").to_owned(),
        },
    ];

    /// `auto` is OpenAI whenever its key is there.
    fn auto(settings: &OpenAiConfig) -> bool {
        settings.api_key.as_ref().is_some_and(|key| !key.is_blank())
    }

    fn check(settings: &OpenAiConfig) -> Result<(), SetupError> {
        settings.check()
    }

    fn build(config: &OpenAiConfig, context: &Context) -> Result<Self, SetupError> {
        config.check()?;
        let credential = spec::credential::<Self>(
            config.api_key.as_ref(),
            http::header::AUTHORIZATION,
            Some("Bearer"),
        )?;
        let endpoint = |path| {
            endpoint_url(&config.base_url, path)
                .ok_or_else(|| SetupError::base_url(Self::NAME, &config.base_url))
        };
        let mut api = Api::new(context.http.clone(), Some(credential), *config.request_timeout);
        api.parsing = context.parsing.clone();
        Ok(Self {
            api,
            generations: endpoint("v1/images/generations")?,
            edits: endpoint("v1/images/edits")?,
            model: config.model.clone(),
            quality: config.quality.clone(),
            partial_images: config.partial_images().min(OpenAiConfig::MAX_PARTIAL_IMAGES),
            typical_latency: *config.typical_latency,
        })
    }
}

impl OpenAiProvider {

    /// Replaces [`MAX_RESPONSE_BYTES`](super::http::MAX_RESPONSE_BYTES), which also caps each
    /// streamed event; tests use it to reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }

    fn request_body<'a>(&'a self, request: &'a ImageRequest) -> GenerateBody<'a> {
        // gpt-image models always answer in base64 and reject `response_format` with 400
        // `unknown_parameter`; dall-e models answer with a URL unless asked for `b64_json`.
        let gpt_image = self.model.starts_with("gpt-image");
        let dall_e = self.model.starts_with("dall-e");
        GenerateBody {
            model: &self.model,
            prompt: &request.prompt,
            n: 1,
            size: format!("{}x{}", request.width, request.height),
            quality: &self.quality,
            output_format: gpt_image.then_some("png"),
            response_format: dall_e.then_some("b64_json"),
            stream: None,
            partial_images: None,
        }
    }

    /// Sends one authenticated request; a non-2xx answer becomes its [`ProviderError`].
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ProviderError> {
        let mut response = self.api.send(request).await?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        tracing::debug!(status = status.as_u16(), model = %self.model, "openai images answered");
        if status.is_success() {
            return Ok(response);
        }
        let body = self.api.read_error(&mut response).await?;
        Err(status_error(status, retry_after, &body, &self.api))
    }

    /// Reads an `ImagesResponse` body, capped, and decodes its image.
    async fn read_image(
        &self,
        mut response: reqwest::Response,
    ) -> Result<GeneratedImage, ProviderError> {
        let body = self.api.read_body(&mut response).await?;
        let model = self.model.clone();
        self.api.parsing.run(move || decode_image(&body, model)).await
    }
}

/// The image of an `ImagesResponse` body (CPU work: run it off the async workers).
fn decode_image(body: &[u8], model: String) -> Result<GeneratedImage, ProviderError> {
    let invalid = |what: &str| ProviderError::InvalidResponse(what.to_owned());
    let parsed: ImagesResponse = serde_json::from_slice(body).map_err(|error| {
        ProviderError::InvalidResponse(format!("not the documented JSON: {error}"))
    })?;
    let first = parsed.data.unwrap_or_default().into_iter().next();
    let encoded = first.ok_or_else(|| invalid("no image in `data`"))?.b64_json;
    let encoded = encoded.ok_or_else(|| invalid("the image has no `b64_json`"))?;
    let bytes = super::decode_base64(&base64::engine::general_purpose::STANDARD, &encoded)
        .map_err(|error| {
            ProviderError::InvalidResponse(format!("`b64_json` is not base64: {error}"))
        })?;
    Ok(GeneratedImage { bytes: bytes.into(), model })
}

#[async_trait]
impl ImageProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }


    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let post = self.api.http.post(self.generations.clone()).json(&self.request_body(request));
        let response = self.send(post).await?;
        self.read_image(response).await
    }

    async fn generate_with_partials(
        &self,
        request: &ImageRequest,
        partials: &Partials,
    ) -> Result<GeneratedImage, ProviderError> {
        if !partials.wanted() || self.partial_images == 0 {
            return self.generate(request).await;
        }
        let body = GenerateBody {
            stream: Some(true),
            partial_images: Some(self.partial_images),
            ..self.request_body(request)
        };
        let response = self.send(self.api.http.post(self.generations.clone()).json(&body)).await?;
        let content_type = response.headers().get(CONTENT_TYPE);
        let is_stream = content_type
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
        if !is_stream {
            // A compatible server that does not stream answers as to a plain request.
            return self.read_image(response).await;
        }
        // Each event holds at most one image, so one body's worth; the stream holds every
        // partial image and the final one.
        let limits = stream::StreamLimits {
            event: self.api.body_limit,
            total: self.api.body_limit.saturating_mul(usize::from(self.partial_images) + 1),
        };
        let bytes = stream::read_image(response, limits, partials, &self.api).await?;
        Ok(GeneratedImage { bytes, model: self.model.clone() })
    }

    /// `dall-e-3` has no edit endpoint; `dall-e-2` and the `gpt-image-*` models do.
    fn can_edit(&self) -> bool {
        !self.model.starts_with("dall-e-3")
    }

    async fn edit(&self, request: &EditRequest) -> Result<GeneratedImage, ProviderError> {
        if !self.can_edit() {
            return Err(ProviderError::Unsupported("edit images"));
        }
        let form = edit::form(&self.model, &self.quality, request)?;
        let response = self.send(self.api.http.post(self.edits.clone()).multipart(form)).await?;
        self.read_image(response).await
    }
}

/// `POST /v1/images/generations` as documented in `image_generate_params.py`.
#[derive(Serialize)]
struct GenerateBody<'a> {
    model: &'a str,
    prompt: &'a str,
    n: u32,
    size: String,
    quality: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'static str>,
    /// Only sent when partial images are wanted: a plain request stays as it always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_images: Option<u8>,
}

/// The part of `images_response.py`'s `ImagesResponse` we use; `data` is optional there.
#[derive(Deserialize)]
struct ImagesResponse {
    data: Option<Vec<ImageData>>,
}

#[derive(Deserialize)]
struct ImageData {
    b64_json: Option<String>,
}

/// `{"error": {"message", "type", "param", "code"}}`, every field possibly null.
#[derive(Default, Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Default, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
}

/// Maps a non-2xx answer, following the documented meaning of each status and code.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    api: &Api,
) -> ProviderError {
    // A body that is not the documented JSON still has a meaningful status.
    let detail = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default().error;
    let detail = detail.unwrap_or_default();
    let code = detail.code.as_deref().unwrap_or_default();
    // The 401 message echoes a masked key; we never pass it on, and scrub the key from any
    // other message in case a compatible server echoes it in full.
    let message = || match detail.message.as_deref() {
        Some(text) if !text.trim().is_empty() => {
            api.scrub(text)
        }
        _ => format!("HTTP {}", status.as_u16()),
    };
    match status.as_u16() {
        // Error guide: 401 invalid authentication or `invalid_api_key`; 403 unsupported region.
        401 | 403 => ProviderError::Unauthorized,
        // Error guide: 429 "You exceeded your current quota" carries type and code
        // `insufficient_quota` (retrying cannot help); any other 429 is a rate limit.
        429 if code == "insufficient_quota"
            || detail.kind.as_deref() == Some("insufficient_quota") =>
        {
            ProviderError::QuotaExhausted
        }
        429 => ProviderError::RateLimited { retry_after },
        // gpt-image's safety system answers 400 type `image_generation_user_error`, code
        // `moderation_blocked`; DALL·E answers 400 code `content_policy_violation`.
        400..=499 if matches!(code, "moderation_blocked" | "content_policy_violation") => {
            ProviderError::Refused { reason: message() }
        }
        // openai-python's `_should_retry` retries request (408) and lock (409) timeouts.
        408 | 409 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        400..=499 => ProviderError::BadRequest(message()),
        // Error guide: 500 server error, 503 overloaded; gateways add 502 and 504.
        500..=599 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        other => ProviderError::InvalidResponse(format!("unexpected HTTP status {other}")),
    }
}

