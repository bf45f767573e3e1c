//! The Google Gemini image provider: one `POST {base_url}/v1beta/models/{model}:generateContent`
//! per image, asking for image output only, with every documented failure mapped onto a
//! [`ProviderError`] the job runner can act on. An edit is the same call with the source image
//! as an `inlineData` part after the instruction, which is how Gemini image models edit
//! (<https://ai.google.dev/gemini-api/docs/image-generation>, "Image editing").
//!
//! The wire format follows Google's Gemini API documentation: the request body and
//! `GenerateContentResponse` (`candidates[].content.parts[].inlineData`, `finishReason`,
//! `promptFeedback.blockReason`) from the API reference (<https://ai.google.dev/api/generate-content>);
//! `generationConfig.responseModalities` and `imageConfig.aspectRatio` with its ten ratios from
//! the image-generation guide (<https://ai.google.dev/gemini-api/docs/image-generation>); status
//! meanings from the troubleshooting guide (<https://ai.google.dev/gemini-api/docs/troubleshooting>).
//! Error bodies follow Google's error model (<https://google.aip.dev/193>):
//! `{"error": {"code", "message", "status", "details"}}`, where `details` may hold
//! `google.rpc.ErrorInfo` (`reason`), `google.rpc.RetryInfo` (`retryDelay`) and
//! `google.rpc.QuotaFailure` (`violations[].quotaId`).

mod settings;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub use self::settings::GeminiConfig;
use super::{
    EditRequest, GeneratedImage, ImageProvider, ImageRequest, ProviderError,
    http::{Api, parse_retry_after, truncate},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// The values `imageConfig.aspectRatio` accepts, as `(name, width, height)`. Gemini draws at
/// its own pixel size for each ratio (1024x1024 for `1:1`, 832x1248 for `2:3`, ...), so we ask
/// for the ratio nearest the requested size and let the job record the size that came back.
const ASPECT_RATIOS: [(&str, u32, u32); 10] = [
    ("1:1", 1, 1),
    ("2:3", 2, 3),
    ("3:2", 3, 2),
    ("3:4", 3, 4),
    ("4:3", 4, 3),
    ("4:5", 4, 5),
    ("5:4", 5, 4),
    ("9:16", 9, 16),
    ("16:9", 16, 9),
    ("21:9", 21, 9),
];

/// `finishReason` values that mean the model declined to draw, rather than failed to.
const REFUSAL_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "IMAGE_RECITATION",
    "BLOCKLIST",
    "SPII",
];

/// Draws images with Gemini image models (`gemini-2.5-flash-image` and its successors).
#[derive(Debug)]
pub struct GeminiProvider {
    api: Api,
    endpoint: Url,
    model: String,
    typical_latency: Duration,
}

/// The registry's entry: `[providers.gemini]`, `GEMINI_API_KEY` (else `GOOGLE_API_KEY`).
/// `auto` never picks it.
impl ProviderSpec for GeminiProvider {
    const NAME: &'static str = "gemini";
    type Settings = GeminiConfig;
    // Google's SDKs read either variable; ours prefers the Gemini-specific one, so that a
    // `GOOGLE_API_KEY` kept for other Google services does not shadow it.
    const ENV: &'static [EnvVar] =
        &[EnvVar::plain("GEMINI_API_KEY", "api_key"), EnvVar::plain("GOOGLE_API_KEY", "api_key")];

    fn check(settings: &GeminiConfig) -> Result<(), SetupError> {
        spec::check_base_url::<Self>(&settings.base_url)
    }

