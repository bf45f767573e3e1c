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
    ComfyUiConfig, Config, ConfigError, Database, ImagesConfig, JobsConfig, LimitsConfig,
    OpenAiConfig, ProviderChoice, ProvidersConfig, PushConfig, RawOAuthConfig, RoutePolicy,
    SecurityConfig, ToolsConfig,
    comfyui::read_workflow,
    ensure_writable_dir, parse_database_url, parse_http_url, parse_listen,
    routing::{split_list, validate_fallback, validate_routing},
};

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

/// Every setting with its default; see README "Configuration" for the reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: String,
    pub data_dir: Option<PathBuf>,
    /// `postgres://…`: the store shared by every instance; unset: SQLite in the data dir.
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub provider: String,
    /// Providers tried in order after `provider` gives up.
    pub fallback: Vec<String>,
    pub routing: BTreeMap<String, RoutePolicy>,
    pub tokens: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
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
    /// Layers defaults < file < `OPENAI_*`, `GEMINI_API_KEY`, `STABILITY_API_KEY`,
    /// `REPLICATE_API_TOKEN`, `COMFYUI_API_KEY` < `OFFSTAGE_*` < flags.
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
        // The conventional OpenAI variables, so an existing key just works. Values merged by
        // hand go to the `Default` profile like every other source: a bare `(key, value)` tuple
        // lands in `Global`, which outranks `Default` whatever the merge order, and would beat
        // `OFFSTAGE_*` and the flags.
        if let Some(key) = env_string("OPENAI_API_KEY") {
            figment = figment.merge(Serialized::default("providers.openai.api_key", key));
        }
        if let Some(base) = env_string("OPENAI_BASE_URL") {
            let base = base.trim_end_matches('/').trim_end_matches("/v1").to_owned();
            figment = figment.merge(Serialized::default("providers.openai.base_url", base));
        }
        // Google's SDKs read either variable; ours prefers the Gemini-specific one, so that a
        // `GOOGLE_API_KEY` kept for other Google services does not shadow it.
        if let Some(key) = env_string("GEMINI_API_KEY").or_else(|| env_string("GOOGLE_API_KEY")) {
            figment = figment.merge(Serialized::default("providers.gemini.api_key", key));
        }
        // The variable Stability's own examples and SDKs read.
        if let Some(key) = env_string("STABILITY_API_KEY") {
            figment = figment.merge(Serialized::default("providers.stability.api_key", key));
        }
        // The variable Replicate's own clients and examples read.
        if let Some(key) = env_string("REPLICATE_API_TOKEN") {
            figment = figment.merge(Serialized::default("providers.replicate.api_key", key));
        }
        // ComfyUI has no keys of its own; this one is for an authenticating proxy in front of it.
        if let Some(key) = env_string("COMFYUI_API_KEY") {
            figment = figment.merge(Serialized::default("providers.comfyui.api_key", key));
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
            figment = figment.merge(Serialized::default("fallback", split_list(&fallback)));
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
        let provider = match ProviderChoice::parse(&self.provider)? {
            ProviderChoice::Auto if self.providers.openai.api_key.is_some() => {
                ProviderChoice::Openai
            }
            ProviderChoice::Auto => ProviderChoice::Sketch,
            chosen => chosen,
        };
        require_key(provider, &self.providers)?;
        let fallback = validate_fallback(provider, &self.fallback, &self.providers)?;
        validate_routing(&self.routing)?;
        if parse_http_url(&self.providers.openai.base_url).is_none() {
            return Err(ConfigError::BadBaseUrl(self.providers.openai.base_url));
        }
        validate_partial_images(&self.providers.openai)?;
        if parse_http_url(&self.providers.gemini.base_url).is_none() {
            return Err(ConfigError::Invalid {
                field: "providers.gemini.base_url",
                message: format!(
                    "`{}` is not an absolute http(s) URL",
                    self.providers.gemini.base_url
                ),
            });
        }
        if parse_http_url(&self.providers.stability.base_url).is_none() {
            return Err(ConfigError::Invalid {
                field: "providers.stability.base_url",
                message: format!(
                    "`{}` is not an absolute http(s) URL",
                    self.providers.stability.base_url
                ),
            });
        }
        validate_replicate(&self.providers.replicate)?;
        validate_comfyui(&self.providers.comfyui)?;
        let public_url = match &self.public_url {
            Some(url) => {
                Some(parse_http_url(url).ok_or_else(|| ConfigError::BadPublicUrl(url.clone()))?)
            }
            None => None,
        };
        validate_jobs(&self.jobs)?;
        self.images.validate()?;
        self.push.validate(&self.tokens)?;
        self.limits.validate(self.push.keep_alive.max(MCP_STREAM_KEEP_ALIVE))?;
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
            images: self.images,
            push: self.push,
            tools: validate_tools(self.tools)?,
            log: self.log,
        })
    }
}

