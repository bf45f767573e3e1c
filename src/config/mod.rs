//! Configuration: `offstage.toml`, then `OFFSTAGE_*` environment variables, then flags,
//! validated once at start into a [`Config`] with clear errors. Nothing else reads `std::env`.

pub mod comfyui;
mod images;
mod limits;
mod oauth;
mod push;
mod raw;
mod routing;
mod tools;

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

pub use comfyui::ComfyUiConfig;
pub use images::ImagesConfig;
pub use limits::LimitsConfig;
pub use oauth::{OAuthConfig, RawOAuthConfig};
pub use push::{PushConfig, WebhookConfig};
pub use raw::{ConfigSources, DEFAULT_LOG, MCP_STREAM_KEEP_ALIVE, Overrides, RawConfig};
pub use routing::{RoutePolicy, RouteStep};
use serde::{Deserialize, Serialize};
pub use tools::{Budgets, DEFAULT_PROFILE, EnvSecrets, ToolsConfig, inherited_env};
use url::Url;

/// The validated configuration every other module receives.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server (MCP at `/mcp`, job views at `/v1`) listens.
    pub listen: SocketAddr,
    /// Root of the embedded store: `offstage.db` and `images/`; with a shared store, local
    /// scratch only.
    pub data_dir: PathBuf,
    /// Where jobs, events and the webhook outbox live.
    pub database: Database,
    /// Base of the absolute URLs we hand out (`image_url`). `None`: derived from the bound address.
    pub public_url: Option<Url>,
    pub security: SecurityConfig,
    /// What one client may hold: connections, slow requests, sessions, streams.
    pub limits: LimitsConfig,
    pub jobs: JobsConfig,
    /// The first provider tried; never `Auto` after validation.
    pub provider: ProviderChoice,
    /// Tried in order when the one before gives up (never `Auto`, no repeats).
    pub fallback: Vec<ProviderChoice>,
    /// Per-provider limits, by provider name.
    pub routing: BTreeMap<String, RoutePolicy>,
    pub providers: ProvidersConfig,
    /// The image pipeline: its pool, limits and prerendered variants.
    pub images: ImagesConfig,
    pub push: PushConfig,
    pub tools: ToolsConfig,
    /// `tracing` filter directive, e.g. `info` or `offstage=debug`.
    pub log: String,
}

/// Who may talk to us and how much they may send.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Bearer tokens accepted on `/mcp` and `/v1/jobs`; empty means no authentication.
    pub tokens: Vec<String>,
    /// `Host` header values accepted (DNS-rebinding guard). An entry without a port matches any port.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values accepted; `:*` matches any port. Requests without `Origin` pass.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Access tokens from an OAuth authorization server, besides (or instead of) `tokens`.
    pub oauth: Option<OAuthConfig>,
}

/// The job runner's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs of one tool running at once (default for every tool).
    pub concurrency: usize,
    /// Jobs of one tool waiting for a slot; beyond this callers are told to retry later.
    pub queue: usize,
    /// Longest a job may take, all attempts included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per job, the first included; also bounds restarts of an interrupted job.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_max`, unless the provider says when.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long finished jobs and their images are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long a job stays claimed by a process that stops renewing it (crash detection).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// After a crash, run interrupted jobs again (true) or mark them failed (false).
    pub resume_interrupted: bool,
    /// Per-tool overrides of `concurrency` and `queue`.
    pub tools: BTreeMap<String, LaneConfig>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            queue: 64,
            timeout: Duration::from_secs(300),
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(15),
            resume_interrupted: true,
            tools: BTreeMap::new(),
        }
    }
}

/// Limits of one tool's lane in the job runner.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub concurrency: Option<usize>,
    pub queue: Option<usize>,
}

impl JobsConfig {
    /// `(concurrency, queue)` for one tool.
    /// Concurrency and queue of `tool`'s lane: the operator's per-tool setting, else what the
    /// tool declares, else the defaults.
    pub fn lane(&self, tool: &str, declared: Option<usize>) -> (usize, usize) {
        let lane = self.tools.get(tool);
        (
            lane.and_then(|l| l.concurrency).or(declared).unwrap_or(self.concurrency).max(1),
            lane.and_then(|l| l.queue).unwrap_or(self.queue),
        )
    }
}

