//! A manifest served as a tool: arguments checked against its parameters, then its backend run
//! inline (bounded by its timeout and concurrency) or as a job through the same machinery as
//! `generate_image` — placeholder, status, cancel, push, persistence and MCP tasks.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{BackendError, ExecContext, Manifest, SecretSource};
use crate::{
    config::EnvSecrets,
    jobs::{
        Job,
        runner::{JobFailure, JobHandler},
    },
    tools::{
        Mode, Services, Tool, ToolCall, ToolDefinition, ToolError, ToolOutput,
        job::{self, JobRequest},
    },
};

/// Results longer than this are cut in the spoken text (the full result is in the structured
/// content).
const MAX_TEXT_CHARS: usize = 1_000;

/// What every call of every manifest tool shares.
#[derive(Clone)]
pub struct Backends {
    /// Built with the guarded resolver: no redirect or DNS answer reaches a private address
    /// unless allowed.
    pub client: reqwest::Client,
    pub secrets: Arc<dyn SecretSource>,
    pub allow_private: bool,
    /// What commands inherit from the server's environment.
    pub command_env: Vec<(String, String)>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl Backends {
    fn context(&self) -> ExecContext {
        ExecContext {
            client: self.client.clone(),
            secrets: self.secrets.clone(),
            allow_private: self.allow_private,
            cancel: CancellationToken::new(),
            working_dir: None,
            command_env: self.command_env.clone(),
        }
    }
}

/// Secrets from the environment (through `config`, the one module that reads it).
#[derive(Debug, Clone, Default)]
pub struct EnvSecretSource(pub EnvSecrets);

impl SecretSource for EnvSecretSource {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name)
    }
}

#[derive(Debug)]
pub struct ManifestTool {
    manifest: Manifest,
    definition: ToolDefinition,
    services: Arc<Services>,
    backends: Backends,
    /// Inline calls running at once, when the manifest limits them (jobs use their lane).
    inline_slots: Option<Arc<Semaphore>>,
}

impl ManifestTool {
    pub fn new(manifest: Manifest, services: Arc<Services>, backends: Backends) -> ManifestTool {
        let definition = ManifestTool::definition_of(&manifest);
        let inline_slots = match manifest.mode() {
            Mode::Inline { .. } => manifest
                .concurrency()
                .map(|limit| Arc::new(Semaphore::new(usize::try_from(limit).unwrap_or(1).max(1)))),
            Mode::Job => None,
        };
        ManifestTool { manifest, definition, services, backends, inline_slots }
    }

