//! Image providers: one trait, one folder per backend, listed once in [`registry`] and chosen
//! by configuration.
//!
//! Providers know nothing about tools, jobs, MCP or configuration: each owns its settings. They turn an [`ImageRequest`] into
//! encoded image bytes or a typed [`ProviderError`] whose variant decides whether the job
//! runner retries and what the user hears when it gives up.

pub mod http;
pub mod registry;
pub mod route;
pub mod router;
pub mod spec;
pub mod threads;

// The one list of providers: each line is a provider's module (its folder) and its type.
registry::registry! {
    sketch::SketchProvider,
    openai::OpenAiProvider,
    gemini::GeminiProvider,
    stability::StabilityProvider,
    replicate::ReplicateProvider,
    comfyui::ComfyUiProvider,
    endpoint::EndpointProvider,
}

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

pub use self::spec::{Context, ProviderSpec, SetupError};
use crate::images::{ImageFormat, pipeline::ImagePool};

/// What to draw, at which pixel size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// The user's description, already validated (non-empty, bounded).
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    /// Providers that support seeds use it; `sketch` is fully determined by prompt and seed.
    pub seed: u64,
}

/// Encoded image bytes as the provider returned them (PNG, JPEG or WebP).
///
/// The caller validates and sniffs the bytes; a provider does not need to decode them.
#[derive(Clone)]
pub struct GeneratedImage {
    pub bytes: Bytes,
    /// The model that drew it, for the job record.
    pub model: String,
}

impl fmt::Debug for GeneratedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedImage")
            .field("bytes", &self.bytes.len())
            .field("model", &self.model)
            .finish()
    }
}

/// An image to change and what to change about it (`edit_image`).
#[derive(Clone)]
pub struct EditRequest {
    /// The source image, already fetched, sniffed and checked against the pixel limits.
    pub image: Bytes,
    pub format: ImageFormat,
    /// What to change, in plain words, already validated (non-empty, bounded).
    pub instruction: String,
    /// The size wanted back; providers that keep the source's size may ignore it.
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

impl fmt::Debug for EditRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EditRequest")
            .field("image", &self.image.len())
            .field("format", &self.format)
            .field("instruction", &self.instruction)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// An intermediate image a provider streamed while drawing (OpenAI `partial_images`).
#[derive(Clone)]
pub struct PartialImage {
    /// 0-based, increasing within one attempt.
    pub index: u32,
    /// Encoded bytes as the provider sent them; unvalidated.
    pub bytes: Bytes,
}

impl fmt::Debug for PartialImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartialImage")
            .field("index", &self.index)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Where a provider hands its partial images while it draws. Cheap to clone; the default
/// drops everything, so providers can always call [`Partials::send`].
#[derive(Clone, Default)]
pub struct Partials(Option<Arc<dyn Fn(PartialImage) + Send + Sync>>);

impl Partials {
    pub fn new(sink: impl Fn(PartialImage) + Send + Sync + 'static) -> Partials {
        Partials(Some(Arc::new(sink)))
    }

    /// True when someone listens, so a provider can skip asking for partials otherwise.
    pub fn wanted(&self) -> bool {
        self.0.is_some()
    }

    /// Hands one partial image over. Must not block: sinks only queue it.
    pub fn send(&self, partial: PartialImage) {
        if let Some(sink) = &self.0 {
            sink(partial);
        }
    }
}

impl fmt::Debug for Partials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.wanted() { "Partials(sink)" } else { "Partials(none)" })
    }
}

/// Why a provider could not produce an image.
///
/// Where providers do the CPU work of reading an answer: a base64 image inside JSON is
/// megabytes to scan and decode, milliseconds that would delay every request sharing an async
/// worker. The server hands in its image pool (lowest CPU priority); without one (a provider
/// built on its own) tokio's blocking pool does it.
#[derive(Debug, Clone, Default)]
pub struct Parsing {
    pool: Option<ImagePool>,
}

impl Parsing {
    pub fn on(pool: ImagePool) -> Parsing {
        Parsing { pool: Some(pool) }
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        parse: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let failed = |error: &dyn fmt::Display| {
            ProviderError::InvalidResponse(format!("reading the answer failed: {error}"))
        };
        match &self.pool {
            Some(pool) => pool.run(parse).await.map_err(|error| failed(&error))?,
            None => tokio::task::spawn_blocking(parse).await.map_err(|error| failed(&error))?,
        }
    }
}

