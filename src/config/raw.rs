//! The unvalidated configuration as serde reads it, and the layering of its sources.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use super::{
    Config, ConfigError, Database, ImagesConfig, JobsConfig, LimitsConfig, ProvidersConfig,
    PushConfig, RawOAuthConfig, RoutePolicy, SecurityConfig, ToolsConfig, ensure_writable_dir,
    parse_database_url, parse_listen, routing,
};
use object_store::aws::AmazonS3ConfigKey;

use crate::settings::http_url;

pub(super) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The keep-alive of MCP's own SSE streams (set in `http`); idle connections are longer.
pub const MCP_STREAM_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// rmcp logs every stateless request at `info`; that is noise in an operator's log.
pub const DEFAULT_LOG: &str = "info,rmcp=warn";
const DEFAULT_CONFIG_FILE: &str = "offstage.toml";
const ENV_PREFIX: &str = "OFFSTAGE_";

pub(super) fn default_allowed_hosts() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()]
}

pub(super) fn default_allowed_origins() -> Vec<String> {
    vec![
        "http://localhost:*".to_owned(),
        "http://127.0.0.1:*".to_owned(),
        "http://[::1]:*".to_owned(),
    ]
}

/// Where configuration comes from besides the environment: the CLI's file and flags.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--config`: must exist. Without it `./offstage.toml` is read when present.
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Settings given as flags; they win over file and environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Every setting with its default; docs/configuration.md is generated from it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// The address to serve on, `host:port`. Beyond loopback, set `public_url`, `allowed_hosts`
    /// and `tokens` too (docs/operations.md).
    pub listen: String,
    /// Where the SQLite store and the image files live; unset: `offstage` in the user's local
    /// data directory.
    pub data_dir: Option<PathBuf>,
    /// `postgres://…`: the store shared by every instance; unset: SQLite in the data dir.
    pub database_url: Option<String>,
    /// The origin clients reach this server at, used in the image URLs it hands out; unset:
    /// the bound address.
    pub public_url: Option<String>,
    /// The image provider: a registered name (docs/providers.md), or `auto` for the first whose
    /// key is set, else `sketch`.
    pub provider: String,
    /// Providers tried in order after `provider` gives up.
    pub fallback: Vec<String>,
    pub routing: BTreeMap<String, RoutePolicy>,
    /// Bearer tokens that may call; each sees only its own jobs. Empty (and no `[oauth]`): no
    /// token is asked for.
    pub tokens: Vec<String>,
    /// `Host` headers accepted (DNS-rebinding guard); the `public_url` host must be listed.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted, `*` as a port wildcard; requests without one pass.
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes; a larger one is answered `413`.
    pub max_body_bytes: usize,
    /// A `tracing` filter for the logs on stderr, as in `RUST_LOG`.
    pub log: String,
    pub oauth: RawOAuthConfig,
    pub limits: LimitsConfig,
    pub jobs: JobsConfig,
    pub providers: ProvidersConfig,
    pub images: ImagesConfig,
    pub push: PushConfig,
    pub tools: ToolsConfig,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8787".to_owned(),
            data_dir: None,
            database_url: None,
            public_url: None,
            provider: "auto".to_owned(),
            fallback: Vec::new(),
            routing: BTreeMap::new(),
            tokens: Vec::new(),
            allowed_hosts: default_allowed_hosts(),
            allowed_origins: default_allowed_origins(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            log: DEFAULT_LOG.to_owned(),
            oauth: RawOAuthConfig::default(),
            limits: LimitsConfig::default(),
            jobs: JobsConfig::default(),
            providers: ProvidersConfig::default(),
            images: ImagesConfig::default(),
            push: PushConfig::default(),
            tools: ToolsConfig::default(),
        }
    }
}

impl RawConfig {
    /// Layers defaults < file < the providers' own variables (`OPENAI_API_KEY`, …, from the
    /// registry) < `OFFSTAGE_*` < flags.
    pub(super) fn gather(sources: &ConfigSources) -> Result<RawConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        match &sources.config_file {
            Some(path) if !path.is_file() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // The variables each provider's own SDKs read (its registry entry lists them), so an
        // existing key just works; for one setting the first variable set wins. Values merged
        // by hand go to the `Default` profile like every other source: a bare `(key, value)`
        // tuple lands in `Global`, which outranks `Default` whatever the merge order, and would
        // beat `OFFSTAGE_*` and the flags.
        let mut filled = std::collections::BTreeSet::new();
        for (provider, var) in ProvidersConfig::env() {
            let setting = format!("providers.{provider}.{}", var.setting);
            if filled.contains(&setting) {
                continue;
            }
            if let Some(value) = env_string(var.name) {
                let value = (var.normalize)(value.trim());
                figment = figment.merge(Serialized::default(&setting, value));
                filled.insert(setting);
            }
        }
        // Tokens, the listen address and the config path are read raw: figment would turn a
        // numeric token or a bare port (`OFFSTAGE_LISTEN=9000`) into an integer, which a string
        // setting rejects, and `config` is not a setting; nor is `OFFSTAGE_CACHE`, where the
        // scripts keep build products.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .ignore(&["tokens", "listen", "config", "fallback", "cache"])
                // The test harness's own variables (`OFFSTAGE_TEST_*`, exported by scripts/test
                // to every `offstage` it runs) are not settings.
                .filter(|key| !key.starts_with("test_")),
        );
        if let Some(fallback) = env_string("OFFSTAGE_FALLBACK") {
            let fallback: Vec<&str> =
                fallback.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
            figment = figment.merge(Serialized::default("fallback", fallback));
        }
        if let Some(listen) = env_string("OFFSTAGE_LISTEN") {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        if let Some(tokens) = env_string("OFFSTAGE_TOKENS") {
            let tokens: Vec<String> = tokens
                .split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(str::to_owned)
                .collect();
            figment = figment.merge(Serialized::default("tokens", tokens));
        }
        figment = figment.merge(Serialized::defaults(&sources.overrides));
        figment.extract().map_err(|error| ConfigError::Source(Box::new(error)))
    }