/// A provider that needs a key must have one. A key set blank in the file is as good as none;
/// the variables are already filtered that way by `env_string`.
pub(super) fn require_key(
    choice: ProviderChoice,
    providers: &ProvidersConfig,
) -> Result<(), ConfigError> {
    let blank = |key: &Option<String>| key.as_deref().is_none_or(|key| key.trim().is_empty());
    let missing = |provider, variable| Err(ConfigError::MissingApiKey { provider, variable });
    match choice {
        ProviderChoice::Openai if blank(&providers.openai.api_key) => {
            missing("openai", "OPENAI_API_KEY")
        }
        ProviderChoice::Gemini if blank(&providers.gemini.api_key) => {
            missing("gemini", "GEMINI_API_KEY")
        }
        ProviderChoice::Stability if blank(&providers.stability.api_key) => {
            missing("stability", "STABILITY_API_KEY")
        }
        ProviderChoice::Replicate if blank(&providers.replicate.api_key) => {
            missing("replicate", "REPLICATE_API_TOKEN")
        }
        _ => Ok(()),
    }
}

fn validate_jobs(jobs: &JobsConfig) -> Result<(), ConfigError> {
    let invalid =
        |field, message: &str| Err(ConfigError::Invalid { field, message: message.to_owned() });
    if jobs.concurrency == 0 || jobs.tools.values().any(|lane| lane.concurrency == Some(0)) {
        return invalid("jobs.concurrency", "must be at least 1");
    }
    if jobs.max_attempts == 0 {
        return invalid("jobs.max_attempts", "must be at least 1");
    }
    if jobs.timeout.is_zero() {
        return invalid("jobs.timeout", "must be longer than 0s");
    }
    if jobs.lease < std::time::Duration::from_secs(1) {
        return invalid("jobs.lease", "must be at least 1s");
    }
    if jobs.retention.is_zero() {
        return invalid("jobs.retention", "must be longer than 0s");
    }
    Ok(())
}

fn validate_replicate(replicate: &super::ReplicateConfig) -> Result<(), ConfigError> {
    let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
    if parse_http_url(&replicate.base_url).is_none() {
        let message = format!("`{}` is not an absolute http(s) URL", replicate.base_url);
        return invalid("providers.replicate.base_url", message);
    }
    // Every poll is a request against the account's rate limit.
    if replicate.poll_interval < std::time::Duration::from_millis(100) {
        return invalid("providers.replicate.poll_interval", "must be at least 100ms".to_owned());
    }
    // `Cancel-After` counts whole seconds.
    if replicate.deadline < std::time::Duration::from_secs(1) {
        return invalid("providers.replicate.deadline", "must be at least 1s".to_owned());
    }
    Ok(())
}

/// The base URL, and a workflow file the provider can fill in: checked whichever provider is
/// chosen, like every provider's base URL, so a typo fails at start rather than at a switch.
fn validate_comfyui(comfyui: &ComfyUiConfig) -> Result<(), ConfigError> {
    if parse_http_url(&comfyui.base_url).is_none() {
        return Err(ConfigError::Invalid {
            field: "providers.comfyui.base_url",
            message: format!("`{}` is not an absolute http(s) URL", comfyui.base_url),
        });
    }
    if let Some(path) = &comfyui.workflow {
        read_workflow(path).map_err(|message| ConfigError::Invalid {
            field: "providers.comfyui.workflow",
            message,
        })?;
    }
    if comfyui.poll_interval.is_zero() {
        return Err(ConfigError::Invalid {
            field: "providers.comfyui.poll_interval",
            message: "must be longer than 0s".to_owned(),
        });
    }
    Ok(())
}

/// `partial_images` is documented as 0 to 3, and only `gpt-image-*` models stream at all.
fn validate_partial_images(openai: &OpenAiConfig) -> Result<(), ConfigError> {
    let field = "providers.openai.partial_images";
    match openai.partial_images {
        Some(count) if count > OpenAiConfig::MAX_PARTIAL_IMAGES => Err(ConfigError::Invalid {
            field,
            message: format!(
                "{count} is out of range; use 0 to {}",
                OpenAiConfig::MAX_PARTIAL_IMAGES
            ),
        }),
        Some(count) if count > 0 && openai.model.starts_with("dall-e") => {
            Err(ConfigError::Invalid {
                field,
                message: format!(
                    "must be 0 for `{}`, which cannot stream partial images",
                    openai.model
                ),
            })
        }
        _ => Ok(()),
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
                humantime::format_duration(tools.reply_within),
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

#[expect(
    clippy::disallowed_methods,
    reason = "config is the one module that reads the environment"
)]
fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}