/// When a finished result should reach the conversation, in the realtime APIs' own terms
/// (Gemini Live `scheduling`; for OpenAI Realtime, whether and when to send `response.create`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryHint {
    /// Cut in: the model should speak about it now.
    Interrupt,
    /// Tell the model, and let it speak once it is not already speaking.
    #[default]
    WhenIdle,
    /// Add it to the context only; do not prompt the model to speak.
    Silent,
}

impl DeliveryHint {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryHint::Interrupt => "interrupt",
            DeliveryHint::WhenIdle => "when_idle",
            DeliveryHint::Silent => "silent",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryHint> {
        match value.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "interrupt" => Some(DeliveryHint::Interrupt),
            "when_idle" => Some(DeliveryHint::WhenIdle),
            "silent" => Some(DeliveryHint::Silent),
            _ => None,
        }
    }
}

/// Which image provider draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChoice {
    /// OpenAI when `OPENAI_API_KEY` is set, `sketch` otherwise.
    Auto,
    Sketch,
    Openai,
    /// Google's Gemini image models; needs `GEMINI_API_KEY`. `auto` never picks it.
    Gemini,
    /// Stability AI's Stable Image models; needs `STABILITY_API_KEY`. `auto` never picks it.
    Stability,
    /// Models hosted on Replicate (predictions, polled); needs `REPLICATE_API_TOKEN`. `auto`
    /// never picks it.
    Replicate,
    /// A ComfyUI server on local GPUs; needs no key. `auto` never picks it.
    Comfyui,
}

impl ProviderChoice {
    const NAMES: &'static str = "auto, sketch, openai, gemini, stability, replicate, comfyui";

    pub(crate) fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "sketch" => Ok(Self::Sketch),
            "openai" => Ok(Self::Openai),
            "gemini" => Ok(Self::Gemini),
            "stability" => Ok(Self::Stability),
            "replicate" => Ok(Self::Replicate),
            "comfyui" => Ok(Self::Comfyui),
            _ => Err(ConfigError::UnknownProvider(value.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Sketch => "sketch",
            Self::Openai => "openai",
            Self::Gemini => "gemini",
            Self::Stability => "stability",
            Self::Replicate => "replicate",
            Self::Comfyui => "comfyui",
        }
    }
}

/// Settings of every provider; only the chosen one is used.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub sketch: SketchConfig,
    pub openai: OpenAiConfig,
    pub gemini: GeminiConfig,
    pub stability: StabilityConfig,
    pub replicate: ReplicateConfig,
    pub comfyui: ComfyUiConfig,
}

/// The built-in offline provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SketchConfig {
    /// Simulated provider latency before the image is drawn, so the async path behaves as
    /// with a real provider. `0s` draws at once.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Mixed into every drawing: the same prompt and seed always give the same image.
    pub seed: u64,
    /// Show a blurry preview halfway through, as streaming providers show partial images.
    pub partial_images: bool,
}

impl Default for SketchConfig {
    fn default() -> Self {
        Self { latency: Duration::from_secs(3), seed: 0, partial_images: true }
    }
}

/// OpenAI Images API (`POST {base_url}/v1/images/generations`).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// From `OPENAI_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Override for compatible servers (also `OPENAI_BASE_URL`). Without `/v1`.
    pub base_url: String,
    pub model: String,
    /// `low`, `medium`, `high` or `auto`.
    pub quality: String,
    /// How many intermediate images (0 to 3) to stream while drawing, when someone shows them.
    /// Unset means 2 for `gpt-image-*` models and 0 for the rest; `dall-e-*` cannot stream.
    pub partial_images: Option<u8>,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    pub typical_latency: Duration,
}

impl OpenAiConfig {
    /// Most partial images the Images API streams (`partial_images` is documented as 0 to 3).
    pub const MAX_PARTIAL_IMAGES: u8 = 3;

