//! OAuth access tokens: JWTs an authorization server issued for this resource, checked as the
//! MCP authorization spec asks — signature against the issuer's published keys (JWKS), issuer,
//! audience (this server), expiry — and turned into a subject and its scopes.
//!
//! Keys are fetched once and kept for `keys_for`; a token naming a key we do not have makes us
//! fetch again (the issuer rotated), at most once per `refetch_after`, so a stream of forged
//! key ids cannot make us hammer the issuer. A token that verified is remembered (by digest)
//! until it expires or for [`REMEMBER_FOR`], whichever is sooner: a voice session sends the
//! same token with every call, and a signature check costs tens of microseconds.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::OAuthConfig;

/// A verified token is taken on trust for at most this long, so keys the issuer withdrew stop
/// working within it.
pub const REMEMBER_FOR: Duration = Duration::from_secs(60);
/// Verified tokens remembered at once; past this the memory is cleared and refilled.
const REMEMBERED: usize = 10_000;
/// Metadata and key sets are small; anything bigger is not one.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Asymmetric algorithms only: a shared secret would let anyone holding it mint tokens.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub issuer: String,
    pub subject: String,
    pub scopes: Vec<String>,
}

/// Why a token was refused; the text goes to the client as `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a signed JWT: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another resource (aud)")]
    WrongAudience,
    #[error("the token is from another issuer (iss)")]
    WrongIssuer,
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
    /// Space-separated scopes (RFC 9068, RFC 8693).
    #[serde(default)]
    scope: Option<String>,
    /// Scopes as an array, as some issuers write them.
    #[serde(default)]
    scp: Option<Vec<String>>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// Keys without a `kid`, tried when a token names none.
    unnamed: Vec<DecodingKey>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct Verifier {
    config: OAuthConfig,
    http: reqwest::Client,
    keys: tokio::sync::RwLock<Keys>,
    /// One fetch at a time; the others wait for its keys.
    fetching: tokio::sync::Mutex<()>,
    /// Tokens that verified, by SHA-256 digest, with when to stop trusting them.
    verified: std::sync::Mutex<HashMap<[u8; 32], (Grant, Instant)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(config: OAuthConfig, http: reqwest::Client) -> Verifier {
        Verifier {
            config,
            http,
            keys: tokio::sync::RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            verified: std::sync::Mutex::default(),
        }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Whether `token` has the shape of a JWT (three base64url parts), as opposed to one of
    /// the static bearer tokens.
    pub fn looks_like_jwt(token: &str) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && parts.iter().all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    pub async fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((grant, until)) = self.verified.lock().expect("verified lock").get(&digest)
            && Instant::now() < *until
        {
            return Ok(grant.clone());
        }
        let (grant, expires) = self.check(token).await?;
        let until = Instant::now() + expires.min(REMEMBER_FOR);
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() >= REMEMBERED {
            verified.retain(|_, (_, until)| Instant::now() < *until);
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(digest, (grant.clone(), until));
        Ok(grant)
    }

    /// The full check, and how long until the token expires.
    async fn check(&self, token: &str) -> Result<(Grant, Duration), TokenError> {
        let header =
            decode_header(token).map_err(|error| TokenError::Malformed(error.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Malformed(format!(
                "{:?} is not an accepted algorithm",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(error.to_string()),
            })?
            .claims;
        let mut scopes: Vec<String> = claims
            .scope
            .iter()
            .flat_map(|scope| scope.split_whitespace())
            .map(str::to_owned)
            .collect();
        scopes.extend(claims.scp.unwrap_or_default());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expires = Duration::from_secs(claims.exp.saturating_sub(now));
        Ok((Grant { issuer: claims.iss, subject: claims.sub, scopes }, expires))
    }

    /// The key a token names: from the cache while it is fresh, else fetched.
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched.is_some_and(|at| at.elapsed() < self.config.keys_for);
            if fresh && let Some(key) = find(&keys, kid) {
                return Ok(key);
            }
        }
        let _fetching = self.fetching.lock().await;
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched.is_some_and(|at| at.elapsed() < self.config.keys_for);
            let found = find(&keys, kid);
            // Someone else fetched while we waited.
            if fresh && let Some(key) = found {
                return Ok(key);
            }
            // A key we do not know, asked for again soon after a fetch: not worth another.
            if keys.last_attempt.is_some_and(|at| at.elapsed() < self.config.refetch_after) {
                return found.ok_or(if keys.fetched.is_some() {
                    TokenError::UnknownKey
                } else {
                    TokenError::KeysUnavailable("not fetched yet; try again shortly".to_owned())
                });
            }
        }
        let fetched = self.fetch().await;
        let mut keys = self.keys.write().await;
        keys.last_attempt = Some(Instant::now());
        match fetched {
            Ok(set) => {
                let (by_kid, unnamed) = decoding_keys(&set);
                keys.by_kid = by_kid;
                keys.unnamed = unnamed;
                keys.fetched = Some(Instant::now());
                tracing::info!(issuer = %self.config.issuer, keys = set.keys.len(), "fetched the issuer's keys");
                find(&keys, kid).ok_or(TokenError::UnknownKey)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "could not fetch the issuer's keys");
                // Keys we had stay usable while the issuer is unreachable.
                find(&keys, kid).ok_or(TokenError::KeysUnavailable(error))
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let jwks_url = match &self.config.jwks_url {
            Some(url) => url.clone(),
            None => self.discover().await?,
        };
        let body = self.get(&jwks_url).await?;
        serde_json::from_slice(&body)
            .map_err(|error| format!("{jwks_url} is not a JWK set: {error}"))
    }

    /// `jwks_uri` from the issuer's metadata: RFC 8414 first, then OpenID Connect discovery.
    async fn discover(&self) -> Result<Url, String> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let issuer = Url::parse(&self.config.issuer).map_err(|error| error.to_string())?;
        let path = issuer.path().trim_end_matches('/');
        let mut candidates = Vec::new();
        let mut rfc8414 = issuer.clone();
        rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        candidates.push(rfc8414);
        let mut openid = issuer.clone();
        openid.set_path(&format!("{path}/.well-known/openid-configuration"));
        candidates.push(openid);
        let mut last = String::new();
        for candidate in candidates {
            match self.get(&candidate).await {
                Ok(body) => {
                    let metadata: Metadata = serde_json::from_slice(&body)
                        .map_err(|error| format!("{candidate} is not server metadata: {error}"))?;
                    if metadata.issuer.as_deref().is_some_and(|named| named != self.config.issuer) {
                        return Err(format!("{candidate} names another issuer"));
                    }
                    let jwks =
                        metadata.jwks_uri.ok_or_else(|| format!("{candidate} has no jwks_uri"))?;
                    return Url::parse(&jwks)
                        .map_err(|error| format!("jwks_uri `{jwks}`: {error}"));
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url.clone())
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        if response.content_length().is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64) {
            return Err(format!("{url} is too large"));
        }
        let body = response.bytes().await.map_err(|error| format!("{url}: {error}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} is too large"));
        }
        Ok(body.to_vec())
    }
}