/// Base64 of a provider's answer, decoded in pieces with the CPU offered between them
/// ([`crate::priority::offer_cpu`]): a 3 MB image is a few milliseconds of decoding on a
/// background thread (image pool or provider thread), longer than a request thread should
/// queue behind it. Errors give offsets in the whole input, as one call would.
pub(crate) fn decode_base64(
    engine: &impl base64::Engine,
    encoded: &str,
) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::DecodeError;
    // A multiple of 4, so that every piece but the last is whole quads without padding.
    const PIECE: usize = 64 * 1024;
    let mut decoded = Vec::with_capacity(encoded.len() / 4 * 3 + 3);
    for (index, piece) in encoded.as_bytes().chunks(PIECE).enumerate() {
        let start = index * PIECE;
        // Padding may end only the whole input; a piece decoded alone would accept it.
        if start + piece.len() < encoded.len()
            && let Some(at) = piece[PIECE - 2..].iter().position(|&byte| byte == b'=')
        {
            return Err(DecodeError::InvalidByte(start + PIECE - 2 + at, b'='));
        }
        engine.decode_vec(piece, &mut decoded).map_err(|error| match error {
            DecodeError::InvalidByte(offset, byte) => {
                DecodeError::InvalidByte(start + offset, byte)
            }
            DecodeError::InvalidLength(length) => DecodeError::InvalidLength(start + length),
            DecodeError::InvalidLastSymbol { offset, symbol, symbol_value } => {
                DecodeError::InvalidLastSymbol { offset: start + offset, symbol, symbol_value }
            }
            DecodeError::InvalidPadding => DecodeError::InvalidPadding,
        })?;
        crate::priority::offer_cpu();
    }
    Ok(decoded)
}

/// Variants name what went wrong, not where; [`ProviderError::is_retryable`] and
/// [`ProviderError::speakable`] are the two questions the job runner asks.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider rejected the API key")]
    Unauthorized,
    #[error("the provider is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider account is out of quota")]
    QuotaExhausted,
    #[error("the provider is unavailable (HTTP {status})")]
    Unavailable { status: u16, retry_after: Option<Duration> },
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("could not reach the provider: {0}")]
    Connect(String),
    #[error("the provider refused the prompt: {reason}")]
    Refused { reason: String },
    #[error("the provider rejected the request: {0}")]
    BadRequest(String),
    #[error("the provider sent an unusable response: {0}")]
    InvalidResponse(String),
    /// The answer held an image the image checks refused (truncated, not an image, too big).
    #[error("the provider sent an unusable image: {0}")]
    BrokenImage(String),
    #[error("the provider cannot {0}")]
    Unsupported(&'static str),
}

impl ProviderError {
    /// Transient failures worth another attempt: rate limits, 5xx, timeouts, connect errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Timeout | Self::Connect(_)
        )
    }

    /// The wait the provider asked for, if it said (HTTP `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A stable machine-readable code, stored with the failed job.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "provider_unauthorized",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::QuotaExhausted => "provider_quota_exhausted",
            Self::Unavailable { .. } => "provider_unavailable",
            Self::Timeout => "provider_timeout",
            Self::Connect(_) => "provider_unreachable",
            Self::Refused { .. } => "content_refused",
            Self::BadRequest(_) => "provider_bad_request",
            Self::InvalidResponse(_) => "provider_invalid_response",
            Self::BrokenImage(_) => "provider_broken_image",
            Self::Unsupported(_) => "provider_unsupported",
        }
    }

    /// One sentence a voice model can say to the user, saying what to change when anything can.
    pub fn speakable(&self) -> String {
        match self {
            Self::Unauthorized => {
                "The image service rejected our credentials, so I can't make images right now."
                    .to_owned()
            }
            Self::RateLimited { .. } => {
                "The image service is busy right now; please try again in a minute.".to_owned()
            }
            Self::QuotaExhausted => {
                "The image service account has run out of credit, so I can't make images right now."
                    .to_owned()
            }
            Self::Unavailable { .. } | Self::Connect(_) => {
                "The image service is having trouble right now; please try again shortly."
                    .to_owned()
            }
            Self::Timeout => {
                "The image took too long to make; please try again, maybe with a simpler description."
                    .to_owned()
            }
            Self::Refused { .. } => {
                "The image service refused that description; try describing it differently."
                    .to_owned()
            }
            Self::BadRequest(_) | Self::InvalidResponse(_) => {
                "Something went wrong making that image; please try again.".to_owned()
            }
            Self::BrokenImage(_) => {
                "The image service sent back a broken image; please try again.".to_owned()
            }
            Self::Unsupported(_) => {
                "The image service here can't change existing pictures; I can make a new one \
                 instead."
                    .to_owned()
            }
        }
    }
}