    /// The `partial_images` in force: the setting, else 2 for `gpt-image-*` and 0 otherwise.
    pub fn partial_images(&self) -> u8 {
        let streams = self.model.starts_with("gpt-image");
        self.partial_images.unwrap_or(if streams { 2 } else { 0 })
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.openai.com".to_owned(),
            model: "gpt-image-1".to_owned(),
            quality: "auto".to_owned(),
            partial_images: None,
            request_timeout: Duration::from_secs(180),
            typical_latency: Duration::from_secs(25),
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("quality", &self.quality)
            .field("partial_images", &self.partial_images)
            .field("request_timeout", &self.request_timeout)
            .field("typical_latency", &self.typical_latency)
            .finish()
    }
}

/// Gemini image models through `POST {base_url}/v1beta/models/{model}:generateContent`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GeminiConfig {
    /// From `GEMINI_API_KEY`, else `GOOGLE_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Override for proxies and tests. Without `/v1beta`.
    pub base_url: String,
    /// A model that can answer with images, such as `gemini-2.5-flash-image`.
    pub model: String,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    pub typical_latency: Duration,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://generativelanguage.googleapis.com".to_owned(),
            model: "gemini-2.5-flash-image".to_owned(),
            request_timeout: Duration::from_secs(120),
            typical_latency: Duration::from_secs(15),
        }
    }
}

impl std::fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("typical_latency", &self.typical_latency)
            .finish()
    }
}

/// Stability AI's Stable Image models through
/// `POST {base_url}/v2beta/stable-image/generate/{model}`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StabilityConfig {
    /// From `STABILITY_API_KEY`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Override for proxies and tests. Without `/v2beta`.
    pub base_url: String,
    /// `core`, `ultra`, or an SD3 model such as `sd3.5-large` (sent to the `sd3` endpoint).
    pub model: String,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    pub typical_latency: Duration,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.stability.ai".to_owned(),
            model: "core".to_owned(),
            request_timeout: Duration::from_secs(120),
            typical_latency: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for StabilityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StabilityConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("typical_latency", &self.typical_latency)
            .finish()
    }
}

/// Models hosted on Replicate: `POST {base_url}/v1/models/{owner}/{name}/predictions` (or
/// `/v1/predictions` with a pinned version), then the prediction polled until it ends.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateConfig {
    /// From `REPLICATE_API_TOKEN`; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Override for proxies and tests. Without `/v1`. Poll and cancel URLs Replicate hands back
    /// are followed only on this origin.
    pub base_url: String,
    /// `owner/name` of a model that takes `prompt` and `aspect_ratio` (the FLUX family), or
    /// `owner/name:version` to pin a version.
    pub model: String,
    /// Wait between two polls of a running prediction.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest one prediction may take. Sent as `Cancel-After`, so Replicate stops it even if
    /// offstage is gone; past it offstage stops polling and reports a timeout.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// One HTTP request's limit (create, one poll, the download).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Typical generation time, reported to callers as `eta_ms`.
    #[serde(with = "humantime_serde")]
    pub typical_latency: Duration,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: "https://api.replicate.com".to_owned(),
            model: "black-forest-labs/flux-schnell".to_owned(),
            poll_interval: Duration::from_millis(500),
            deadline: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            typical_latency: Duration::from_secs(4),
        }
    }
}

impl std::fmt::Debug for ReplicateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("poll_interval", &self.poll_interval)
            .field("deadline", &self.deadline)
            .field("request_timeout", &self.request_timeout)
            .field("typical_latency", &self.typical_latency)
            .finish()
    }
}

