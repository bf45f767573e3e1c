//! Tools written in Rust: typed input (serde + schemars) and one of two shapes. An
//! [`InlineTool`] answers while the caller waits, within the bound it declares; a [`JobTool`]
//! only checks its input and does its work in a job, and [`Background`] gives it the
//! placeholder, status, cancel, push, persistence and MCP tasks without a line of its own.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    Annotations, Caller, Mode, ProgressSink, Services, Tool, ToolCall, ToolDefinition, ToolError,
    ToolOutput,
    job::{self, JobRequest},
    parse_arguments,
};
use crate::jobs::{
    Job, JobId, JobOutput,
    runner::{JobFailure, JobHandler},
};

/// What an inline call gets besides its input.
#[derive(Clone)]
pub struct Context {
    pub caller: Caller,
    /// Present when the client asked for progress.
    pub progress: Option<Arc<dyn ProgressSink>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("caller", &self.caller).finish_non_exhaustive()
    }
}

/// A tool answered while the caller waits.
#[async_trait]
pub trait InlineTool: Send + Sync + fmt::Debug + 'static {
    type Input: DeserializeOwned + JsonSchema + Send;
    const NAME: &'static str;
    /// When to use it, for a voice model.
    const DESCRIPTION: &'static str;
    /// It answers within this, or the call fails with a timeout the model can act on.
    const WITHIN: Duration;

    fn annotations(&self) -> Annotations;

    /// The description models read; [`Self::DESCRIPTION`] unless it depends on configuration.
    fn description(&self) -> String {
        Self::DESCRIPTION.to_owned()
    }

    /// The bound it answers within; [`Self::WITHIN`] unless it depends on configuration.
    fn within(&self) -> Duration {
        Self::WITHIN
    }

    async fn call(&self, input: Self::Input, context: Context) -> Result<ToolOutput, ToolError>;
}

/// A tool whose work runs as a job: the call returns at once, the result is pushed later.
#[async_trait]
pub trait JobTool: Send + Sync + fmt::Debug + 'static {
    type Input: DeserializeOwned + JsonSchema + Send;
    /// What the job stores: the input checked and normalised. Read back when the job runs,
    /// even after a restart, so it must round-trip through JSON.
    type Stored: Serialize + DeserializeOwned + Send + Sync;
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    /// What its jobs produce; recorded with each job, so every view knows how to show it.
    const PRODUCES: JobOutput = JobOutput::Json;

    fn annotations(&self) -> Annotations;

    /// Checks the input; errors say what to change.
    fn prepare(&self, input: Self::Input) -> Result<Self::Stored, ToolError>;

    /// Checks that need the caller or the store, such as that a job the input names is the
    /// caller's own; runs after `prepare`, before the job exists. Nothing by default.
    async fn admit(
        &self,
        stored: Self::Stored,
        caller: &Caller,
    ) -> Result<Self::Stored, ToolError> {
        let _ = caller;
        Ok(stored)
    }

    /// What repeated calls are compared on; by default the stored input.
    fn same_call(&self, stored: &Self::Stored) -> Value {
        serde_json::to_value(stored).unwrap_or_default()
    }

    /// The first words of the reply, e.g. "Making the image now".
    fn started(&self, stored: &Self::Stored) -> String;

    /// One attempt. Dropping the future cancels it.
    async fn run(&self, stored: Self::Stored, job: &Job) -> Result<Value, JobFailure>;

    /// How long one attempt usually takes; seeds estimates.
    fn typical_duration(&self) -> Duration;

    /// Removes what an attempt left behind for a job nobody will read.
    async fn discard(&self, _id: &JobId) {}
}

/// Serves an [`InlineTool`].
#[derive(Debug)]
pub struct Inline<T> {
    tool: T,
    definition: ToolDefinition,
    within: Duration,
}

impl<T: InlineTool> Inline<T> {
    pub fn new(tool: T) -> Inline<T> {
        let within = tool.within();
        let description = tool.description();
        let mode = Mode::Inline { within };
        let definition =
            ToolDefinition::typed::<T::Input>(T::NAME, &description, tool.annotations(), mode);
        Inline { tool, definition, within }
    }
}

#[async_trait]
impl<T: InlineTool> Tool for Inline<T> {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let input = parse_arguments(T::NAME, call.arguments)?;
        let context = Context { caller: call.caller, progress: call.progress };
        tokio::time::timeout(self.within, self.tool.call(input, context))
            .await
            .map_err(|_| ToolError::Timeout { tool: T::NAME.to_owned(), after: self.within })?
    }
}

/// Serves a [`JobTool`]: as a [`Tool`] it submits jobs; as a [`JobHandler`] it runs them.
#[derive(Debug)]
pub struct Background<T> {
    tool: T,
    services: Arc<Services>,
    definition: ToolDefinition,
}

impl<T: JobTool> Background<T> {
    pub fn new(tool: T, services: Arc<Services>) -> Background<T> {
        let definition = ToolDefinition {
            produces: T::PRODUCES,
            ..ToolDefinition::typed::<T::Input>(
                T::NAME,
                T::DESCRIPTION,
                tool.annotations(),
                Mode::Job,
            )
        };
        Background { tool, services, definition }
    }
}

#[async_trait]
impl<T: JobTool> Tool for Background<T> {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let stored = self.tool.prepare(parse_arguments(T::NAME, call.arguments)?)?;
        let stored = self.tool.admit(stored, &call.caller).await?;
        let request = JobRequest {
            tool: T::NAME,
            produces: T::PRODUCES,
            input: serde_json::to_value(&stored)
                .map_err(|error| ToolError::Internal(error.to_string()))?,
            same_call: self.tool.same_call(&stored),
            started: self.tool.started(&stored),
            caller: call.caller,
        };
        job::start(&self.services, request).await
    }

    fn handler(self: Arc<Self>) -> Option<Arc<dyn JobHandler>> {
        Some(self)
    }
}

#[async_trait]
impl<T: JobTool> JobHandler for Background<T> {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let stored = serde_json::from_value(job.input.clone()).map_err(|error| {
            tracing::error!(job = %job.id, %error, "stored input no longer reads");
            JobFailure {
                detail: None,
                code: "invalid_input".to_owned(),
                message: "This request was stored in a form I can no longer read; please ask \
                          again."
                    .to_owned(),
                retryable: false,
                retry_after: None,
            }
        })?;
        self.tool.run(stored, job).await
    }

    async fn discard(&self, id: &JobId) {
        self.tool.discard(id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.tool.typical_duration()
    }
}
