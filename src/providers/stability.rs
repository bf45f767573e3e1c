//! The Stability AI image provider: one multipart `POST {base_url}/v2beta/stable-image/generate/
//! {core|ultra|sd3}` per image, answered with the raw image bytes, with every documented failure
//! mapped onto a [`ProviderError`] the job runner can act on.
//!
//! The wire format follows Stability's API reference (<https://platform.stability.ai/docs/api-reference>,
//! "Stable Image" → "Generate"): a `multipart/form-data` body with `prompt`, `aspect_ratio` (nine
//! ratios), `output_format`, an optional `seed` and, for the `sd3` endpoint, `model`; with
//! `accept: image/*` a 200 carries the image itself, and the `finish-reason` (`SUCCESS` or
//! `CONTENT_FILTERED`) and `seed` response headers. Errors are JSON bodies
//! `{"id", "name", "errors": [...]}` whose `name` is `bad_request`, `unauthorized`,
//! `payment_required`, `content_moderation`, `payload_too_large`, `rate_limit_exceeded` or
//! `server_error`, by status 400, 401, 402, 403, 413, 429 and 500.
//!
//! Edits use the one documented route that changes a whole image from a text prompt without a
//! mask: the `sd3` endpoint with `mode=image-to-image`, the source as the `image` file part and
//! a `strength`; `aspect_ratio` is "only valid for text-to-image requests", as the output takes
//! the source's shape. Core has no image input, so a `core` configuration edits with the
//! default SD3 model.

mod settings;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{
    StatusCode,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE},
    multipart::{Form, Part},
};
use serde::Deserialize;
use url::Url;

pub use self::settings::StabilityConfig;
use super::{
    EditRequest, GeneratedImage, ImageProvider, ImageRequest, ProviderError,
    http::{Api, parse_retry_after},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// The values `aspect_ratio` accepts, as `(name, width, height)`. Stability draws at its own
/// pixel size for each (about one megapixel), so we ask for the ratio nearest the requested
/// size and let the job record the size that came back.
const ASPECT_RATIOS: [(&str, u32, u32); 9] = [
    ("1:1", 1, 1),
    ("2:3", 2, 3),
    ("3:2", 3, 2),
    ("4:5", 4, 5),
    ("5:4", 5, 4),
    ("9:16", 9, 16),
    ("16:9", 16, 9),
    ("9:21", 9, 21),
    ("21:9", 21, 9),
];

/// The SD3 model asked for when the configuration names only the `sd3` endpoint.
const DEFAULT_SD3_MODEL: &str = "sd3.5-large";

/// `seed` is documented as `0..=4294967294`, with 0 meaning "pick one at random".
const MAX_SEED: u64 = 4_294_967_294;

/// How far an edit may move from its source: 0 returns the source, 1 ignores it. Enough to
/// follow an instruction such as "make it night" while keeping the composition.
const EDIT_STRENGTH: &str = "0.6";

/// Draws images with Stable Image Core, Ultra or Stable Diffusion 3.x.
#[derive(Debug)]
pub struct StabilityProvider {
    api: Api,
    endpoint: Url,
    /// The `sd3` endpoint, where every edit goes (image-to-image).
    edit_endpoint: Url,
    /// The `model` form field; only the `sd3` endpoint takes one.
    sd3_model: Option<String>,
    /// What the job record names as the model that drew.
    model: String,
    typical_latency: Duration,
}

/// The registry's entry: `[providers.stability]` and `STABILITY_API_KEY`. `auto` never picks it.
impl ProviderSpec for StabilityProvider {
    const NAME: &'static str = "stability";
    type Settings = StabilityConfig;
    /// The variable Stability's own examples and SDKs read.
    const ENV: &'static [EnvVar] = &[EnvVar::plain("STABILITY_API_KEY", "api_key")];

    fn check(settings: &StabilityConfig) -> Result<(), SetupError> {
        spec::check_base_url::<Self>(&settings.base_url)
    }

    /// Checks the key, model and base URL once, so that a bad configuration fails at start.
    fn build(config: &StabilityConfig, context: &Context) -> Result<Self, SetupError> {
        Self::check(config)?;
        let credential =
            spec::credential::<Self>(config.api_key.as_ref(), AUTHORIZATION, Some("Bearer"))?;
        let (endpoint_name, sd3_model, model) = match config.model.trim() {
            "core" | "stable-image-core" => ("core", None, "stable-image-core".to_owned()),
            "ultra" | "stable-image-ultra" => ("ultra", None, "stable-image-ultra".to_owned()),
            "sd3" => ("sd3", Some(DEFAULT_SD3_MODEL.to_owned()), DEFAULT_SD3_MODEL.to_owned()),
            // `sd3.5-large`, `sd3.5-large-turbo`, `sd3.5-medium`, ... all live under `sd3`.
            model
                if model.starts_with("sd3")
                    && model.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) =>
            {
                ("sd3", Some(model.to_owned()), model.to_owned())
            }
            _ => {
                let message = format!("`{}` is not a model name", config.model);
                return Err(SetupError::invalid(Self::NAME, "model", message));
            }
        };
        let endpoint = |name| {
            endpoint_url(&config.base_url, name)
                .ok_or_else(|| SetupError::base_url(Self::NAME, &config.base_url))
        };
        Ok(Self {
            api: Api::new(context.http.clone(), Some(credential), *config.request_timeout),
            endpoint: endpoint(endpoint_name)?,
            edit_endpoint: endpoint("sd3")?,
            sd3_model,
            model,
            typical_latency: *config.typical_latency,
        })
    }
}

