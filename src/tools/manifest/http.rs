//! The `[http]` backend: renders one request from a manifest's templates, vets the target with
//! [`crate::netguard`], sends it within the manifest's timeout (retrying transient failures of
//! idempotent calls), reads at most `max_response_bytes` and picks the result out of the JSON.

use std::time::Duration;

use reqwest::{
    Method, StatusCode,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::{
    format::{BackendError, ExecContext, HttpSpec, Manifest, pick_result},
    template::Bindings,
};
use crate::netguard::{self, GuardError};

/// How much of an error response is read to find a message in it.
const ERROR_BODY_BYTES: usize = 4096;
/// Where common APIs put the human-readable part of an error body.
const DETAIL_POINTERS: [&str; 8] = [
    "/error/detail",
    "/error/message",
    "/detail",
    "/message",
    "/reason",
    "/error_description",
    "/error",
    "/title",
];
/// How much of a server's error message reaches the model.
const ERROR_DETAIL_CHARS: usize = 200;

/// Runs `spec` with normalised arguments. See [`Manifest::execute`].
pub async fn execute(
    manifest: &Manifest,
    spec: &HttpSpec,
    args: &Map<String, Value>,
    ctx: &ExecContext,
) -> Result<Value, BackendError> {
    let deadline = Instant::now() + manifest.timeout();
    let templates = manifest.templates();
    let (bindings, _) = templates
        .request_bindings(args, ctx.secrets.as_ref(), &[])
        .map_err(BackendError::from_template)?;
    let request = Prepared::render(manifest, spec, &bindings)?;
    let host = request.url.host_str().unwrap_or("the service").to_owned();
    let call = async {
        vet(&request.url, &host, ctx.allow_private).await?;
        manifest
            .with_retries(deadline, &ctx.cancel, || request.send(ctx, spec, &host, &bindings))
            .await
    };
    // One deadline for the whole call: DNS, every attempt and every pause between attempts.
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => Err(BackendError::cancelled()),
        outcome = tokio::time::timeout_at(deadline, call) => {
            outcome.unwrap_or_else(|_| Err(timed_out(manifest, &host)))
        }
    }
}

/// Refuses targets that resolve to private addresses (unless allowed), before anything is sent.
async fn vet(url: &Url, host: &str, allow_private: bool) -> Result<(), BackendError> {
    match netguard::check_url(url, allow_private).await {
        Ok(()) => Ok(()),
        Err(GuardError::Private { .. }) => Err(BackendError::new(
            "blocked_address",
            format!("I may not call {host}: it is a private or local address."),
        )),
        Err(GuardError::Unresolvable { .. }) => {
            Err(BackendError::retryable("connect", format!("Could not find {host}.")))
        }
        Err(GuardError::NoHost(_)) => {
            Err(BackendError::new("bad_request", "The request URL has no host."))
        }
    }
}

/// A request rendered once and sent by every attempt.
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Prepared {
    fn render(
        manifest: &Manifest,
        spec: &HttpSpec,
        bindings: &Bindings,
    ) -> Result<Prepared, BackendError> {
        let templates = manifest.templates();
        let rendered =
            templates.render("http.url", bindings).map_err(BackendError::from_template)?;
        let mut url = Url::parse(rendered.trim()).map_err(|error| {
            BackendError::new("bad_request", format!("The request URL is not valid: {error}."))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BackendError::new("bad_request", "The request URL must be http or https."));
        }
        for (key, written) in &spec.query {
            let value = templates
                .render_tree(&format!("http.query.{key}"), written, bindings)
                .map_err(BackendError::from_template)?;
            for text in query_texts(&value) {
                url.query_pairs_mut().append_pair(key, &text);
            }
        }
        let mut headers = HeaderMap::new();
        for name in &spec.headers {
            let value = templates
                .render_value(&format!("http.headers.{name}"), bindings)
                .map_err(BackendError::from_template)?;
            let text = match value {
                Value::Null => continue,
                Value::String(text) => text,
                other => other.to_string(),
            };
            // The check that keeps an argument from adding headers or splitting the request.
            if text.contains(['\r', '\n', '\0']) {
                return Err(BackendError::new(
                    "bad_request",
                    format!("Refused: the {name} header would contain a line break."),
                ));
            }
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                BackendError::new(
                    "bad_request",
                    format!("Refused: the {name} header has invalid characters."),
                )
            })?;
            if bindings.redact(&text) != text {
                value.set_sensitive(true);
            }
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BackendError::new("bad_request", format!("`{name}` is not a header name."))
            })?;
            headers.append(name, value);
        }
        let body = match &spec.body {
            Some(body) => Some(
                templates
                    .render_tree("http.body", body, bindings)
                    .map_err(BackendError::from_template)?,
            ),
            None => None,
        };
        let method = Method::from_bytes(spec.method.as_str().as_bytes())
            .expect("every HttpMethod is a standard method name");
        Ok(Prepared { method, url, headers, body })
    }

    /// One attempt: send, check the status, read the body within the limit, pick the result.
    async fn send(
        &self,
        ctx: &ExecContext,
        spec: &HttpSpec,
        host: &str,
        bindings: &Bindings,
    ) -> Result<Value, BackendError> {
        let mut builder =
            ctx.client.request(self.method.clone(), self.url.clone()).headers(self.headers.clone());
        if let Some(body) = &self.body {
            if !self.headers.contains_key(header::CONTENT_TYPE) {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
            }
            builder = builder.body(body.to_string());
        }
        let mut response =
            builder.send().await.map_err(|error| transport_error(&error, host, bindings))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(response, host, bindings).await);
        }
        if self.method == Method::HEAD {
            return Ok(Value::Null);
        }
        let limit = spec.max_response_bytes;
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(too_large(host, limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|error| transport_error(&error, host, bindings))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large(host, limit));
            }
            body.extend_from_slice(&chunk);
        }
        pick_result(&body, spec.result.as_ref(), &format!("The answer from {host}"))
    }
}

