//! `cancel_job`: stops a background job the caller owns ("never mind").

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::job_status::status_line;
use crate::{
    jobs::{JobError, runner::CancelOutcome},
    tools::{
        Annotations, JobView, Services, ToolError, ToolOutput,
        typed::{Context, InlineTool},
    },
};

pub const NAME: &str = "cancel_job";

pub const DESCRIPTION: &str =
    "Stop a background job, e.g. an image being made. Use when the user says cancel or never mind.";

/// Arguments of `cancel_job`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelJobInput {
    pub job_id: String,
}

#[derive(Debug)]
pub struct CancelJob {
    services: Arc<Services>,
}

impl CancelJob {
    pub fn new(services: Arc<Services>) -> CancelJob {
        CancelJob { services }
    }
}

#[async_trait]
impl InlineTool for CancelJob {
    type Input = CancelJobInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;
    // A store write and a signal: well inside any reply bound.
    const WITHIN: Duration = Duration::from_secs(2);

    fn annotations(&self) -> Annotations {
        // It throws away work in progress, which cannot be undone.
        Annotations { read_only: false, destructive: true, idempotent: true, open_world: false }
    }

    async fn call(&self, input: CancelJobInput, call: Context) -> Result<ToolOutput, ToolError> {
        let job = self.services.job_for(&call.caller, &input.job_id).await?;
        let reason = JobError {
            detail: None,
            code: "cancelled".to_owned(),
            message: "Cancelled at the user's request.".to_owned(),
        };
        let outcome = self.services.runner.cancel(&job.id, reason).await;
        let (job, text) = match outcome.map_err(|error| ToolError::Internal(error.to_string()))? {
            CancelOutcome::Cancelled(job) => {
                let text = format!("Cancelled job {}.", job.id);
                (job, text)
            }
            CancelOutcome::AlreadyEnded(job) => {
                let view = JobView::of(&job, &self.services.links);
                let text = format!("Too late to cancel. {}", status_line(&job, &view));
                (job, text)
            }
            CancelOutcome::NotFound => return Err(ToolError::JobNotFound(input.job_id)),
        };
        let view = self.services.view(&job).await?;
        self.services.mark_announced(&job).await;
        Ok(ToolOutput { text, structured: view.to_json(), job: None })
    }
}