fn find(keys: &Keys, kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => keys.by_kid.get(kid).cloned(),
        None => match (keys.unnamed.as_slice(), keys.by_kid.len()) {
            ([only], 0) => Some(only.clone()),
            ([], 1) => keys.by_kid.values().next().cloned(),
            _ => None,
        },
    }
}

/// The signing keys of a set; keys we cannot read (or meant for encryption) are skipped.
fn decoding_keys(set: &JwkSet) -> (HashMap<String, DecodingKey>, Vec<DecodingKey>) {
    let mut by_kid = HashMap::new();
    let mut unnamed = Vec::new();
    for jwk in &set.keys {
        if is_encryption_key(jwk) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "skipping a key we cannot read");
            continue;
        };
        match &jwk.common.key_id {
            Some(kid) => {
                by_kid.insert(kid.clone(), key);
            }
            None => unnamed.push(key),
        }
    }
    (by_kid, unnamed)
}

fn is_encryption_key(jwk: &Jwk) -> bool {
    matches!(jwk.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_parts_look_like_a_jwt() {
        assert!(Verifier::looks_like_jwt("eyJh.eyJz.c2ln"));
        for token in ["alpha-secret", "a.b", "a.b.c.d", "a..c", "a.b.c=", "a b.c.d"] {
            assert!(!Verifier::looks_like_jwt(token), "{token}");
        }
    }
}
