//! The contract both backends share: what a call needs from its caller ([`ExecContext`]), how a
//! failure is described ([`BackendError`]), the retry loop within one deadline, and how raw
//! output becomes a result ([`pick_result`]).

use std::{fmt, future::Future, path::PathBuf, sync::Arc, time::Duration};

use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Manifest, ResultSpec};
use crate::tools::manifest::template::{SecretSource, TemplateError};

/// What the backends need from their caller for one call.
#[derive(Clone)]
pub struct ExecContext {
    /// Built by the caller with [`crate::netguard::GuardedResolver`], so a redirect or a second
    /// DNS answer cannot reach a private address either.
    pub client: reqwest::Client,
    pub secrets: Arc<dyn SecretSource>,
    /// Whether URLs may resolve to private, loopback or link-local addresses.
    pub allow_private: bool,
    /// Cancelling aborts the request or kills the program.
    pub cancel: CancellationToken,
    /// Where commands run; default: [`Manifest::root_dir`], the repository root for
    /// `tools/<name>.toml`.
    pub working_dir: Option<PathBuf>,
    /// The environment every command gets besides its declared secrets; the config layer fills
    /// it with [`INHERITED_ENV`] from the server's own environment.
    pub command_env: Vec<(String, String)>,
}

/// The variables commands inherit from the server (see [`ExecContext::command_env`]).
pub const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

impl fmt::Debug for ExecContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecContext")
            .field("allow_private", &self.allow_private)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("working_dir", &self.working_dir)
            .field(
                "command_env",
                &self.command_env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ExecContext {
    /// A context with private addresses refused, a fresh cancellation token, the default
    /// working directory and an empty command environment.
    pub fn new(client: reqwest::Client, secrets: Arc<dyn SecretSource>) -> ExecContext {
        ExecContext {
            client,
            secrets,
            allow_private: false,
            cancel: CancellationToken::new(),
            working_dir: None,
            command_env: Vec::new(),
        }
    }
}

/// A failed call, after the manifest's retries were spent. `message` is a short sentence a voice
/// model can say: no secrets, no raw bodies beyond a short excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// `timeout`, `cancelled`, `connect`, `blocked_address`, `http_status`, `too_large`,
    /// `bad_response`, `bad_request`, `missing_secret`, `spawn` or `exit_status`.
    pub code: &'static str,
    pub message: String,
    /// The failure was of a transient kind (another attempt later might work). The executor
    /// has already retried as the manifest allows.
    pub retryable: bool,
    /// The server's Retry-After, when it sent one.
    pub retry_after: Option<Duration>,
}

impl BackendError {
    pub fn new(code: &'static str, message: impl Into<String>) -> BackendError {
        BackendError { code, message: message.into(), retryable: false, retry_after: None }
    }

    pub fn retryable(code: &'static str, message: impl Into<String>) -> BackendError {
        BackendError { retryable: true, ..BackendError::new(code, message) }
    }

    pub(crate) fn cancelled() -> BackendError {
        BackendError::new("cancelled", "The call was cancelled.")
    }

    pub(crate) fn from_template(error: TemplateError) -> BackendError {
        match error {
            TemplateError::MissingSecret { .. } => {
                BackendError::new("missing_secret", format!("{error}."))
            }
            other => BackendError::new(
                "bad_request",
                format!("The request could not be built: {other}."),
            ),
        }
    }
}

impl Manifest {
    /// Calls `attempt` until it succeeds, fails for good, the retries are spent or the next
    /// pause would pass `deadline`. Delays: the server's Retry-After, else exponential backoff
    /// with jitter; a delay that would overrun the deadline ends the call instead.
    pub(crate) async fn with_retries<F, Fut>(
        &self,
        deadline: Instant,
        cancel: &CancellationToken,
        mut attempt: F,
    ) -> Result<Value, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Value, BackendError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.retryable || attempts > self.retries() {
                return Err(error);
            }
            let delay = error.retry_after.unwrap_or_else(|| backoff(attempts));
            if Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::info!(
                tool = self.name(),
                code = error.code,
                ?delay,
                "attempt failed; retrying"
            );
            tokio::select! {
                () = cancel.cancelled() => return Err(BackendError::cancelled()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// 200 ms, 400 ms, 800 ms … up to 3.2 s, each ±20%.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempts.saturating_sub(1).min(4));
    base.mul_f64(rand::random_range(0.8..1.2))
}

/// The result a backend returns from raw output: JSON narrowed by `result`, or the text itself
/// when the output is not JSON and no pointer was asked for. `source` starts the error
/// messages ("The answer from api.example.com").
pub fn pick_result(
    output: &[u8],
    result: Option<&ResultSpec>,
    source: &str,
) -> Result<Value, BackendError> {
    let parsed = serde_json::from_slice::<Value>(output);
    let json = match (parsed, result) {
        (Ok(json), _) => json,
        (Err(_), None) => {
            let text = String::from_utf8_lossy(output);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            return Ok(if output.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_owned())
            });
        }
        (Err(_), Some(_)) => {
            return Err(BackendError::new("bad_response", format!("{source} is not JSON.")));
        }
    };
    let missing =
        |pointer: &str| BackendError::new("bad_response", format!("{source} has no {pointer}."));
    match result {
        None => Ok(json),
        Some(ResultSpec::Pointer(pointer)) => {
            json.pointer(pointer).cloned().ok_or_else(|| missing(pointer))
        }
        Some(ResultSpec::Fields(fields)) => fields
            .0
            .iter()
            .map(|(name, pointer)| {
                json.pointer(pointer)
                    .cloned()
                    .map(|value| (name.clone(), value))
                    .ok_or_else(|| missing(pointer))
            })
            .collect::<Result<Map<String, Value>, _>>()
            .map(Value::Object),
    }
}