/// A backend that draws images.
#[async_trait]
pub trait ImageProvider: Send + Sync + fmt::Debug + 'static {
    /// The configuration name (`sketch`, `openai`, `gemini`, `stability`, `replicate`, `comfyui`).
    fn name(&self) -> &'static str;
    /// How long a typical image takes, for the `eta_ms` callers see.
    fn typical_latency(&self) -> Duration;
    /// True when the provider talks to a service outside this machine (MCP `openWorldHint`):
    /// most do, so only a provider that draws in-process (`sketch`) says otherwise.
    fn is_remote(&self) -> bool {
        true
    }
    /// Draw one image. Dropping the future cancels the work.
    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError>;

    /// Draw one image, handing intermediate images to `partials` as they arrive. Providers
    /// that cannot stream draw as [`ImageProvider::generate`] does.
    async fn generate_with_partials(
        &self,
        request: &ImageRequest,
        partials: &Partials,
    ) -> Result<GeneratedImage, ProviderError> {
        let _ = partials;
        self.generate(request).await
    }

    /// True when [`ImageProvider::edit`] does something; routing skips providers that cannot.
    fn can_edit(&self) -> bool {
        false
    }

    /// Change an existing image as instructed. Dropping the future cancels the work.
    async fn edit(&self, request: &EditRequest) -> Result<GeneratedImage, ProviderError> {
        let _ = request;
        Err(ProviderError::Unsupported("edit images"))
    }
}

/// The entry of `ratios` (name, width, height) nearest `width:height`, compared on a log scale
/// so that `2:3` and `3:2` are equally far from `1:1`.
fn nearest_ratio(ratios: &[(&'static str, u32, u32)], width: u32, height: u32) -> &'static str {
    let log_ratio =
        |width: u32, height: u32| (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
    let wanted = log_ratio(width, height);
    let distance =
        |&(_, width, height): &(&str, u32, u32)| (log_ratio(width, height) - wanted).abs();
    ratios
        .iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .map_or("1:1", |(name, ..)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> Result<Option<String>, ProviderError> {
        Ok(std::thread::current().name().map(str::to_owned))
    }

    #[test]
    fn base64_decoded_in_pieces_is_the_whole_input_decoded_at_once() {
        use base64::{
            Engine as _,
            engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
        };
        // Sizes around the piece boundary, with and without padding at the end.
        for length in [0, 1, 2, 3, 49_151, 49_152, 49_153, 200_001] {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 7 % 251) as u8).collect();
            let padded = STANDARD.encode(&bytes);
            assert_eq!(decode_base64(&STANDARD, &padded).unwrap(), bytes, "{length} bytes");
            let unpadded = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(decode_base64(&URL_SAFE_NO_PAD, &unpadded).unwrap(), bytes);
        }
    }

    #[test]
    fn base64_errors_name_offsets_in_the_whole_input() {
        use base64::{Engine as _, engine::general_purpose::STANDARD};
        let mut encoded = STANDARD.encode(vec![1_u8; 150_000]).into_bytes();
        // A byte outside the alphabet in the third piece.
        encoded[140_000] = b'!';
        let bad_byte = String::from_utf8(encoded.clone()).unwrap();
        assert_eq!(
            decode_base64(&STANDARD, &bad_byte).unwrap_err(),
            STANDARD.decode(&bad_byte).unwrap_err(),
        );
        // Padding that would end a piece, inside the input.
        let mut padded_inside = STANDARD.encode(vec![1_u8; 150_000]).into_bytes();
        padded_inside[65_535] = b'=';
        let padded_inside = String::from_utf8(padded_inside).unwrap();
        assert_eq!(
            decode_base64(&STANDARD, &padded_inside).unwrap_err(),
            STANDARD.decode(&padded_inside).unwrap_err(),
        );
        // A length no encoder makes: one symbol in the last quad.
        let bad_length = format!("{}A", &STANDARD.encode(vec![1_u8; 150_000])[..199_996]);
        assert_eq!(
            decode_base64(&STANDARD, &bad_length).unwrap_err(),
            STANDARD.decode(&bad_length).unwrap_err(),
        );
    }

    #[tokio::test]
    async fn answers_are_parsed_on_the_image_pool_when_given_one() {
        let pool = ImagePool::new(1, 2).unwrap();
        let on_pool = Parsing::on(pool).run(thread_name).await.unwrap();
        assert_eq!(on_pool.as_deref(), Some("offstage-image-0"));
        let elsewhere = Parsing::default().run(thread_name).await.unwrap();
        assert_ne!(elsewhere.as_deref(), Some("offstage-image-0"));
        let failed = Parsing::default()
            .run(|| -> Result<(), ProviderError> {
                Err(ProviderError::InvalidResponse("no image".to_owned()))
            })
            .await;
        assert!(matches!(failed, Err(ProviderError::InvalidResponse(m)) if m == "no image"));
    }
}
