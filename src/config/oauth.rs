//! `[oauth]`: offstage as an OAuth 2.1 resource server (the MCP authorization spec): access
//! tokens are JWTs an authorization server issued for this resource, checked against its keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;
use crate::settings::HumanDuration;

/// `[oauth]` as written; `issuer` set turns it on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawOAuthConfig {
    /// The authorization server (`iss` of its tokens), e.g. `https://auth.example.com`.
    pub issuer: Option<String>,
    /// This server as a resource (`aud` of its tokens). Default: `public_url` + `/mcp`.
    pub audience: Option<String>,
    /// Where the issuer publishes its keys. Default: `jwks_uri` of its metadata
    /// (`/.well-known/oauth-authorization-server`, else `/.well-known/openid-configuration`).
    pub jwks_url: Option<String>,
    /// The scope tools need: `/mcp`, `/v1/jobs`, `/v1/events`.
    pub tools_scope: Option<String>,
    /// The scope operator views need: `/v1/tools`.
    pub operator_scope: Option<String>,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_for: Option<HumanDuration>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leeway: Option<HumanDuration>,
    /// A token naming a key we do not have makes us fetch the keys again (the issuer rotated
    /// them), but not sooner than this after the last fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refetch_after: Option<HumanDuration>,
}

/// `[oauth]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<Url>,
    pub tools_scope: String,
    pub operator_scope: String,
    pub keys_for: Duration,
    pub leeway: Duration,
    pub refetch_after: Duration,
}

impl RawOAuthConfig {
    /// `None` when OAuth is off. `public_url` gives the default audience.
    pub(super) fn validate(
        self,
        public_url: Option<&Url>,
    ) -> Result<Option<OAuthConfig>, ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        let Some(issuer) = self.issuer else {
            if self.audience.is_some() || self.jwks_url.is_some() {
                return invalid(
                    "oauth.issuer",
                    "is needed for the other oauth settings".to_owned(),
                );
            }
            return Ok(None);
        };
        if !Url::parse(&issuer).is_ok_and(|url| secure_or_local(&url)) {
            return invalid(
                "oauth.issuer",
                format!("`{issuer}` must be an https URL (http only on loopback)"),
            );
        }
        let jwks_url = match self.jwks_url {
            Some(jwks) => match Url::parse(&jwks) {
                Ok(url) if secure_or_local(&url) => Some(url),
                _ => {
                    return invalid(
                        "oauth.jwks_url",
                        format!("`{jwks}` must be an https URL (http only on loopback)"),
                    );
                }
            },
            None => None,
        };
        let audience = match (self.audience, public_url) {
            (Some(audience), _) if !audience.trim().is_empty() => audience,
            (_, Some(public)) => format!("{}/mcp", public.as_str().trim_end_matches('/')),
            _ => {
                return invalid(
                    "oauth.audience",
                    "is needed (or set public_url, and it is public_url/mcp)".to_owned(),
                );
            }
        };
        Ok(Some(OAuthConfig {
            issuer,
            audience,
            jwks_url,
            tools_scope: self.tools_scope.unwrap_or_else(|| "offstage:tools".to_owned()),
            operator_scope: self.operator_scope.unwrap_or_else(|| "offstage:operator".to_owned()),
            keys_for: self.keys_for.map_or(Duration::from_secs(600), |d| d.0),
            leeway: self.leeway.map_or(Duration::from_secs(30), |d| d.0),
            refetch_after: self.refetch_after.map_or(Duration::from_secs(30), |d| d.0),
        }))
    }
}

/// https anywhere; http only to this machine (a local issuer in development and tests).
fn secure_or_local(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        },
        _ => false,
    }
}
