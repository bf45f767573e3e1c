//! `job_status`: reads a job, optionally waiting (up to 20 s) for it to end while sending
//! progress notifications, for callers that cannot receive pushes.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use super::{
    Annotations, JobView, Services, ToolError, ToolOutput,
    typed::{Context, InlineTool},
};
use crate::jobs::{Job, JobStatus};

pub const NAME: &str = "job_status";
pub const MAX_WAIT_MS: u64 = 20_000;
/// How often a waiting call reports progress; also bounds how stale a wait can be.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub const DESCRIPTION: &str = "Check a background job, e.g. an image being made. Use only when the \
user asks whether it is ready; results also arrive on their own. wait_ms waits for it to finish.";

/// Arguments of `job_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobStatusInput {
    pub job_id: String,
    #[schemars(range(max = 20000))]
    pub wait_ms: Option<u64>,
}

/// Named `...Tool` so it does not clash with [`crate::jobs::JobStatus`].
#[derive(Debug)]
pub struct JobStatusTool {
    services: Arc<Services>,
}

impl JobStatusTool {
    pub fn new(services: Arc<Services>) -> JobStatusTool {
        JobStatusTool { services }
    }
}

/// One line describing where a job stands, for the model to relay.
pub fn status_line(job: &Job, view: &JobView) -> String {
    let what = if view.image_url.is_some() { "The image" } else { "The job" };
    match job.status {
        JobStatus::Working => {
            let seconds = view.eta_ms.unwrap_or(0).div_ceil(1000).max(1);
            format!("{what} is still being made, about {seconds} s left. Job {}.", job.id)
        }
        JobStatus::Completed => match &view.image_url {
            Some(url) => format!("The image is ready: {url}"),
            // The tool's own sentence ("It is 3 degrees in Berlin."), else a generic one.
            None => super::view::announcement(job),
        },
        JobStatus::Failed => {
            format!("{what} failed: {}", view.error.as_deref().unwrap_or("no reason given."))
        }
        JobStatus::Cancelled => format!("{what} was cancelled."),
    }
}

#[async_trait]
impl InlineTool for JobStatusTool {
    type Input = JobStatusInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;
    /// The longest wait plus room for the reads around it.
    const WITHIN: Duration = Duration::from_millis(MAX_WAIT_MS + 5_000);

    fn annotations(&self) -> Annotations {
        Annotations { read_only: true, destructive: false, idempotent: true, open_world: false }
    }

    async fn call(&self, input: JobStatusInput, call: Context) -> Result<ToolOutput, ToolError> {
        let wait_ms = input.wait_ms.unwrap_or(0);
        if wait_ms > MAX_WAIT_MS {
            return Err(ToolError::InvalidArguments(format!(
                "wait_ms is {wait_ms}; use a value from 0 to {MAX_WAIT_MS}."
            )));
        }
        let mut job = self.services.job_for(&call.caller, &input.job_id).await?;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(wait_ms);
        while !job.status.is_terminal() && Instant::now() < deadline {
            let until = deadline.min(Instant::now() + PROGRESS_EVERY);
            let latest = self.services.runner.wait_for_end(&job.id, until).await;
            job = match latest {
                Ok(Some(latest)) => latest,
                // Purged by retention mid-wait: report what we last saw.
                Ok(None) => break,
                Err(error) => return Err(ToolError::Internal(error.to_string())),
            };
            if let (Some(progress), false) = (&call.progress, job.status.is_terminal()) {
                let waited = started.elapsed();
                let message = format!("Still working ({} s so far).", waited.as_secs());
                progress.progress(waited.as_millis() as f64, Some(wait_ms as f64), message).await;
            }
        }
        let view = self.services.view(&job).await?;
        // The model now knows how it ended: don't announce it again.
        self.services.mark_announced(&job).await;
        Ok(ToolOutput {
            text: status_line(&job, &view),
            structured: view.to_json(),
            links: vec![],
            job: None,
        })
    }
}