    /// Checks the key, model and base URL once, so that a bad configuration fails at start.
    fn build(config: &GeminiConfig, context: &Context) -> Result<Self, SetupError> {
        Self::check(config)?;
        let header = http::HeaderName::from_static("x-goog-api-key");
        let credential = spec::credential::<Self>(config.api_key.as_ref(), header, None)?;
        // Google's own examples name models both ways (`models/gemini-…` and `gemini-…`).
        let model = config.model.trim();
        let model = model.strip_prefix("models/").unwrap_or(model);
        let model_is_a_name = !model.is_empty()
            && model.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !model_is_a_name {
            let message = format!("`{}` is not a model name", config.model);
            return Err(SetupError::invalid(Self::NAME, "model", message));
        }
        let endpoint = endpoint_url(&config.base_url, model)
            .ok_or_else(|| SetupError::base_url(Self::NAME, &config.base_url))?;
        let mut api = Api::new(context.http.clone(), Some(credential), *config.request_timeout);
        api.parsing = context.parsing.clone();
        Ok(Self { api, endpoint, model: model.to_owned(), typical_latency: *config.typical_latency })
    }
}

impl GeminiProvider {

    /// Replaces the response size cap; tests use it to reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }

    /// The image of a `generateContent` answer, or why there is none (CPU work: run it off
    /// the async workers).
    fn decode_image(body: &[u8], model: String) -> Result<GeneratedImage, ProviderError> {
        let invalid = |what: String| ProviderError::InvalidResponse(what);
        let parsed: GenerateContentResponse = serde_json::from_slice(body)
            .map_err(|error| invalid(format!("not the documented JSON: {error}")))?;
        let Some(candidate) = parsed.candidates.unwrap_or_default().into_iter().next() else {
            // A blocked prompt gets no candidate at all; `promptFeedback` says why.
            let block_reason = parsed.prompt_feedback.and_then(|feedback| feedback.block_reason);
            return Err(match block_reason {
                Some(reason) => {
                    ProviderError::Refused { reason: format!("the prompt was blocked ({reason})") }
                }
                None => invalid("no candidates and no block reason".to_owned()),
            });
        };
        // Thinking models may send interim images marked `thought`; only the rest is the answer.
        let parts: Vec<Part> = candidate
            .content
            .and_then(|content| content.parts)
            .unwrap_or_default()
            .into_iter()
            .filter(|part| part.thought != Some(true))
            .collect();
        let image = parts.iter().find_map(|part| {
            let blob = part.inline_data.as_ref()?;
            let is_image = blob.mime_type.as_deref().is_none_or(|mime| mime.starts_with("image/"));
            is_image.then_some(blob)
        });
        if let Some(blob) = image {
            let encoded = blob.data.as_deref().unwrap_or_default();
            let bytes = decode_base64(encoded)
                .ok_or_else(|| invalid("`inlineData.data` is not base64".to_owned()))?;
            if bytes.is_empty() {
                return Err(invalid("`inlineData.data` is empty".to_owned()));
            }
            return Ok(GeneratedImage { bytes: bytes.into(), model });
        }
        // No image. The model often says why in a text part; that text is the model's, not the
        // user's, so it is shortened before it reaches job records.
        let text = parts.iter().filter_map(|part| part.text.as_deref()).collect::<Vec<_>>();
        let text = truncate(text.join(" ").trim());
        let finish = candidate.finish_reason.unwrap_or_else(|| "unspecified".to_owned());
        if REFUSAL_FINISH_REASONS.contains(&finish.as_str()) {
            let said = candidate.finish_message.map(|message| truncate(message.trim()));
            let reason = match said.filter(|said| !said.is_empty()).or(Some(text)) {
                Some(said) if !said.is_empty() => format!("{finish}: {said}"),
                _ => finish,
            };
            return Err(ProviderError::Refused { reason });
        }
        Err(invalid(if text.is_empty() {
            format!("no image in the answer (finishReason {finish})")
        } else {
            format!("no image in the answer (finishReason {finish}): {text}")
        }))
    }

