//! Tools: what a model can call. The framework lives here (the [`Tool`] trait, typed Rust
//! tools, the job machinery, job views, the registry); the built-in tools are in `builtin/`
//! (one file each, one list), manifest tools in `manifest/`, and what a model is shown of them
//! (schemas, tokens, budgets, export) in `listing/`.
//!
//! Tools speak in domain terms ([`ToolOutput`], [`ToolError`]); the MCP layer translates.
//! They never import `axum` or `rmcp`.

pub mod builtin;
pub mod image_job;
pub mod image_record;
pub mod job;
pub mod listing;
pub mod manifest;
pub mod registry;
mod services;
pub mod typed;
pub mod view;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use sha2::Digest;

use crate::{
    config::DeliveryHint,
    jobs::{Job, JobOutput},
};
use listing::schema;
pub use registry::{Catalog, Registry};
pub use services::Services;
pub use view::{JobView, Links};

/// Hints clients use to decide about approval and filtering; set truthfully per tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Annotations {
    /// A tool that makes something new each call (a picture…) and destroys nothing.
    pub fn creates(open_world: bool) -> Annotations {
        Annotations { read_only: false, destructive: false, idempotent: false, open_world }
    }
}

/// How a tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers while the caller waits, within this bound or not at all.
    Inline { within: Duration },
    /// Answers at once with a job handle; the work runs in the background and is pushed later.
    Job,
}

/// How a tool presents itself in `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: Arc<str>,
    /// Written for voice models: when to use it, and that results come later.
    pub description: Arc<str>,
    /// The compact schema models see (see [`schema::compile`]).
    pub input_schema: Arc<Map<String, Value>>,
    /// The schema as written (schemars output, or built from a manifest), before compaction;
    /// kept so `tools check` can show what compaction saved.
    pub source_schema: Arc<Map<String, Value>>,
    pub annotations: Annotations,
    pub mode: Mode,
    /// What its jobs produce (job-mode tools); recorded with every job it starts, so views
    /// read the job instead of knowing tool names.
    pub produces: JobOutput,
    /// The profiles its manifest asks to be served in when the operator does not list them
    /// (see [`listing::budget`]); empty for built-ins and manifests that ask for none.
    pub asks_for: Arc<[String]>,
}

impl ToolDefinition {
    /// A definition whose input is the Rust type `T`.
    pub fn typed<T: schemars::JsonSchema>(
        name: &str,
        description: &str,
        annotations: Annotations,
        mode: Mode,
    ) -> ToolDefinition {
        ToolDefinition::from_source(name, description, schema::source::<T>(), annotations, mode)
    }

    /// A definition from a source schema, compiled to its compact form.
    pub fn from_source(
        name: &str,
        description: &str,
        source: Map<String, Value>,
        annotations: Annotations,
        mode: Mode,
    ) -> ToolDefinition {
        ToolDefinition {
            name: name.into(),
            description: description.into(),
            input_schema: Arc::new(schema::compile(&source)),
            source_schema: Arc::new(source),
            annotations,
            mode,
            produces: JobOutput::Json,
            asks_for: Arc::new([]),
        }
    }
}

/// The party behind a call: who (jobs belong to exactly one owner) and, when the app said,
/// which conversation and how it wants results delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: String,
    /// The conversation (or MCP session) this call belongs to.
    pub conversation: Option<String>,
    /// The conversation's delivery override, from its request header.
    pub delivery: Option<DeliveryHint>,
    /// The realtime model's function call id for this call, when the app passed one.
    pub call_id: Option<String>,
    /// Whether finished jobs lead this caller's tool results; off when its host app delivers
    /// them itself (the piggy-back header).
    pub piggyback: bool,
    /// True when the conversation is one of this process's own sessions, so that every job in
    /// it is created and run here and what the process remembers of it is the whole story
    /// ([`crate::jobs::endings`]). False for a conversation an app names.
    pub local_conversation: bool,
}

impl Caller {
    /// The caller when no tokens are configured (and on stdio): one shared owner.
    pub fn local() -> Caller {
        Caller::owned_by("local".to_owned())
    }

    /// The caller holding a bearer token: owners are named by a digest, never the secret.
    pub fn for_token(token: &str) -> Caller {
        Caller::owned_by(owner_of_digest(&sha2::Sha256::digest(token.as_bytes()).into()))
    }

