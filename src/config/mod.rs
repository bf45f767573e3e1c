//! Configuration: `offstage.toml`, then `OFFSTAGE_*` environment variables, then flags,
//! validated once at start into a [`Config`] with clear errors. Nothing else reads `std::env`.

mod limits;
mod oauth;
mod push;
mod raw;
pub mod reference;
mod routing;
mod tools;

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

pub use crate::providers::{
    ProvidersConfig,
    route::{RoutePolicy, RouteStep},
};
pub use crate::{
    images::settings::ImagesConfig,
    jobs::settings::{JobsConfig, LaneConfig},
    settings::redacted,
};
pub use limits::LimitsConfig;
pub use oauth::{OAuthConfig, RawOAuthConfig};
pub use push::{PushConfig, WebhookConfig};
pub use raw::{ConfigSources, DEFAULT_LOG, MCP_STREAM_KEEP_ALIVE, Overrides, RawConfig};
use serde::{Deserialize, Serialize};

use crate::providers::SetupError;
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
    /// The first provider tried: a name from the provider registry (`auto` resolved).
    pub provider: &'static str,
    /// Tried in order when the one before gives up (registered names, no repeats).
    pub fallback: Vec<&'static str>,
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
    #[error("{field}: unknown provider `{name}`; expected one of {names}", names = provider_names())]
    UnknownProvider { field: &'static str, name: String },
    /// A provider's own settings or key, as its registry entry checks them.
    #[error(transparent)]
    Provider(#[from] SetupError),
    #[error("public_url: `{0}` is not an absolute http(s) URL")]
    BadPublicUrl(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

impl From<crate::settings::Invalid> for ConfigError {
    fn from(invalid: crate::settings::Invalid) -> ConfigError {
        ConfigError::Invalid { field: invalid.field, message: invalid.message }
    }
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
            provider: crate::providers::registry::OFFLINE,
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
                let policy = self.routing.get(provider).copied().unwrap_or_default();
                RouteStep {
                    provider,
                    timeout: policy.timeout.map(|timeout| timeout.0),
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

/// `auto, sketch, openai, …`: what `provider` and `fallback` accept.
fn provider_names() -> String {
    std::iter::once("auto")
        .chain(crate::providers::NAMES.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
