//! `job_status`: reads a job, optionally waiting for it to end while sending progress
//! notifications, for callers that cannot receive pushes. A wait never outlasts the server's
//! reply bound (`tools.reply_within`), whatever `wait_ms` asks for: frameworks' MCP clients give
//! up after 5 s, so a longer wait would only turn a status into a client timeout.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    config::ToolsConfig,
    jobs::{Job, JobStatus},
    tools::{
        Annotations, JobView, Services, ToolError, ToolOutput,
        typed::{Context, InlineTool},
    },
};

pub const NAME: &str = "job_status";
/// How often a waiting call reports progress; also bounds how stale a wait can be.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Room kept under the reply bound for the reads after a wait and the way back to the caller.
const REPLY_MARGIN: Duration = Duration::from_millis(250);

/// The description with the default reply bound; [`description`] writes it for any bound.
pub const DESCRIPTION: &str = "Check a background job, e.g. an image being made. Use only when the \
user asks whether it is ready; results also arrive on their own. wait_ms waits up to 3 s for it \
to finish.";

/// What models read: the longest wait it promises follows `tools.reply_within`.
pub fn description(reply_within: Duration) -> String {
    let tenths = reply_within.as_millis().div_ceil(100);
    let bound = if tenths.is_multiple_of(10) {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    };
    format!(
        "Check a background job, e.g. an image being made. Use only when the user asks whether \
         it is ready; results also arrive on their own. wait_ms waits up to {bound} s for it to \
         finish."
    )
}

/// Arguments of `job_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobStatusInput {
    pub job_id: String,
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

    /// The longest a call waits: the reply bound less room for the answer (the description
    /// rounds this up to the bound itself).
    fn longest_wait(&self) -> Duration {
        self.services.reply_within.saturating_sub(REPLY_MARGIN)
    }
}

/// One line describing where a job stands, for the model to relay.
pub fn status_line(job: &Job, view: &JobView) -> String {
    match job.status {
        JobStatus::Working => format!("{} Job {}.", progress_line(view), job.id),
        JobStatus::Completed => match &view.image_url {
            Some(url) => format!("The image is ready: {url}"),
            // The tool's own sentence ("It is 3 degrees in Berlin."), else a generic one.
            None => crate::tools::view::announcement(job),
        },
        JobStatus::Failed => {
            let what = if view.image_url.is_some() { "The image" } else { "The job" };
            format!("{what} failed: {}", view.error.as_deref().unwrap_or("no reason given."))
        }
        JobStatus::Cancelled => {
            let what = if view.image_url.is_some() { "The image" } else { "The job" };
            format!("{what} was cancelled.")
        }
    }
}

/// What a working job's progress notification says: speakable, as LiveKit's
/// `report_progress` hands the first one to the model as the call's interim answer.
fn progress_line(view: &JobView) -> String {
    let what = if view.image_url.is_some() { "The image" } else { "The job" };
    let seconds = view.eta_ms.unwrap_or(0).div_ceil(1000).max(1);
    format!("{what} is still being made, about {seconds} s left.")
}

#[async_trait]
impl InlineTool for JobStatusTool {
    type Input = JobStatusInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;
    const WITHIN: Duration = ToolsConfig::DEFAULT_REPLY_WITHIN;

    fn annotations(&self) -> Annotations {
        Annotations { read_only: true, destructive: false, idempotent: true, open_world: false }
    }

    fn description(&self) -> String {
        description(self.services.reply_within)
    }

    /// Its waits end before the reply bound does.
    fn within(&self) -> Duration {
        self.services.reply_within
    }

    async fn call(&self, input: JobStatusInput, call: Context) -> Result<ToolOutput, ToolError> {
        let wait = Duration::from_millis(input.wait_ms.unwrap_or(0)).min(self.longest_wait());
        let mut job = self.services.job_for(&call.caller, &input.job_id).await?;
        let started = Instant::now();
        let deadline = started + wait;
        while !job.status.is_terminal() && Instant::now() < deadline {
            if let Some(progress) = &call.progress {
                // The first one goes out at once: LiveKit frees the model's turn on it.
                let line = progress_line(&JobView::of(&job, &self.services.links));
                let waited = started.elapsed().as_millis() as f64;
                progress.progress(waited, Some(wait.as_millis() as f64), line).await;
            }
            let until = deadline.min(Instant::now() + PROGRESS_EVERY);
            let latest = self.services.runner.wait_for_end(&job.id, until).await;
            job = match latest {
                Ok(Some(latest)) => latest,
                // Purged by retention mid-wait: report what we last saw.
                Ok(None) => break,
                Err(error) => return Err(ToolError::Internal(error.to_string())),
            };
        }
        let view = self.services.view(&job).await?;
        // The model now knows how it ended: don't announce it again.
        self.services.mark_announced(&job).await;
        Ok(ToolOutput { text: status_line(&job, &view), structured: view.to_json(), job: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_promises_the_configured_wait() {
        assert_eq!(description(ToolsConfig::DEFAULT_REPLY_WITHIN), DESCRIPTION);
        assert!(description(Duration::from_millis(2500)).contains("up to 2.5 s"));
        assert!(description(Duration::from_secs(10)).contains("up to 10 s"));
    }
}