/// A configuration that cannot be used, said so that the operator knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Source(#[from] Box<figment::Error>),
    #[error("config file `{0}` does not exist")]
    MissingFile(PathBuf),
    #[error(
        "listen: `{value}` is not an address to listen on ({reason}); use host:port such as 127.0.0.1:8787"
    )]
    BadListen { value: String, reason: String },
    #[error("data_dir: `{path}` is not a writable directory: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data_dir: no home directory to put the default data directory in; set --data-dir")]
    NoDefaultDataDir,
    #[error("provider: unknown provider `{0}`; expected one of {names}", names = ProviderChoice::NAMES)]
    UnknownProvider(String),
    #[error("provider `{provider}` needs an API key: set {variable}")]
    MissingApiKey { provider: &'static str, variable: &'static str },
    #[error("public_url: `{0}` is not an absolute http(s) URL")]
    BadPublicUrl(String),
    #[error("providers.openai.base_url: `{0}` is not an absolute http(s) URL")]
    BadBaseUrl(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

impl Config {
    /// Reads every source, applies flags last and validates the result.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let raw = RawConfig::gather(sources)?;
        raw.validate(sources)
    }

    /// A configuration for tests and embedding: everything default, data under `data_dir`
    /// (manifests in its `tools/`), listening on an ephemeral loopback port, the `sketch`
    /// provider.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            tools: ToolsConfig { dir: data_dir.join("tools"), ..ToolsConfig::default() },
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            database: Database::Sqlite(data_dir.join("offstage.db")),
            data_dir,
            public_url: None,
            security: SecurityConfig {
                tokens: Vec::new(),
                allowed_hosts: raw::default_allowed_hosts(),
                allowed_origins: raw::default_allowed_origins(),
                max_body_bytes: raw::DEFAULT_MAX_BODY_BYTES,
                oauth: None,
            },
            limits: LimitsConfig::default(),
            jobs: JobsConfig::default(),
            provider: ProviderChoice::Sketch,
            fallback: Vec::new(),
            routing: BTreeMap::new(),
            providers: ProvidersConfig::default(),
            images: ImagesConfig::default(),
            push: PushConfig::default(),
            log: DEFAULT_LOG.to_owned(),
        }
    }

    /// The providers in the order they are tried, each with its limits.
    pub fn route(&self) -> Vec<RouteStep> {
        std::iter::once(self.provider)
            .chain(self.fallback.iter().copied())
            .map(|provider| {
                let policy = self.routing.get(provider.as_str()).copied().unwrap_or_default();
                RouteStep {
                    provider,
                    timeout: policy.timeout,
                    concurrency: policy.concurrency,
                    attempts: policy.attempts.unwrap_or(self.jobs.max_attempts).max(1),
                }
            })
            .collect()
    }
}

/// The job store: the embedded SQLite file, or a PostgreSQL database every instance shares.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// The connection URL; it may hold a password, so `Debug` shows only where it points.
    Postgres(Url),
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(&redacted(url)).finish(),
        }
    }
}

/// `postgres://user@host:port/db` with any password left out: what logs may show.
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.set_query(None);
    shown.to_string()
}

/// A `postgres://` (or `postgresql://`) URL naming a host.
fn parse_database_url(value: &str) -> Result<Url, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { field: "database_url", message };
    let url = Url::parse(value.trim()).map_err(|error| invalid(format!("not a URL: {error}")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid(format!(
            "`{}:` is not supported; use postgres://user@host/database, or leave it unset for \
             the embedded SQLite store",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("names no host".to_owned()));
    }
    Ok(url)
}

/// Parses `host:port`, `[v6]:port` or a bare port (which means 127.0.0.1).
fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let value = value.replacen("localhost:", "127.0.0.1:", 1);
    value.parse::<SocketAddr>().map_err(|error| ConfigError::BadListen {
        value: value.clone(),
        reason: if value.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_err()) {
            "the port must be a number from 0 to 65535".to_owned()
        } else {
            error.to_string()
        },
    })
}

/// Creates the directory if needed and proves we can write there.
fn ensure_writable_dir(path: &Path) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::DataDir { path: path.to_owned(), source };
    std::fs::create_dir_all(path).map_err(fail)?;
    let probe = path.join(format!(".offstage-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

fn parse_http_url(value: &str) -> Option<Url> {
    Url::parse(value).ok().filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

#[cfg(test)]
mod tests;