    pub(super) fn validate(self, _sources: &ConfigSources) -> Result<Config, ConfigError> {
        let listen = parse_listen(&self.listen)?;
        let (provider, fallback) =
            routing::resolve(&self.provider, &self.fallback, &self.routing, &self.providers)?;
        let public_url = match &self.public_url {
            Some(url) => Some(http_url(url).ok_or_else(|| ConfigError::BadPublicUrl(url.clone()))?),
            None => None,
        };
        self.jobs.validate()?;
        let mut images = self.images;
        images.aws_environment = aws_variables();
        images.validate()?;
        self.push.validate(&self.tokens)?;
        self.limits.validate(self.push.keep_alive.0.max(MCP_STREAM_KEEP_ALIVE))?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_body_bytes",
                message: format!("{} is too small; use at least 1024", self.max_body_bytes),
            });
        }
        let data_dir = match self.data_dir {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        ensure_writable_dir(&data_dir)?;
        let database = match self.database_url {
            Some(url) => Database::Postgres(parse_database_url(&url)?),
            None => Database::Sqlite(data_dir.join("offstage.db")),
        };
        let oauth = self.oauth.validate(public_url.as_ref())?;
        Ok(Config {
            listen,
            data_dir,
            database,
            public_url,
            security: SecurityConfig {
                tokens: self.tokens,
                allowed_hosts: self.allowed_hosts,
                allowed_origins: self.allowed_origins,
                max_body_bytes: self.max_body_bytes,
                oauth,
            },
            limits: self.limits,
            jobs: self.jobs,
            provider,
            fallback,
            routing: self.routing,
            providers: self.providers,
            images,
            push: self.push,
            tools: validate_tools(self.tools)?,
            log: self.log,
        })
    }
}

fn default_data_dir() -> Result<PathBuf, ConfigError> {
    directories::ProjectDirs::from("", "", "offstage")
        .map(|dirs| dirs.data_local_dir().to_owned())
        .ok_or(ConfigError::NoDefaultDataDir)
}

/// Profile names appear in URLs (`/mcp/{profile}`); budgets of zero would refuse every tool.
fn validate_tools(tools: ToolsConfig) -> Result<ToolsConfig, ConfigError> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 48
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for name in tools.profiles.keys().chain([&tools.default_profile]) {
        if !valid_name(name) {
            return Err(ConfigError::Invalid {
                field: "tools.profiles",
                message: format!(
                    "profile name `{name}` must be 1-48 lowercase letters, digits, `_` or `-`"
                ),
            });
        }
    }
    let within = tools.reply_within;
    if within < std::time::Duration::from_millis(100) || within > ToolsConfig::MAX_REPLY_WITHIN {
        return Err(ConfigError::Invalid {
            field: "tools.reply_within",
            message: format!(
                "{} is out of range; use 100ms to {}",
                humantime::format_duration(*tools.reply_within),
                humantime::format_duration(ToolsConfig::MAX_REPLY_WITHIN)
            ),
        });
    }
    if http::HeaderName::from_bytes(tools.profile_header.as_bytes()).is_err() {
        return Err(ConfigError::Invalid {
            field: "tools.profile_header",
            message: format!("`{}` is not a valid header name", tools.profile_header),
        });
    }
    let default = &tools.default_profile;
    if default != super::DEFAULT_PROFILE && !tools.profiles.contains_key(default) {
        return Err(ConfigError::Invalid {
            field: "tools.default_profile",
            message: format!("`{default}` is not one of tools.profiles"),
        });
    }
    let budgets = tools.budgets;
    if budgets.per_tool == 0 || budgets.per_profile == 0 || budgets.tools_per_profile == 0 {
        return Err(ConfigError::Invalid {
            field: "tools.budgets",
            message: "budgets must be greater than zero".to_owned(),
        });
    }
    Ok(tools)
}

/// The `AWS_*` variables object_store knows, as its `AmazonS3Builder::from_env` reads them.
fn aws_variables() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, value)| key.starts_with("AWS_") && !value.trim().is_empty())
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .filter(|(key, _)| key.parse::<AmazonS3ConfigKey>().is_ok())
        .collect()
}

#[expect(
    clippy::disallowed_methods,
    reason = "config is the one module that reads the environment"
)]
fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}
