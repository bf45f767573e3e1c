//! Request guards in front of every route: DNS-rebinding protection (`Host`), cross-origin
//! protection (`Origin`), and bearer-token authentication that names the [`Caller`].

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderName, header, uri::Authority},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::{
    config::{DeliveryHint, PushConfig, SecurityConfig},
    oauth::Verifier,
    tools::Caller,
};

/// Accepted `Host` and `Origin` values, parsed once.
#[derive(Debug)]
pub(crate) struct OriginGuard {
    hosts: Vec<(String, Option<u16>)>,
    origins: Vec<AllowedOrigin>,
}

#[derive(Debug)]
enum AllowedOrigin {
    Null,
    /// `None` port: any port (`:*`, or no port given).
    Tuple {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

fn normalize(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

fn parse_authority(value: &str) -> (String, Option<u16>) {
    match Authority::try_from(value.trim()) {
        Ok(authority) => (normalize(authority.host()), authority.port_u16()),
        Err(_) => (normalize(value.trim()), None),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The request's one `Host`, read as RFC 9112 §3.2 asks: exactly one header, a valid
/// authority (`host[:port]`, the port a number up to 65535), and no userinfo (`a@localhost`
/// names the host `localhost` to some parsers and the whole string to others).
fn strict_host(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::HOST).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(match headers.contains_key(header::HOST) {
            true => ApiError::BadHost("more than one Host header".to_owned()),
            false => ApiError::MissingHost,
        });
    };
    let host = value.to_str().map_err(|_| ApiError::BadHost("Host is not ASCII".to_owned()))?;
    let bad = |why: &str| ApiError::BadHost(format!("Host `{host}` {why}"));
    if host.contains('@') {
        return Err(bad("has userinfo"));
    }
    let authority = Authority::try_from(host).map_err(|_| bad("is not a host[:port]"))?;
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    // `Authority` drops a port it cannot read, so the port is checked as written.
    let port = host.rfind(':').map(|at| &host[at + 1..]).filter(|port| !port.contains(']'));
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(bad("has a port that is not a number from 0 to 65535"));
    }
    Ok(host)
}

impl OriginGuard {
    pub(crate) fn new(security: &SecurityConfig) -> OriginGuard {
        let hosts = security.allowed_hosts.iter().map(|host| parse_authority(host)).collect();
        let origins = security
            .allowed_origins
            .iter()
            .filter_map(|origin| {
                if origin.trim() == "null" {
                    return Some(AllowedOrigin::Null);
                }
                let (scheme, rest) = origin.trim().split_once("://")?;
                let (host, port) = match rest.strip_suffix(":*") {
                    Some(host) => (normalize(host), None),
                    None => parse_authority(rest),
                };
                Some(AllowedOrigin::Tuple { scheme: scheme.to_ascii_lowercase(), host, port })
            })
            .collect();
        OriginGuard { hosts, origins }
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.hosts.is_empty() {
            // Any host is allowed, but a malformed one is still refused.
            if headers.contains_key(header::HOST) {
                strict_host(headers)?;
            }
        } else {
            let host = strict_host(headers)?;
            let (name, port) = parse_authority(host);
            let allowed = self.hosts.iter().any(|(allowed, allowed_port)| {
                *allowed == name && allowed_port.is_none_or(|p| Some(p) == port)
            });
            if !allowed {
                return Err(ApiError::ForbiddenHost(host.to_owned()));
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        if self.origins.is_empty() {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or("<non-ascii>");
        if self.origin_allowed(origin) {
            Ok(())
        } else {
            Err(ApiError::ForbiddenOrigin(origin.to_owned()))
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let parsed = origin.split_once("://").map(|(scheme, rest)| {
            let scheme = scheme.to_ascii_lowercase();
            let (host, port) = parse_authority(rest);
            let port = port.or_else(|| default_port(&scheme));
            (scheme, host, port)
        });
        self.origins.iter().any(|allowed| match (allowed, &parsed) {
            (AllowedOrigin::Null, _) => origin == "null",
            (AllowedOrigin::Tuple { scheme, host, port }, Some((s, h, p))) => {
                scheme == s && host == h && port.is_none_or(|port| Some(port) == *p)
            }
            (AllowedOrigin::Tuple { .. }, None) => false,
        })
    }
}

/// Rejects requests whose `Host` or `Origin` is not on the allow-lists.
pub(crate) async fn check_origin(
    State(guard): State<Arc<OriginGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::warn!(%error, "rejected request");
            error.into_response()
        }
    }
}

/// Names the caller of a request: a static bearer token (kept only as SHA-256 digests, so the
/// secrets never sit in memory twice) or an OAuth access token (checked by [`Verifier`]), its
/// conversation and its delivery override.
#[derive(Debug)]
pub(crate) struct Authenticator {
    digests: Vec<[u8; 32]>,
    oauth: Option<Verifier>,
    /// Where clients find how to get a token (RFC 9728), named in every 401.
    resource_metadata: Option<String>,
    conversation_header: HeaderName,
    delivery_header: HeaderName,
    piggyback_header: HeaderName,
}

/// What a route needs of an OAuth token. Static tokens and local callers have both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `/mcp`, the job views and the event stream.
    Tools,
    /// Operator views (`/v1/tools`).
    Operator,
}

/// Longest conversation key accepted; keys are ids, not content.
const MAX_CONVERSATION_LEN: usize = 200;

impl Authenticator {
    /// `public_base`: the server's public origin, where the resource metadata is served.
    pub(crate) fn new(
        security: &SecurityConfig,
        push: &PushConfig,
        http: reqwest::Client,
        public_base: &str,
    ) -> Authenticator {
        let oauth = security.oauth.clone().map(|config| Verifier::new(config, http));
        let resource_metadata = oauth.as_ref().map(|_| {
            format!("{}{}", public_base.trim_end_matches('/'), super::oauth::METADATA_PATH)
        });
        Authenticator {
            digests: security.tokens.iter().map(|token| digest(token)).collect(),
            oauth,
            resource_metadata,
            conversation_header: header_name(&push.conversation_header),
            delivery_header: header_name(&push.delivery_header),
            piggyback_header: header_name(&push.piggyback_header),
        }
    }

    pub(crate) fn verifier(&self) -> Option<&Verifier> {
        self.oauth.as_ref()
    }

    /// The caller behind these headers, entitled to `scope`. Without tokens or OAuth everyone
    /// is the local owner.
    pub(crate) async fn caller(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let mut caller = self.owner(headers, scope).await?;
        if let Some(value) = headers.get(&self.conversation_header) {
            let key = value.to_str().map(str::trim).unwrap_or("");
            if key.is_empty() || key.len() > MAX_CONVERSATION_LEN {
                return Err(ApiError::BadHeader(format!(
                    "{} must be 1 to {MAX_CONVERSATION_LEN} visible ASCII characters",
                    self.conversation_header
                )));
            }
            caller.conversation = Some(key.to_owned());
        }
        if let Some(value) = headers.get(&self.delivery_header) {
            let hint = value.to_str().ok().and_then(DeliveryHint::parse).ok_or_else(|| {
                ApiError::BadHeader(format!(
                    "{} must be interrupt, when_idle or silent",
                    self.delivery_header
                ))
            })?;
            caller.delivery = Some(hint);
        }
        if let Some(value) = headers.get(&self.piggyback_header) {
            let value = value.to_str().map(str::trim).unwrap_or("").to_ascii_lowercase();
            caller.piggyback = match value.as_str() {
                "on" => true,
                "off" => false,
                _ => {
                    let name = &self.piggyback_header;
                    return Err(ApiError::BadHeader(format!("{name} must be on or off")));
                }
            };
        }
        Ok(caller)
    }

    async fn owner(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
        if self.digests.is_empty() && self.oauth.is_none() {
            return Ok(Caller::local());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
            })
            .ok_or_else(|| ApiError::Unauthorized { challenge: self.challenge(None) })?;
        // Comparing digests, not secrets, means timing reveals nothing about a token.
        if self.digests.contains(&digest(token)) {
            return Ok(Caller::for_token(token));
        }
        let Some(verifier) = self.oauth.as_ref().filter(|_| Verifier::looks_like_jwt(token)) else {
            return Err(ApiError::Unauthorized { challenge: self.challenge(None) });
        };
        let grant = verifier.verify(token).await.map_err(|error| ApiError::InvalidToken {
            challenge: self.challenge(Some(("invalid_token", &error.to_string()))),
            reason: error.to_string(),
        })?;
        let needed = match scope {
            Scope::Tools => &verifier.config().tools_scope,
            Scope::Operator => &verifier.config().operator_scope,
        };
        if !grant.scopes.iter().any(|granted| granted == needed) {
            let mut challenge = self.challenge(Some(("insufficient_scope", "a scope is missing")));
            challenge.push_str(&format!(", scope=\"{needed}\""));
            return Err(ApiError::InsufficientScope { scope: needed.clone(), challenge });
        }
        Ok(Caller::for_subject(&grant.issuer, &grant.subject))
    }

    /// `WWW-Authenticate` for a refusal: the resource metadata when OAuth is on (so a client
    /// can find the authorization server), and the error when a token was presented.
    fn challenge(&self, error: Option<(&str, &str)>) -> String {
        let mut challenge = "Bearer".to_owned();
        let mut parameters = Vec::new();
        if let Some(url) = &self.resource_metadata {
            parameters.push(format!("resource_metadata=\"{url}\""));
        }
        if let Some((code, description)) = error {
            parameters.push(format!("error=\"{code}\""));
            parameters.push(format!("error_description=\"{}\"", description.replace('"', "'")));
        }
        if !parameters.is_empty() {
            challenge.push(' ');
            challenge.push_str(&parameters.join(", "));
        }
        challenge
    }
}

/// Header names are validated with the configuration; a bad one cannot reach here.
pub(super) fn header_name(name: &str) -> HeaderName {
    HeaderName::from_bytes(name.as_bytes()).unwrap_or(HeaderName::from_static("x-offstage-invalid"))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Attaches the [`Caller`] to the request or answers 401 (403 for a missing scope).
pub(crate) async fn authenticate(
    State((auth, scope)): State<(Arc<Authenticator>, Scope)>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.caller(request.headers(), scope).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn security(hosts: &[&str], origins: &[&str]) -> SecurityConfig {
        SecurityConfig {
            tokens: vec![],
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            max_body_bytes: 1024,
            oauth: None,
        }
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn hosts_match_with_any_port_unless_one_is_given() {
        let guard = OriginGuard::new(&security(&["localhost", "[::1]", "example.com:443"], &[]));
        assert!(guard.check(&headers("localhost:8787", None)).is_ok());
        assert!(guard.check(&headers("LOCALHOST", None)).is_ok());
        assert!(guard.check(&headers("[::1]:9", None)).is_ok());
        assert!(guard.check(&headers("example.com:443", None)).is_ok());
        assert!(matches!(
            guard.check(&headers("example.com:80", None)),
            Err(ApiError::ForbiddenHost(_))
        ));
        assert!(matches!(
            guard.check(&headers("evil.test", None)),
            Err(ApiError::ForbiddenHost(_))
        ));
    }

    #[test]
    fn hosts_are_parsed_strictly_before_the_allow_list() {
        let guard = OriginGuard::new(&security(&["localhost"], &[]));
        for bad in ["localhost:99999", "a@localhost", "evil.example@localhost", "local host", ":80"]
        {
            assert!(
                matches!(guard.check(&headers(bad, None)), Err(ApiError::BadHost(_))),
                "{bad} must be refused as malformed"
            );
        }
        let mut two = headers("localhost", None);
        two.append(header::HOST, HeaderValue::from_static("evil.test"));
        assert!(
            matches!(guard.check(&two), Err(ApiError::BadHost(m)) if m.contains("more than one"))
        );
        assert!(matches!(guard.check(&HeaderMap::new()), Err(ApiError::MissingHost)));
        assert!(guard.check(&headers("localhost:65535", None)).is_ok());
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let guard = OriginGuard::new(&security(
            &[],
            &["http://localhost:*", "https://app.example.com", "http://127.0.0.1:3000"],
        ));
        assert!(guard.check(&headers("x", Some("http://localhost:5173"))).is_ok());
        assert!(guard.check(&headers("x", Some("https://app.example.com"))).is_ok());
        assert!(guard.check(&headers("x", Some("http://127.0.0.1:3000"))).is_ok());
        for bad in ["http://127.0.0.1:3001", "https://localhost:5173", "http://evil.test", "null"] {
            assert!(guard.check(&headers("x", Some(bad))).is_err(), "{bad} must be rejected");
        }
        assert!(guard.check(&headers("x", None)).is_ok(), "no Origin: not a browser");
    }

    fn authenticator(tokens: &[&str]) -> Authenticator {
        let mut security = security(&[], &[]);
        security.tokens = tokens.iter().map(|token| (*token).to_owned()).collect();
        let http = reqwest::Client::new();
        Authenticator::new(&security, &PushConfig::default(), http, "http://127.0.0.1:8787/")
    }

    async fn caller_for(
        auth: &Authenticator,
        pairs: &[(&'static str, &str)],
    ) -> Result<Caller, ApiError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        auth.caller(&headers, Scope::Tools).await
    }

    #[tokio::test]
    async fn tokens_name_distinct_owners_and_reject_everything_else() {
        let auth = authenticator(&["alpha", "beta"]);
        let alpha = caller_for(&auth, &[("authorization", "Bearer alpha")]).await.unwrap();
        let beta = caller_for(&auth, &[("authorization", "bearer  beta")]).await.unwrap();
        assert_ne!(alpha, beta);
        assert!(!alpha.owner.contains("alpha"), "owner ids must not embed the secret");
        for refused in ["Bearer gamma", "Basic alpha", "Bearer a.b.c"] {
            let error = caller_for(&auth, &[("authorization", refused)]).await.unwrap_err();
            assert!(
                matches!(&error, ApiError::Unauthorized { challenge } if challenge == "Bearer"),
                "{refused}: {error:?}"
            );
        }
        assert!(matches!(caller_for(&auth, &[]).await, Err(ApiError::Unauthorized { .. })));
        let open = authenticator(&[]);
        assert_eq!(caller_for(&open, &[]).await.unwrap(), Caller::local());
    }

    #[tokio::test]
    async fn conversation_and_delivery_headers_are_read_and_checked() {
        let auth = authenticator(&[]);
        let caller = caller_for(
            &auth,
            &[("offstage-conversation", " call-42 "), ("offstage-delivery", "SILENT")],
        )
        .await
        .unwrap();
        assert_eq!(caller.conversation.as_deref(), Some("call-42"));
        assert_eq!(caller.delivery, Some(DeliveryHint::Silent));
        assert!(caller.piggyback, "on unless the header says off");
        let quiet = caller_for(&auth, &[("offstage-piggyback", " OFF ")]).await.unwrap();
        assert!(!quiet.piggyback);
        let unclear = caller_for(&auth, &[("offstage-piggyback", "no")]).await;
        assert!(matches!(unclear, Err(ApiError::BadHeader(m)) if m.contains("on or off")));
        let loud = caller_for(&auth, &[("offstage-delivery", "loud")]).await;
        assert!(matches!(loud, Err(ApiError::BadHeader(m)) if m.contains("when_idle")));
        let long = "x".repeat(201);
        let long = caller_for(&auth, &[("offstage-conversation", &long)]).await;
        assert!(matches!(long, Err(ApiError::BadHeader(_))));
    }
}
