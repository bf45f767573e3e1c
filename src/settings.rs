//! What every room's settings share: the [`Secret`] type for keys and tokens, [`Invalid`] for
//! a setting that cannot be used, and the check that a setting is an absolute http(s) URL. A leaf: it imports nothing of ours, so that
//! providers, images and jobs can own their settings without importing `config`.

use std::{fmt, ops::Deref, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A key, token or password from configuration. Its `Debug` is redacted, it has no
/// `Serialize` (settings holding one skip it), and the only way to the text is
/// [`Secret::expose`], so that no `{:?}` and no serialised config can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The text, trimmed: what is sent, and what is scrubbed from messages.
    pub fn expose(&self) -> &str {
        self.0.trim()
    }

    /// A secret set blank (`api_key = ""`) is as good as none.
    pub fn is_blank(&self) -> bool {
        self.expose().is_empty()
    }

    /// `text` with every occurrence of the secret replaced, for messages a server may have
    /// echoed it into.
    pub fn scrub(&self, text: &str) -> String {
        if self.is_blank() { text.to_owned() } else { text.replace(self.expose(), "<redacted>") }
    }

    /// The secret as an HTTP header value (`{scheme} {secret}` when a scheme is given), marked
    /// sensitive so it stays out of HTTP/2 compression tables and reqwest's debug output.
    /// `None` when it has characters a header cannot carry.
    pub fn header(&self, scheme: Option<&str>) -> Option<http::HeaderValue> {
        let text = match scheme {
            Some(scheme) => format!("{scheme} {}", self.expose()),
            None => self.expose().to_owned(),
        };
        let mut value = http::HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret::new(text)
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// A duration setting, written as people write one (`3s`, `500ms`, `2h 30m`: humantime's
/// format) in TOML, environment variables, the settings' schema and so docs/configuration.md.
/// Derefs to the [`Duration`] it holds and compares with one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(seconds: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(seconds))
    }

    pub const fn from_millis(millis: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(millis))
    }
}

impl Deref for HumanDuration {
    type Target = Duration;

    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> HumanDuration {
        HumanDuration(duration)
    }
}

impl PartialEq<Duration> for HumanDuration {
    fn eq(&self, other: &Duration) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<Duration> for HumanDuration {
    fn partial_cmp(&self, other: &Duration) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
        humantime_serde::deserialize(deserializer).map(HumanDuration)
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "duration" })
    }
}

/// A setting that cannot be used: which one (its full name, `images.quality`) and what to
/// change. Rooms that own their settings check them with it; configuration passes it on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// `value` as an absolute http(s) URL with a host, or `None`.
pub fn http_url(value: &str) -> Option<Url> {
    Url::parse(value).ok().filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_itself() {
        let secret = Secret::new(" sk-live-123 ");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), "sk-live-123");
        assert_eq!(secret.scrub("bad key sk-live-123!"), "bad key <redacted>!");
        assert!(Secret::new("  ").is_blank());
        let header = secret.header(Some("Bearer")).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Bearer sk-live-123");
        assert!(Secret::new("line\nbreak").header(None).is_none());
        let parsed: Secret = serde_json::from_str("\"k\"").unwrap();
        assert_eq!(parsed.expose(), "k");
    }
}
