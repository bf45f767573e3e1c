//! What a provider is to the rest of offstage: its name, its settings, the environment
//! variables that fill them, whether `auto` may pick it, its checks and its construction.
//! Each provider implements [`ProviderSpec`] in its own file; [`super::registry`] lists them.

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use super::{ImageProvider, Parsing, http::Credential};
use crate::settings::Secret;

/// One provider kind, as configuration and the server see it, implemented by the provider
/// itself: what configuration reads, checks and builds is the type that draws.
pub trait ProviderSpec: ImageProvider + Sized + 'static {
    /// The name in `provider`, `fallback`, `[providers.<name>]` and `[routing.<name>]`.
    const NAME: &'static str;
    /// `[providers.<name>]`: every field documented, every default in `Default`.
    type Settings: Serialize
        + DeserializeOwned
        + Default
        + Clone
        + PartialEq
        + fmt::Debug
        + schemars::JsonSchema
        + Send
        + Sync
        + 'static;
    /// Variables the service's own SDKs read, so an existing key just works.
    const ENV: &'static [EnvVar] = &[];

    /// True when `provider = "auto"` should pick it with these settings.
    fn auto(settings: &Self::Settings) -> bool {
        let _ = settings;
        false
    }

    /// Checks made whichever provider is routed to (URLs, intervals, files), so that a typo
    /// fails at start rather than at a switch.
    fn check(settings: &Self::Settings) -> Result<(), SetupError> {
        let _ = settings;
        Ok(())
    }

    /// Builds the provider; the one place its key is required. Configuration calls it for
    /// every provider in the route, so that what cannot be built is refused at start.
    fn build(settings: &Self::Settings, context: &Context) -> Result<Self, SetupError>;
}

/// An environment variable read into one setting of a provider.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    /// The field of the provider's settings it fills.
    pub setting: &'static str,
    /// Turns the variable's value into the setting's (trimmed already).
    pub normalize: fn(&str) -> String,
}

impl EnvVar {
    /// A variable whose value is the setting's as it is.
    pub const fn plain(name: &'static str, setting: &'static str) -> EnvVar {
        EnvVar { name, setting, normalize: str::to_owned }
    }
}

/// What building a provider needs from the server.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The one HTTP client every provider shares (its pool, its TLS roots).
    pub http: reqwest::Client,
    /// Where answers are parsed (the image pool, off the async workers).
    pub parsing: Parsing,
}

/// A provider's settings that cannot be used, said so that the operator knows what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("provider `{provider}` needs an API key: set {variable}")]
    MissingKey { provider: &'static str, variable: &'static str },
    #[error("providers.{provider}.{field}: {message}")]
    Invalid { provider: &'static str, field: &'static str, message: String },
    #[error("no provider is called `{name}`")]
    Unknown { name: String },
}

impl SetupError {
    pub fn invalid(
        provider: &'static str,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        SetupError::Invalid { provider, field, message: message.into() }
    }

    /// The provider's `base_url` is not one we can send to.
    pub fn base_url(provider: &'static str, url: &str) -> SetupError {
        SetupError::invalid(provider, "base_url", format!("`{url}` is not an absolute http(s) URL"))
    }
}

/// `url` as provider `P`'s `base_url`: an absolute http(s) URL, else the error saying so.
pub fn check_base_url<P: ProviderSpec>(url: &str) -> Result<(), SetupError> {
    match crate::settings::http_url(url) {
        Some(_) => Ok(()),
        None => Err(SetupError::base_url(P::NAME, url)),
    }
}

/// The key of provider `P`: set and not blank, else the error naming the variable to set
/// (its first [`EnvVar`] for `api_key`).
pub fn required_key<P: ProviderSpec>(key: Option<&Secret>) -> Result<&Secret, SetupError> {
    key.filter(|key| !key.is_blank()).ok_or(SetupError::MissingKey {
        provider: P::NAME,
        variable: P::ENV
            .iter()
            .find(|var| var.setting == "api_key")
            .map_or("an API key", |var| var.name),
    })
}

/// The required key of provider `P` as the credential its requests carry.
pub fn credential<P: ProviderSpec>(
    key: Option<&Secret>,
    header: http::HeaderName,
    scheme: Option<&str>,
) -> Result<Credential, SetupError> {
    credential_of::<P>(required_key::<P>(key)?, header, scheme)
}

/// `key` as the credential requests of provider `P` carry, or the error saying it cannot
/// travel in a header.
pub fn credential_of<P: ProviderSpec>(
    key: &Secret,
    header: http::HeaderName,
    scheme: Option<&str>,
) -> Result<Credential, SetupError> {
    let value = key.header(scheme).ok_or_else(|| {
        SetupError::invalid(P::NAME, "api_key", "has characters an HTTP header cannot carry")
    })?;
    Ok(Credential { header, value, secret: key.clone() })
}
