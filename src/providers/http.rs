//! HTTP as every remote provider speaks it: one [`Api`] holding the shared client, the secret
//! header, the per-request timeout, the body cap and where answers are parsed, and the helpers
//! that read capped bodies, map transport failures and read `Retry-After`.

use std::time::{Duration, SystemTime};

use reqwest::{RequestBuilder, header::HeaderMap};
use url::Url;

use super::{Parsing, ProviderError};
use crate::settings::Secret;

/// Largest response body we read. A 1536x1024 PNG is a few MiB and base64 adds a third, so
/// anything near this size is a misbehaving server, and reading it all would only waste memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Error bodies are a few hundred bytes; a larger one is read no further and ignored.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Provider messages end up in job records and spoken summaries, so they stay short.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// A key as the header it travels in and as the secret scrubbed from messages. Both halves
/// print redacted, so a derived `Debug` of a provider cannot leak it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub header: http::HeaderName,
    pub value: http::HeaderValue,
    pub secret: Secret,
}

impl Credential {
    /// The message with the key taken out and cut to [`MAX_MESSAGE_CHARS`].
    pub fn scrub(&self, text: &str) -> String {
        truncate(&self.secret.scrub(text))
    }
}

/// One remote service's connection settings: what every request to it carries.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// Sent with every request; `None` for services without keys (a local ComfyUI).
    pub credential: Option<Credential>,
    /// One HTTP request's limit; the job's own timeout bounds all attempts.
    pub timeout: Duration,
    /// Largest answer read; tests lower it to reach the cap without 64 MiB bodies.
    pub body_limit: usize,
    /// Where answers are parsed (off the async workers).
    pub parsing: Parsing,
}

impl Api {
    pub fn new(http: reqwest::Client, credential: Option<Credential>, timeout: Duration) -> Api {
        Api {
            http,
            credential,
            timeout,
            body_limit: MAX_RESPONSE_BYTES,
            parsing: Parsing::default(),
        }
    }

    /// The request with the credential and the timeout on it.
    pub fn prepare(&self, request: RequestBuilder) -> RequestBuilder {
        let request = request.timeout(self.timeout);
        match &self.credential {
            Some(credential) => request.header(credential.header.clone(), credential.value.clone()),
            None => request,
        }
    }

    /// Sends the request prepared; a failure below HTTP becomes its [`ProviderError`]. Any
    /// status comes back: what a status means is each provider's own business.
    pub async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ProviderError> {
        self.prepare(request).send().await.map_err(transport_error)
    }

    /// The whole body, or an error when it exceeds [`Api::body_limit`].
    pub async fn read_body(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<Vec<u8>, ProviderError> {
        read_capped(response, self.body_limit).await?.ok_or_else(|| {
            ProviderError::InvalidResponse(format!(
                "response body exceeds {} bytes",
                self.body_limit
            ))
        })
    }

    /// An error body, read no further than [`MAX_ERROR_BODY_BYTES`] (empty when larger).
    pub async fn read_error(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<Vec<u8>, ProviderError> {
        Ok(read_capped(response, MAX_ERROR_BODY_BYTES).await?.unwrap_or_default())
    }

    /// A message from the service, safe to keep: the key scrubbed, the length cut.
    pub fn scrub(&self, text: &str) -> String {
        match &self.credential {
            Some(credential) => credential.scrub(text),
            None => truncate(text),
        }
    }
}

/// Reads the whole body unless it exceeds `limit`, then `None`. Content-Length only lets us
/// refuse early: chunked bodies have none, and a server may send more than it announced.
pub async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, ProviderError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Failures below HTTP. Messages name only the innermost cause (for example "Connection
/// refused"): reqwest's own message carries the URL, which we keep out of job records.
pub fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::Timeout;
    }
    let mut cause: &(dyn std::error::Error + 'static) = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = truncate(&cause.to_string());
    if error.is_builder() {
        // Building fails only on our side (for example a key with a newline); retrying won't help.
        ProviderError::BadRequest(format!("could not build the request: {cause}"))
    } else if error.is_connect() {
        ProviderError::Connect(format!("could not connect: {cause}"))
    } else {
        // The connection broke after it was made; as transient as a failed connect.
        ProviderError::Connect(format!("connection failed: {cause}"))
    }
}

/// The wait the server asked for: `retry-after-ms` (sent by OpenAI and read first by
/// openai-python's `_parse_retry_after_header`), else `Retry-After` in seconds or as an
/// HTTP-date (RFC 9110 §10.2.3). A date in the past means "now".
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let millis = header("retry-after-ms").and_then(|value| value.trim().parse::<f64>().ok());
    if let Some(wait) = millis.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()) {
        return Some(wait);
    }
    let value = header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// `path` under a provider's configured base URL, or `None` when the base is not a plain
/// http(s) URL. Appending to the string keeps a path prefix a proxy lives under.
pub fn endpoint_url(base_url: &str, path: &str) -> Option<Url> {
    let base = Url::parse(base_url.trim()).ok()?;
    let usable = matches!(base.scheme(), "http" | "https")
        && base.has_host()
        && base.query().is_none()
        && base.fragment().is_none();
    let url = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    usable.then(|| Url::parse(&url).ok()).flatten()
}

/// `text` cut to [`MAX_MESSAGE_CHARS`] on a character boundary, with an ellipsis.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An [`Api`] holding `secret` as a bearer token, for tests of error mapping and scrubbing.
#[cfg(test)]
pub(crate) fn test_api(secret: &str) -> Api {
    let secret = Secret::new(secret);
    let value = secret.header(Some("Bearer")).expect("a header-safe test secret");
    let credential = Credential { header: http::header::AUTHORIZATION, value, secret };
    Api::new(reqwest::Client::new(), Some(credential), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("test header value"));
        }
        map
    }

    #[test]
    fn retry_after_reads_whole_and_fractional_seconds() {
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", " 1.5 ")])),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let map = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::from_millis(250)));
    }

    #[test]
    fn unusable_retry_after_ms_falls_back_to_retry_after() {
        let map = headers(&[("retry-after-ms", "soon"), ("retry-after", "3")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_reads_a_future_http_date() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&headers(&[("retry-after", &date)])).expect("a wait");
        // HTTP-dates have whole seconds, and a moment passes between formatting and parsing.
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let map = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(parse_retry_after(&map), Some(Duration::ZERO));
    }

    #[test]
    fn missing_negative_or_garbled_retry_after_is_none() {
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-5")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "NaN")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "tomorrow-ish")])), None);
    }

    #[test]
    fn endpoint_tolerates_trailing_slash_and_keeps_path_prefix() {
        let url = |base: &str| endpoint_url(base, "v1/images/generations").map(String::from);
        let expected = Some("http://127.0.0.1:9/v1/images/generations".to_owned());
        assert_eq!(url("http://127.0.0.1:9"), expected);
        assert_eq!(url("http://127.0.0.1:9/"), expected);
        assert_eq!(
            url("https://proxy.test/openai/").as_deref(),
            Some("https://proxy.test/openai/v1/images/generations")
        );
        assert_eq!(url("ftp://example.com"), None);
        assert_eq!(url("api.openai.com"), None);
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        assert_eq!(truncate(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn a_credential_is_scrubbed_and_never_printed() {
        let secret = Secret::new("sk-abc");
        let credential = Credential {
            header: http::header::AUTHORIZATION,
            value: secret.header(Some("Bearer")).unwrap(),
            secret,
        };
        assert!(!format!("{credential:?}").contains("sk-abc"));
        assert_eq!(credential.scrub("key sk-abc refused"), "key <redacted> refused");
    }
}
