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
mod stream;

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use reqwest::{
    RequestBuilder, StatusCode,
    header::{CONTENT_TYPE, HeaderMap},
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    EditRequest, GeneratedImage, ImageProvider, ImageRequest, Partials, ProviderBuildError,
    ProviderError,
};
use crate::config::OpenAiConfig;

/// Largest response body we read. A 1536x1024 PNG is a few MiB and base64 adds a third, so
/// anything near this size is a misbehaving server, and reading it all would only waste memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Error bodies are a few hundred bytes; a larger one is read no further and ignored.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Provider messages end up in job records and spoken summaries, so they stay short.
const MAX_MESSAGE_CHARS: usize = 300;

/// Draws images with OpenAI's Images API (`gpt-image-*` or `dall-e-*` models).
#[derive(Debug)]
pub struct OpenAiProvider {
    http: reqwest::Client,
    generations: Url,
    edits: Url,
    api_key: ApiKey,
    model: String,
    quality: String,
    /// `partial_images` asked for when a caller shows partial images; 0 never streams.
    partial_images: u8,
    request_timeout: Duration,
    typical_latency: Duration,
    body_limit: usize,
    /// Where answers are parsed (off the async workers).
    parsing: super::Parsing,
}

/// The API key. Its `Debug` is redacted so that no `{:?}` of the provider can leak it.
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl OpenAiProvider {
    /// Checks the key and base URL once, so that a bad configuration fails at start.
    pub fn new(config: &OpenAiConfig, http: reqwest::Client) -> Result<Self, ProviderBuildError> {
        let api_key = match config.api_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() => ApiKey(key.to_owned()),
            _ => {
                return Err(ProviderBuildError::MissingApiKey {
                    provider: "openai",
                    variable: "OPENAI_API_KEY",
                });
            }
        };
        let endpoint = |path| {
            endpoint_url(&config.base_url, path).ok_or_else(|| ProviderBuildError::BadBaseUrl {
                provider: "openai",
                url: config.base_url.clone(),
            })
        };
        Ok(Self {
            http,
            generations: endpoint("v1/images/generations")?,
            edits: endpoint("v1/images/edits")?,
            api_key,
            model: config.model.clone(),
            quality: config.quality.clone(),
            partial_images: config.partial_images().min(OpenAiConfig::MAX_PARTIAL_IMAGES),
            request_timeout: config.request_timeout,
            typical_latency: config.typical_latency,
            body_limit: MAX_RESPONSE_BYTES,
            parsing: super::Parsing::default(),
        })
    }

    /// Parses answers on the server's image pool.
    pub fn parsing(mut self, parsing: super::Parsing) -> Self {
        self.parsing = parsing;
        self
    }

    /// Replaces [`MAX_RESPONSE_BYTES`], which also caps each streamed event; tests use it to
    /// reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
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
        let mut response = request
            .bearer_auth(&self.api_key.0)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        tracing::debug!(status = status.as_u16(), model = %self.model, "openai images answered");
        if status.is_success() {
            return Ok(response);
        }
        let body = read_capped(&mut response, MAX_ERROR_BODY_BYTES).await?.unwrap_or_default();
        Err(status_error(status, retry_after, &body, &self.api_key))
    }

    /// Reads an `ImagesResponse` body, capped, and decodes its image.
    async fn read_image(
        &self,
        mut response: reqwest::Response,
    ) -> Result<GeneratedImage, ProviderError> {
        let body = read_capped(&mut response, self.body_limit).await?.ok_or_else(|| {
            let limit = self.body_limit;
            ProviderError::InvalidResponse(format!("response body exceeds {limit} bytes"))
        })?;
        let model = self.model.clone();
        self.parsing.run(move || decode_image(&body, model)).await
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

    fn is_remote(&self) -> bool {
        true
    }

    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let post = self.http.post(self.generations.clone()).json(&self.request_body(request));
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
        let response = self.send(self.http.post(self.generations.clone()).json(&body)).await?;
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
            event: self.body_limit,
            total: self.body_limit.saturating_mul(usize::from(self.partial_images) + 1),
        };
        let bytes = stream::read_image(response, limits, partials, &self.api_key).await?;
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
        let response = self.send(self.http.post(self.edits.clone()).multipart(form)).await?;
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
    api_key: &ApiKey,
) -> ProviderError {
    // A body that is not the documented JSON still has a meaningful status.
    let detail = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default().error;
    let detail = detail.unwrap_or_default();
    let code = detail.code.as_deref().unwrap_or_default();
    // The 401 message echoes a masked key; we never pass it on, and scrub the key from any
    // other message in case a compatible server echoes it in full.
    let message = || match detail.message.as_deref() {
        Some(text) if !text.trim().is_empty() => {
            truncate(&text.replace(api_key.0.as_str(), "<redacted>"))
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

// The `pub(super)` helpers below are shared with `gemini`, which speaks HTTP the same way; they
// can move to a module of their own once a third HTTP provider needs them.

/// Reads the whole body unless it exceeds `limit`, then `None`. Content-Length only lets us
/// refuse early: chunked bodies have none, and a server may send more than it announced.
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, ProviderError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Failures below HTTP. Messages name only the innermost cause (for example "Connection
/// refused"): reqwest's own message carries the URL, which we keep out of job records.
pub(super) fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::Timeout;
    }
    let mut cause: &(dyn std::error::Error + 'static) = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = truncate(&cause.to_string());
    if error.is_builder() {
        // Building fails only on our side (for example a key with a newline); retrying won't help.
        ProviderError::BadRequest(format!("could not build the request: {cause}"))
    } else if error.is_connect() {
        ProviderError::Connect(format!("could not connect: {cause}"))
    } else {
        // The connection broke after it was made; as transient as a failed connect.
        ProviderError::Connect(format!("connection failed: {cause}"))
    }
}

/// The wait the server asked for: `retry-after-ms` (sent by OpenAI and read first by
/// openai-python's `_parse_retry_after_header`), else `Retry-After` in seconds or as an
/// HTTP-date (RFC 9110 §10.2.3). A date in the past means "now".
pub(super) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let millis = header("retry-after-ms").and_then(|value| value.trim().parse::<f64>().ok());
    if let Some(wait) = millis.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()) {
        return Some(wait);
    }
    let value = header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

fn endpoint_url(base_url: &str, path: &str) -> Option<Url> {
    super::endpoint_url(base_url, path)
}

pub(super) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("test header value"));
        }
        map
    }

    #[test]
    fn retry_after_reads_whole_and_fractional_seconds() {
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", " 1.5 ")])),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let map = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::from_millis(250)));
    }

    #[test]
    fn unusable_retry_after_ms_falls_back_to_retry_after() {
        let map = headers(&[("retry-after-ms", "soon"), ("retry-after", "3")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_reads_a_future_http_date() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&headers(&[("retry-after", &date)])).expect("a wait");
        // HTTP-dates have whole seconds, and a moment passes between formatting and parsing.
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let map = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::ZERO));
    }

    #[test]
    fn missing_negative_or_garbled_retry_after_is_none() {
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-5")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "NaN")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "tomorrow-ish")])), None);
    }

    #[test]
    fn endpoint_tolerates_trailing_slash_and_keeps_path_prefix() {
        let url = |base: &str| endpoint_url(base, "v1/images/generations").map(String::from);
        let expected = Some("http://127.0.0.1:9/v1/images/generations".to_owned());
        assert_eq!(url("http://127.0.0.1:9"), expected);
        assert_eq!(url("http://127.0.0.1:9/"), expected);
        assert_eq!(
            url("https://proxy.test/openai/").as_deref(),
            Some("https://proxy.test/openai/v1/images/generations")
        );
        assert_eq!(url("ftp://example.com"), None);
        assert_eq!(url("api.openai.com"), None);
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        assert_eq!(truncate(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }
}
