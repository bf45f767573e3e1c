//! Tools: what a model can call. One file per tool; [`ToolRegistry::builtin`] lists them.
//!
//! Tools speak in domain terms ([`ToolOutput`], [`ToolError`]); the MCP layer translates.
//! They never import `axum` or `rmcp`.

pub mod cancel_job;
pub mod generate_image;
pub mod job_status;
pub mod schema;
pub mod view;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{
    images::files::ImageFiles,
    jobs::{Job, JobId, runner::JobRunner},
    providers::ImageProvider,
};
pub use view::{JobView, Links};

/// Hints clients use to decide about approval and filtering; set truthfully per tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// How a tool presents itself in `tools/list`.
#[derive(Debug, Clone)]
pub struct ToolDefinition {
    pub name: &'static str,
    /// Written for voice models: when to use it, and that results come later.
    pub description: &'static str,
    /// A flat JSON Schema object (see `schema::compact`).
    pub input_schema: Arc<Map<String, Value>>,
    pub annotations: Annotations,
}

/// The authenticated party behind a call. Jobs belong to exactly one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: String,
}

impl Caller {
    /// The caller when no tokens are configured (and on stdio): one shared owner.
    pub fn local() -> Caller {
        Caller { owner: "local".to_owned() }
    }
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

/// A successful result: one speakable line, the same facts as JSON, and resource links.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub structured: Value,
    pub links: Vec<ResourceLink>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceLink {
    pub uri: String,
    pub name: String,
    pub mime_type: &'static str,
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
    #[error("Something went wrong on our side; please try again in a moment.")]
    Internal(String),
}

impl ToolError {
    pub fn code(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments(_) => "invalid_arguments",
            ToolError::JobNotFound(_) => "job_not_found",
            ToolError::Busy { .. } => "busy",
            ToolError::Internal(_) => "internal",
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self, ToolError::Busy { .. } | ToolError::Internal(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ToolError::Busy { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[async_trait]
pub trait Tool: Send + Sync + fmt::Debug {
    fn definition(&self) -> &ToolDefinition;
    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError>;
}

/// What tools share: the runner, URL building and the image backend.
#[derive(Debug)]
pub struct Services {
    pub runner: JobRunner,
    pub links: Links,
    pub provider: Arc<dyn ImageProvider>,
    pub images: ImageFiles,
}

impl Services {
    /// Reads a job for `caller`. Someone else's job looks exactly like a missing one.
    pub async fn job_for(&self, caller: &Caller, job_id: &str) -> Result<Job, ToolError> {
        let not_found = || ToolError::JobNotFound(job_id.trim().to_owned());
        let id = JobId::parse(job_id).ok_or_else(not_found)?;
        let job = self.runner.get(&id).await.map_err(|e| ToolError::Internal(e.to_string()))?;
        job.filter(|job| job.owner == caller.owner).ok_or_else(not_found)
    }
}

/// The tools this server offers, in name order (stable `tools/list`).
#[derive(Debug, Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
}

impl ToolRegistry {
    pub fn builtin(services: &Arc<Services>) -> ToolRegistry {
        let tools: [Arc<dyn Tool>; 3] = [
            Arc::new(generate_image::GenerateImage::new(services.clone())),
            Arc::new(job_status::JobStatusTool::new(services.clone())),
            Arc::new(cancel_job::CancelJob::new(services.clone())),
        ];
        ToolRegistry {
            tools: tools.into_iter().map(|tool| (tool.definition().name, tool)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.tools.keys().copied().collect()
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