/// Query values as sent: `null` drops the entry, a list repeats the key.
fn query_texts(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().flat_map(query_texts).collect(),
        other => vec![other.to_string()],
    }
}

fn timed_out(manifest: &Manifest, host: &str) -> BackendError {
    BackendError::retryable(
        "timeout",
        format!("{host} did not answer within {}.", humantime::format_duration(manifest.timeout())),
    )
}

fn too_large(host: &str, limit: u64) -> BackendError {
    BackendError::new(
        "too_large",
        format!("The answer from {host} is larger than {} KiB.", limit.div_ceil(1024)),
    )
}

/// A failure before a status arrived. reqwest's own message names the URL, which may carry a
/// secret in its query, so it only reaches the debug log, redacted.
fn transport_error(error: &reqwest::Error, host: &str, bindings: &Bindings) -> BackendError {
    let detail = bindings.redact(&source_chain(error).join(": "));
    tracing::debug!(host, error = %detail, "request failed");
    if error.is_timeout() {
        BackendError::retryable("timeout", format!("{host} did not answer in time."))
    } else if error.is_connect() {
        BackendError::retryable("connect", format!("Could not connect to {host}."))
    } else if error.is_body() || error.is_decode() {
        BackendError::retryable("bad_response", format!("The answer from {host} broke off."))
    } else if error.is_redirect() {
        BackendError::new("bad_response", format!("{host} redirected too often."))
    } else {
        BackendError::retryable("connect", format!("The request to {host} failed."))
    }
}

/// A non-success status: retryable for 408, 429 and 5xx, with the server's message shortened.
async fn status_error(
    response: reqwest::Response,
    host: &str,
    bindings: &Bindings,
) -> BackendError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let detail = error_detail(response).await.map(|detail| bindings.redact(&detail));
    let reason = status.canonical_reason().map(|reason| format!(" {reason}")).unwrap_or_default();
    let message = match detail {
        Some(detail) => format!("{host} answered {}{reason}: {detail}", status.as_u16()),
        None => format!("{host} answered {}{reason}.", status.as_u16()),
    };
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    BackendError { code: "http_status", message, retryable, retry_after }
}

/// Retry-After as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// The message inside an error body (common JSON shapes, else the text), one line, shortened.
async fn error_detail(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    let text = match serde_json::from_slice::<Value>(&body) {
        Ok(json) => DETAIL_POINTERS
            .iter()
            .find_map(|pointer| json.pointer(pointer).and_then(Value::as_str).map(str::to_owned))?,
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    let mut short: String = text.chars().take(ERROR_DETAIL_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    } else if !short.ends_with(['.', '!', '?']) {
        short.push('.');
    }
    Some(short)
}

/// An error's causes, for logs.
fn source_chain(error: &dyn std::error::Error) -> Vec<String> {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    chain
}

#[cfg(test)]
#[path = "tests/http.rs"]
mod tests;