impl StabilityProvider {

    /// Replaces the response size cap; tests use it to reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }

    fn form(&self, request: &ImageRequest) -> Form {
        let mut form = Form::new()
            .text("prompt", request.prompt.clone())
            .text("aspect_ratio", aspect_ratio(request.width, request.height))
            .text("output_format", "png");
        form = with_seed(form, request.seed);
        if let Some(model) = &self.sd3_model {
            form = form.text("model", model.clone());
        }
        form
    }

    /// The SD3 model edits are drawn with: the configured one, else the default.
    fn edit_model(&self) -> &str {
        self.sd3_model.as_deref().unwrap_or(DEFAULT_SD3_MODEL)
    }

    fn edit_form(&self, request: &EditRequest) -> Result<Form, ProviderError> {
        let format = request.format;
        let image = Part::stream_with_length(
            reqwest::Body::from(request.image.clone()),
            request.image.len() as u64,
        )
        .file_name(format!("image.{}", format.extension()))
        .mime_str(format.mime())
        .map_err(|error| {
            ProviderError::BadRequest(format!("could not build the image part: {error}"))
        })?;
        let form = Form::new()
            .text("mode", "image-to-image")
            .part("image", image)
            .text("strength", EDIT_STRENGTH)
            .text("prompt", request.instruction.clone())
            .text("model", self.edit_model().to_owned())
            .text("output_format", "png");
        Ok(with_seed(form, request.seed))
    }

    /// One multipart call that answers with image bytes, or why there are none.
    async fn send(
        &self,
        endpoint: &Url,
        form: Form,
        model: &str,
    ) -> Result<GeneratedImage, ProviderError> {
        // `image/*` asks for the bytes themselves rather than base64 inside JSON.
        let post = self.api.http.post(endpoint.clone()).header(ACCEPT, "image/*");
        let mut response = self.api.send(post.multipart(form)).await?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let header = |name| response.headers().get(name).and_then(|value| value.to_str().ok());
        let finish_reason = header("finish-reason").map(str::to_owned);
        let is_json = header(CONTENT_TYPE.as_str()).is_some_and(|v| v.contains("json"));
        tracing::debug!(
            status = status.as_u16(),
            model,
            finish_reason = finish_reason.as_deref().unwrap_or("-"),
            "stability answered"
        );

        if status.is_success() {
            // A filtered generation still answers 200, with a blurred image that must not
            // reach the user; the header is the only sign.
            if finish_reason.as_deref() == Some("CONTENT_FILTERED") {
                return Err(ProviderError::Refused {
                    reason: "the generated image was flagged by content moderation \
                             (CONTENT_FILTERED)"
                        .to_owned(),
                });
            }
            if is_json {
                return Err(ProviderError::InvalidResponse(
                    "JSON where image bytes were asked for".to_owned(),
                ));
            }
            let body = self.api.read_body(&mut response).await?;
            if body.is_empty() {
                return Err(ProviderError::InvalidResponse("an empty image body".to_owned()));
            }
            return Ok(GeneratedImage { bytes: body.into(), model: model.to_owned() });
        }
        let body = self.api.read_error(&mut response).await?;
        Err(status_error(status, retry_after, &body, &self.api))
    }
}

/// Seed 0 is "random" on both sides; a fixed seed is passed on within the documented range so
/// that a caller who pins one gets the same picture again.
fn with_seed(form: Form, seed: u64) -> Form {
    if seed == 0 { form } else { form.text("seed", (seed % (MAX_SEED + 1)).to_string()) }
}

#[async_trait]
impl ImageProvider for StabilityProvider {
    fn name(&self) -> &'static str {
        "stability"
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }


    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        self.send(&self.endpoint, self.form(request), &self.model).await
    }

    fn can_edit(&self) -> bool {
        true
    }

    async fn edit(&self, request: &EditRequest) -> Result<GeneratedImage, ProviderError> {
        let form = self.edit_form(request)?;
        self.send(&self.edit_endpoint, form, self.edit_model()).await
    }
}

/// `{"id", "name", "errors": [...]}`, every field possibly absent.
#[derive(Default, Deserialize)]
struct ErrorBody {
    name: Option<String>,
    errors: Option<Vec<String>>,
}