    /// One `generateContent` call; the answer's image, or why there is none.
    async fn generate_content(
        &self,
        body: &GenerateContentBody<'_>,
    ) -> Result<GeneratedImage, ProviderError> {
        let mut response = self.api.send(self.api.http.post(self.endpoint.clone()).json(body)).await?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        tracing::debug!(status = status.as_u16(), model = %self.model, "gemini answered");

        if status.is_success() {
            let body = self.api.read_body(&mut response).await?;
            let model = self.model.clone();
            return self.api.parsing.run(move || Self::decode_image(&body, model)).await;
        }
        let body = self.api.read_error(&mut response).await?;
        Err(status_error(status, retry_after, &body, &self.api))
    }
}

#[async_trait]
impl ImageProvider for GeminiProvider {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }


    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        self.generate_content(&GenerateContentBody::generate(request)).await
    }

    fn can_edit(&self) -> bool {
        true
    }

    async fn edit(&self, request: &EditRequest) -> Result<GeneratedImage, ProviderError> {
        self.generate_content(&GenerateContentBody::edit(request)).await
    }
}

/// `GenerateContentRequest` with one user turn and image-only output. No `seed`: our requests
/// always carry the same one, and a user asking again expects a different picture.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentBody<'a> {
    contents: [RequestContent<'a>; 1],
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct RequestContent<'a> {
    role: &'static str,
    parts: Vec<RequestPart<'a>>,
}

/// A `Part`: text, or an image inline as base64 (`Blob`).
#[derive(Serialize)]
#[serde(untagged)]
enum RequestPart<'a> {
    Text {
        text: &'a str,
    },
    Image {
        #[serde(rename = "inlineData")]
        inline_data: InlineData,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InlineData {
    mime_type: &'static str,
    data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    /// `["IMAGE"]` rather than the default text-and-image, so the model does not spend the
    /// request on a description instead of a picture.
    response_modalities: [&'static str; 1],
    image_config: ImageConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageConfig {
    aspect_ratio: &'static str,
}

impl<'a> GenerateContentBody<'a> {
    fn generate(request: &'a ImageRequest) -> Self {
        let parts = vec![RequestPart::Text { text: &request.prompt }];
        Self::new(parts, request.width, request.height)
    }

    /// The instruction, then the image it is about, as Google's editing examples order them.
    fn edit(request: &'a EditRequest) -> Self {
        let image = InlineData {
            mime_type: request.format.mime(),
            data: base64::engine::general_purpose::STANDARD.encode(&request.image),
        };
        let parts = vec![
            RequestPart::Text { text: &request.instruction },
            RequestPart::Image { inline_data: image },
        ];
        Self::new(parts, request.width, request.height)
    }

    fn new(parts: Vec<RequestPart<'a>>, width: u32, height: u32) -> Self {
        GenerateContentBody {
            contents: [RequestContent { role: "user", parts }],
            generation_config: GenerationConfig {
                response_modalities: ["IMAGE"],
                image_config: ImageConfig { aspect_ratio: aspect_ratio(width, height) },
            },
        }
    }
}

/// The parts of `GenerateContentResponse` we use. REST answers in camelCase; the snake_case
/// aliases accept proxies that pass on the protobuf field names.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    candidates: Option<Vec<Candidate>>,
    #[serde(alias = "prompt_feedback")]
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(alias = "block_reason")]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    #[serde(alias = "finish_reason")]
    finish_reason: Option<String>,
    #[serde(alias = "finish_message")]
    finish_message: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    parts: Option<Vec<Part>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(alias = "inline_data")]
    inline_data: Option<Blob>,
    thought: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    #[serde(alias = "mime_type")]
    mime_type: Option<String>,
    data: Option<String>,
}

/// `{"error": {"code", "message", "status", "details"}}`, every field possibly absent.
#[derive(Default, Deserialize)]
struct ErrorBody {
    error: Option<ErrorStatus>,
}

#[derive(Default, Deserialize)]
struct ErrorStatus {
    message: Option<String>,
    status: Option<String>,
    details: Option<Vec<Value>>,
}