    /// The caller an OAuth access token speaks for: its issuer's subject, by digest.
    pub fn for_subject(issuer: &str, subject: &str) -> Caller {
        let digest = sha2::Sha256::digest(format!("{issuer}\n{subject}").as_bytes()).into();
        let hex = owner_of_digest(&digest);
        Caller::owned_by(hex.replacen("token:", "oauth:", 1))
    }

    fn owned_by(owner: String) -> Caller {
        Caller {
            owner,
            conversation: None,
            delivery: None,
            call_id: None,
            piggyback: true,
            local_conversation: false,
        }
    }
}

/// The owner id for a token's SHA-256 digest.
pub fn owner_of_digest(digest: &[u8; 32]) -> String {
    let hex: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("token:{hex}")
}

/// Where a tool may report progress while a call is open (MCP progress notifications).
#[async_trait]
pub trait ProgressSink: Send + Sync {
    async fn progress(&self, progress: f64, total: Option<f64>, message: String);
}

/// One invocation.
pub struct ToolCall {
    pub caller: Caller,
    pub arguments: Map<String, Value>,
    /// Present when the client asked for progress.
    pub progress: Option<Arc<dyn ProgressSink>>,
}

impl fmt::Debug for ToolCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCall")
            .field("caller", &self.caller)
            .field("arguments", &self.arguments)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// A successful result: one speakable line and the same facts as JSON.
///
/// There is deliberately nothing else: openai-agents and LiveKit hand every other content block
/// to the model as a JSON blob (a `resource_link` cost 90 tokens there) and pipecat drops it, so
/// the line carries what a model needs (the job id included). MCP clients that want the job as
/// a resource build its URI from the advertised template `offstage://jobs/{job_id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub structured: Value,
    /// The background job this call started (or found running), for MCP task results.
    pub job: Option<Job>,
}

/// A call that did not work, phrased so the model knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    InvalidArguments(String),
    #[error("There is no job {0}. Use the job_id exactly as the tool returned it.")]
    JobNotFound(String),
    #[error(
        "I'm busy with other requests right now. Tell the user and try again in about {} seconds.",
        retry_after.as_secs()
    )]
    Busy { retry_after: Duration },
    #[error(
        "{tool} took longer than {} s and was stopped. Tell the user and try again, perhaps \
         asking for less.",
        after.as_millis().div_ceil(1000)
    )]
    Timeout { tool: String, after: Duration },
    /// The tool ran and failed; `message` is its own sentence (a manifest's `say.failed`).
    #[error("{message}")]
    Failed { code: String, message: String, retryable: bool, retry_after: Option<Duration> },
    #[error("Something went wrong on our side; please try again in a moment.")]
    Internal(String),
}

impl ToolError {
    pub fn code(&self) -> &str {
        match self {
            ToolError::Failed { code, .. } => code,
            ToolError::InvalidArguments(_) => "invalid_arguments",
            ToolError::JobNotFound(_) => "job_not_found",
            ToolError::Busy { .. } => "busy",
            ToolError::Timeout { .. } => "timeout",
            ToolError::Internal(_) => "internal",
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            ToolError::Busy { .. } | ToolError::Timeout { .. } | ToolError::Internal(_) => true,
            ToolError::Failed { retryable, .. } => *retryable,
            ToolError::InvalidArguments(_) | ToolError::JobNotFound(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ToolError::Busy { retry_after } => Some(*retry_after),
            ToolError::Failed { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What the MCP layer calls. Rust tools implement [`typed::InlineTool`] or
/// [`typed::JobTool`] instead; manifest tools implement this directly.
#[async_trait]
pub trait Tool: Send + Sync + fmt::Debug {
    fn definition(&self) -> &ToolDefinition;
    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError>;

    /// The work behind a job-mode tool, registered with the runner under the tool's name.
    fn handler(self: Arc<Self>) -> Option<Arc<dyn crate::jobs::runner::JobHandler>> {
        None
    }
}

/// Deserializes arguments, naming the field and what was wrong in terms a model can act on.
pub(crate) fn parse_arguments<T: DeserializeOwned>(
    tool: &str,
    arguments: Map<String, Value>,
) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(Value::Object(arguments)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        let inner = inner.split(" at line ").next().unwrap_or(&inner);
        let message = if path == "." {
            format!("Invalid arguments for {tool}: {inner}.")
        } else {
            format!("Invalid arguments for {tool}: `{path}`: {inner}.")
        };
        ToolError::InvalidArguments(message)
    })
}