/// Maps a non-2xx answer, following the documented meaning of each status.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    api: &Api,
) -> ProviderError {
    // A body that is not the documented JSON (a proxy's HTML page) still has a meaningful status.
    let error = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default();
    let name = error.name.as_deref().unwrap_or_default();
    let joined = error.errors.unwrap_or_default().join("; ");
    // Stability does not echo keys, but a proxy might; scrub it from anything we pass on.
    let message = || match joined.trim() {
        "" if name.is_empty() => format!("HTTP {}", status.as_u16()),
        "" => name.to_owned(),
        text => api.scrub(text),
    };
    match status.as_u16() {
        401 => ProviderError::Unauthorized,
        // Out of credits: more attempts cannot help until someone buys some.
        402 => ProviderError::QuotaExhausted,
        // The documented 403 is the moderation filter rejecting the prompt; any other 403
        // (a proxy's, say) is about who we are.
        403 if name == "content_moderation" || joined.contains("content moderation") => {
            ProviderError::Refused { reason: message() }
        }
        403 => ProviderError::Unauthorized,
        429 => ProviderError::RateLimited { retry_after },
        408 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        // 400 invalid fields, 404 an unknown endpoint, 413 over 10 MiB, 422 a rejected language.
        400..=499 => ProviderError::BadRequest(message()),
        500..=599 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        other => ProviderError::InvalidResponse(format!("unexpected HTTP status {other}")),
    }
}

/// The supported ratio nearest `width:height`.
fn aspect_ratio(width: u32, height: u32) -> &'static str {
    super::nearest_ratio(&ASPECT_RATIOS, width, height)
}

fn endpoint_url(base_url: &str, endpoint: &str) -> Option<Url> {
    super::http::endpoint_url(base_url, &format!("v2beta/stable-image/generate/{endpoint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Api {
        crate::providers::http::test_api("sk-secret")
    }

    fn error_for(status: u16, body: &str) -> ProviderError {
        let status = StatusCode::from_u16(status).unwrap();
        status_error(status, Some(Duration::from_secs(3)), body.as_bytes(), &key())
    }

    #[test]
    fn aspect_ratio_is_the_nearest_supported_one() {
        assert_eq!(aspect_ratio(1024, 1024), "1:1");
        assert_eq!(aspect_ratio(1024, 1536), "2:3");
        assert_eq!(aspect_ratio(1536, 1024), "3:2");
        assert_eq!(aspect_ratio(1920, 1080), "16:9");
        assert_eq!(aspect_ratio(1080, 1920), "9:16");
        assert_eq!(aspect_ratio(1000, 3000), "9:21", "taller than any ratio: the tallest");
        assert_eq!(aspect_ratio(0, 0), "1:1");
    }

    #[test]
    fn endpoint_names_the_service_and_keeps_a_path_prefix() {
        let url = |base: &str| endpoint_url(base, "core").map(String::from);
        let expected = "http://127.0.0.1:9/v2beta/stable-image/generate/core";
        assert_eq!(url("http://127.0.0.1:9").as_deref(), Some(expected));
        assert_eq!(url("http://127.0.0.1:9/").as_deref(), Some(expected));
        assert_eq!(
            url("https://proxy.test/stability/").as_deref(),
            Some("https://proxy.test/stability/v2beta/stable-image/generate/core")
        );
        assert_eq!(url("api.stability.ai"), None);
    }

    #[test]
    fn each_documented_error_name_maps_onto_its_class() {
        let body = |name: &str, error: &str| {
            serde_json::json!({"id": "e1", "name": name, "errors": [error]}).to_string()
        };
        let bad = error_for(400, &body("bad_request", "prompt: is required"));
        assert!(matches!(&bad, ProviderError::BadRequest(m) if m == "prompt: is required"));
        assert!(matches!(error_for(401, &body("unauthorized", "x")), ProviderError::Unauthorized));
        let credits = body("payment_required", "insufficient credits");
        assert!(matches!(error_for(402, &credits), ProviderError::QuotaExhausted));
        let flagged = body("content_moderation", "flagged by content moderation");
        assert!(matches!(error_for(403, &flagged), ProviderError::Refused { .. }));
        assert!(matches!(
            error_for(413, &body("payload_too_large", "x")),
            ProviderError::BadRequest(_)
        ));
        let limited = error_for(429, &body("rate_limit_exceeded", "x"));
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        let server = error_for(500, &body("server_error", "x"));
        assert!(matches!(server, ProviderError::Unavailable { status: 500, .. }));
        assert!(matches!(error_for(502, "<html>"), ProviderError::Unavailable { .. }));
    }

    #[test]
    fn errors_are_joined_and_scrubbed_of_the_key() {
        let body = r#"{"id":"e","name":"bad_request","errors":["a: bad","key sk-secret"]}"#;
        let ProviderError::BadRequest(message) = error_for(400, body) else { panic!() };
        assert_eq!(message, "a: bad; key <redacted>");
        let ProviderError::BadRequest(message) = error_for(404, "not json") else { panic!() };
        assert_eq!(message, "HTTP 404");
    }
}