/// What the typed `details` of an error say, as far as our mapping cares.
#[derive(Debug, Default, PartialEq)]
struct ErrorDetails {
    /// `google.rpc.ErrorInfo.reason`, e.g. `API_KEY_INVALID`.
    reasons: Vec<String>,
    /// `google.rpc.RetryInfo.retryDelay`.
    retry_delay: Option<Duration>,
    /// A `google.rpc.QuotaFailure` for a daily quota or a quota of zero: waiting minutes for
    /// another attempt cannot help.
    out_of_quota: bool,
}

/// Maps a non-2xx answer, following the documented meaning of each status.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    api: &Api,
) -> ProviderError {
    // A body that is not the documented JSON still has a meaningful status.
    let error = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default().error;
    let error = error.unwrap_or_default();
    let details = read_details(error.details.as_deref().unwrap_or_default());
    let grpc_status = error.status.as_deref().unwrap_or_default();
    let text = error.message.as_deref().unwrap_or_default();
    // Google does not echo keys, but a proxy might; scrub it from anything we pass on.
    let message = || match text.trim() {
        "" => format!("HTTP {}", status.as_u16()),
        text => api.scrub(text),
    };
    // The header is the more specific instruction; `RetryInfo` is Google's usual one.
    let retry_after = retry_after.or(details.retry_delay);
    // A wrong key is 400 INVALID_ARGUMENT, told apart from a bad request only by the ErrorInfo
    // reason (`API_KEY_INVALID`, `API_KEY_EXPIRED`, ...) or, without details, by the message.
    let bad_key = details.reasons.iter().any(|reason| reason.starts_with("API_KEY_"))
        || text.contains("API key not valid")
        || matches!(grpc_status, "UNAUTHENTICATED" | "PERMISSION_DENIED");
    match status.as_u16() {
        400..=403 if bad_key => ProviderError::Unauthorized,
        401 | 403 => ProviderError::Unauthorized,
        429 if details.out_of_quota => ProviderError::QuotaExhausted,
        429 => ProviderError::RateLimited { retry_after },
        // ABORTED and request timeouts are worth another attempt (AIP-194).
        408 | 409 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        // INVALID_ARGUMENT, FAILED_PRECONDITION (no free tier in the region), NOT_FOUND model.
        400..=499 => ProviderError::BadRequest(message()),
        // INTERNAL, UNAVAILABLE (overloaded), DEADLINE_EXCEEDED; gateways add 502.
        500..=599 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        other => ProviderError::InvalidResponse(format!("unexpected HTTP status {other}")),
    }
}

/// Reads the typed error details we act on; unknown types are skipped.
fn read_details(details: &[Value]) -> ErrorDetails {
    let mut found = ErrorDetails::default();
    for detail in details {
        let kind = detail.get("@type").and_then(Value::as_str).unwrap_or_default();
        let field = |name: &str| detail.get(name).and_then(Value::as_str);
        if kind.ends_with("google.rpc.ErrorInfo") {
            found.reasons.extend(field("reason").map(str::to_owned));
        } else if kind.ends_with("google.rpc.RetryInfo") {
            found.retry_delay = found.retry_delay.or(field("retryDelay").and_then(parse_delay));
        } else if kind.ends_with("google.rpc.QuotaFailure") {
            let violations = detail.get("violations").and_then(Value::as_array);
            found.out_of_quota |= violations.into_iter().flatten().any(|violation| {
                let text = |name: &str| violation.get(name).and_then(Value::as_str);
                // Quota ids name their window (`GenerateRequestsPerDayPerProjectPerModel-
                // FreeTier`); a value of 0 is a model the account may not use at all.
                text("quotaId").is_some_and(|id| id.contains("PerDay"))
                    || text("quotaValue").is_some_and(|value| value.trim() == "0")
            });
        }
    }
    found
}