    /// What models read of `manifest`, and the profiles it asks for.
    pub fn definition_of(manifest: &Manifest) -> ToolDefinition {
        ToolDefinition {
            asks_for: manifest.profiles().into(),
            ..ToolDefinition::from_source(
                manifest.name(),
                manifest.description(),
                manifest.source_schema(),
                manifest.annotations(),
                manifest.mode(),
            )
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The failure line: the manifest's `say.failed`, else the backend's own sentence.
    fn failure_line(&self, args: &Map<String, Value>, error: &BackendError) -> String {
        match self.manifest.say_failed(args, &error.message) {
            Ok(Some(line)) => line,
            Ok(None) => error.message.clone(),
            Err(template) => {
                tracing::warn!(tool = self.manifest.name(), %template, "say.failed did not render");
                error.message.clone()
            }
        }
    }

    /// The success line: `say.finished`, else the result itself, shortened.
    fn finished_line(&self, args: &Map<String, Value>, result: &Value) -> Option<String> {
        match self.manifest.say_finished(args, result) {
            Ok(line) => line,
            Err(template) => {
                tracing::warn!(tool = self.manifest.name(), %template, "say.finished did not render");
                None
            }
        }
    }

    async fn call_inline(
        &self,
        args: Map<String, Value>,
        within: Duration,
    ) -> Result<ToolOutput, ToolError> {
        let name = self.manifest.name();
        let timeout = || ToolError::Timeout { tool: name.to_owned(), after: within };
        let _slot = match &self.inline_slots {
            // Waiting for a slot counts against the same bound the caller was promised.
            Some(slots) => Some(
                tokio::time::timeout(within, slots.clone().acquire_owned())
                    .await
                    .map_err(|_| timeout())?
                    .map_err(|_| ToolError::Internal("slots closed".to_owned()))?,
            ),
            None => None,
        };
        let context = self.backends.context();
        // The backend keeps its own deadline; this guard only catches one that does not.
        let ran = tokio::time::timeout(
            within + Duration::from_secs(1),
            self.manifest.execute(&args, &context),
        )
        .await
        .map_err(|_| timeout())?;
        match ran {
            Ok(result) => {
                let text = self.finished_line(&args, &result).unwrap_or_else(|| shorten(&result));
                Ok(ToolOutput { text, structured: json!({ "result": result }), job: None })
            }
            Err(error) if error.code == "timeout" => Err(timeout()),
            Err(error) => Err(ToolError::Failed {
                code: error.code.to_owned(),
                message: self.failure_line(&args, &error),
                retryable: error.retryable,
                retry_after: error.retry_after,
            }),
        }
    }
}

/// A result as text a model can read, cut at a bound.
fn shorten(result: &Value) -> String {
    let text = match result {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.chars().count() <= MAX_TEXT_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_TEXT_CHARS).collect();
    format!("{cut}\u{2026}")
}

#[async_trait]
impl Tool for ManifestTool {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args =
            self.manifest.check_arguments(&call.arguments).map_err(ToolError::InvalidArguments)?;
        match self.manifest.mode() {
            Mode::Inline { within } => self.call_inline(args, within).await,
            Mode::Job => {
                let started = match self.manifest.say_started(&args) {
                    Ok(Some(line)) => line,
                    Ok(None) => "Working on it".to_owned(),
                    Err(template) => {
                        tracing::warn!(tool = self.manifest.name(), %template, "say.started did not render");
                        "Working on it".to_owned()
                    }
                };
                let request = JobRequest {
                    tool: self.manifest.name(),
                    produces: self.definition.produces,
                    input: Value::Object(args.clone()),
                    same_call: Value::Object(args),
                    caller: call.caller,
                    started,
                };
                job::start(&self.services, request).await
            }
        }
    }

    fn handler(self: Arc<Self>) -> Option<Arc<dyn JobHandler>> {
        matches!(self.manifest.mode(), Mode::Job).then_some(self as Arc<dyn JobHandler>)
    }
}

#[async_trait]
impl JobHandler for ManifestTool {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let args = match &job.input {
            Value::Object(args) => args.clone(),
            _ => Map::new(),
        };
        // Dropping this future (cancel, shutdown, timeout) drops the request or kills the
        // program: commands are spawned with kill-on-drop.
        match self.manifest.execute(&args, &self.backends.context()).await {
            Ok(result) => {
                let say = self.finished_line(&args, &result);
                Ok(job::finished(result, say))
            }
            Err(error) => Err(JobFailure {
                detail: None,
                code: error.code.to_owned(),
                message: self.failure_line(&args, &error),
                // The backend already retried as the manifest allows; retrying the whole job
                // would repeat calls the manifest did not declare safe to repeat.
                retryable: false,
                retry_after: None,
            }),
        }
    }

    fn typical_duration(&self) -> Duration {
        (self.manifest.timeout() / 4).clamp(Duration::from_millis(500), Duration::from_secs(30))
    }

    fn concurrency(&self) -> Option<usize> {
        self.manifest.concurrency().and_then(|limit| usize::try_from(limit).ok())
    }

    fn timeout(&self) -> Option<Duration> {
        // The backend stops itself at the manifest's timeout; the lane's bound is a backstop.
        Some(self.manifest.timeout() + Duration::from_secs(5))
    }
}