/// A protobuf `Duration` in JSON: seconds with up to nine decimals and an `s`, e.g. `"37s"`.
fn parse_delay(value: &str) -> Option<Duration> {
    let seconds = value.trim().strip_suffix('s')?.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Protobuf's JSON mapping writes bytes as standard base64 and lets readers accept URL-safe
/// base64 with or without padding too; a proxy may re-encode either way.
fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let encoded = encoded.trim();
    super::decode_base64(&STANDARD, encoded)
        .ok()
        .or_else(|| super::decode_base64(&URL_SAFE_NO_PAD, encoded.trim_end_matches('=')).ok())
}

/// The supported ratio nearest `width:height`.
fn aspect_ratio(width: u32, height: u32) -> &'static str {
    super::nearest_ratio(&ASPECT_RATIOS, width, height)
}

fn endpoint_url(base_url: &str, model: &str) -> Option<Url> {
    super::http::endpoint_url(base_url, &format!("v1beta/models/{model}:generateContent"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn aspect_ratio_is_the_nearest_supported_one() {
        assert_eq!(aspect_ratio(1024, 1024), "1:1");
        assert_eq!(aspect_ratio(1024, 1536), "2:3");
        assert_eq!(aspect_ratio(1536, 1024), "3:2");
        assert_eq!(aspect_ratio(1920, 1080), "16:9");
        assert_eq!(aspect_ratio(1080, 1920), "9:16");
        assert_eq!(aspect_ratio(3000, 1000), "21:9", "wider than any ratio: the widest");
        assert_eq!(aspect_ratio(0, 0), "1:1");
    }

    #[test]
    fn retry_delay_reads_protobuf_durations() {
        assert_eq!(parse_delay("37s"), Some(Duration::from_secs(37)));
        assert_eq!(parse_delay("1.500s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_delay("37"), None, "the unit is part of the format");
        assert_eq!(parse_delay("-1s"), None);
    }

    #[test]
    fn details_name_the_reason_the_wait_and_a_daily_quota() {
        let details = [
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}),
            json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"}),
            json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}
            ]}),
            json!({"@type": "type.googleapis.com/google.rpc.Help", "links": []}),
        ];
        assert_eq!(
            read_details(&details),
            ErrorDetails {
                reasons: vec!["API_KEY_INVALID".to_owned()],
                retry_delay: Some(Duration::from_secs(22)),
                out_of_quota: true,
            }
        );
    }

    #[test]
    fn a_per_minute_quota_is_not_out_of_quota() {
        let details =
            [json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "10"}
            ]})];
        assert!(!read_details(&details).out_of_quota);
    }

    #[test]
    fn base64_is_read_standard_or_url_safe() {
        assert_eq!(decode_base64("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_base64("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn endpoint_names_the_model_and_keeps_a_path_prefix() {
        let url = |base: &str| endpoint_url(base, "gemini-2.5-flash-image").map(String::from);
        let expected = "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash-image:generateContent";
        assert_eq!(url("http://127.0.0.1:9").as_deref(), Some(expected));
        assert_eq!(url("http://127.0.0.1:9/").as_deref(), Some(expected));
        assert_eq!(
            url("https://proxy.test/gemini/").as_deref(),
            Some("https://proxy.test/gemini/v1beta/models/gemini-2.5-flash-image:generateContent")
        );
        assert_eq!(url("generativelanguage.googleapis.com"), None);
    }

    #[test]
    fn request_body_has_the_documented_shape() {
        let request =
            ImageRequest { prompt: "a red fox".to_owned(), width: 1536, height: 1024, seed: 3 };
        assert_eq!(
            serde_json::to_value(GenerateContentBody::generate(&request)).unwrap(),
            json!({
                "contents": [{"role": "user", "parts": [{"text": "a red fox"}]}],
                "generationConfig": {
                    "responseModalities": ["IMAGE"],
                    "imageConfig": {"aspectRatio": "3:2"},
                },
            })
        );
    }
}
