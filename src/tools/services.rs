//! What tools share: the runner, URL building, the image backend and the push policy; and the
//! cross-tool behaviour built on them — owner-checked reads, job views with their webhook
//! deliveries, and the piggy-back lines that tell a conversation what finished meanwhile.

use std::{sync::Arc, time::Duration};

use super::{Caller, JobView, Links, ToolError, view};
use crate::{
    config::{DeliveryHint, PushConfig},
    images::{fetch::ImageFetcher, pipeline::ImagePipeline},
    jobs::{Job, JobId, Micros, runner::JobRunner},
    providers::router::Router,
};

/// At most this many finished jobs are announced at the top of one result.
const MAX_ANNOUNCED: usize = 5;

#[derive(Debug)]
pub struct Services {
    pub runner: JobRunner,
    pub links: Links,
    /// The image providers, in the order they are tried.
    pub router: Arc<Router>,
    /// Validates, stores, previews and renders images on the low-priority pool; owns the
    /// image files (`pipeline.files()`).
    pub pipeline: ImagePipeline,
    /// The guarded client for image URLs callers hand us (`edit_image`).
    pub fetcher: ImageFetcher,
    pub push: PushConfig,
    /// Every call answers within this (`tools.reply_within`); the MCP edge enforces it.
    pub reply_within: Duration,
}

impl Services {
    /// Reads a job for `caller`. Someone else's job looks exactly like a missing one.
    pub async fn job_for(&self, caller: &Caller, job_id: &str) -> Result<Job, ToolError> {
        let not_found = || ToolError::JobNotFound(job_id.trim().to_owned());
        let id = JobId::parse(job_id).ok_or_else(not_found)?;
        let job = self.runner.get(&id).await.map_err(|e| ToolError::Internal(e.to_string()))?;
        job.filter(|job| job.owner == caller.owner).ok_or_else(not_found)
    }

    /// The job as every view shows it, with its webhook deliveries when webhooks are in use.
    pub async fn view(&self, job: &Job) -> Result<JobView, ToolError> {
        let mut view = JobView::of(job, &self.links);
        if !self.push.webhooks.is_empty() {
            let deliveries = self.runner.store().deliveries_of(&job.id).await;
            let deliveries = deliveries.map_err(|e| ToolError::Internal(e.to_string()))?;
            view.with_deliveries(&deliveries);
        }
        Ok(view)
    }

    /// The delivery hint for `tool`'s results in this caller's conversation.
    pub fn delivery_for(&self, tool: &str, caller: &Caller) -> DeliveryHint {
        caller.delivery.unwrap_or_else(|| self.push.delivery_for(tool))
    }

    /// One line per job of this conversation that ended and was never announced to it, with
    /// the job it is about; each job is announced at most once. Failures here only cost the announcement, never the call.
    pub async fn piggyback(&self, caller: &Caller) -> Vec<(JobId, String)> {
        let Some(conversation) = caller.conversation.as_ref().filter(|_| caller.piggyback) else {
            return Vec::new();
        };
        // Every ending in one of this process's sessions is published here first, so once the
        // store had nothing for it, nothing is news until the next ending.
        let endings = self.runner.events().endings();
        let owner = &caller.owner;
        if caller.local_conversation && endings.nothing_to_announce(owner, conversation) {
            return Vec::new();
        }
        let mark = caller.local_conversation.then(|| endings.mark(owner, conversation));
        let store = self.runner.store();
        match store
            .take_unannounced(&caller.owner, conversation, Micros::now(), MAX_ANNOUNCED)
            .await
        {
            Ok(jobs) if jobs.is_empty() => {
                if let Some(mark) = mark {
                    endings.clean(owner, conversation, mark);
                }
                Vec::new()
            }
            Ok(jobs) => jobs.iter().map(|job| (job.id.clone(), view::announcement(job))).collect(),
            Err(error) => {
                tracing::warn!(%error, "could not read jobs to announce");
                Vec::new()
            }
        }
    }

    /// Records that the caller's conversation has now been told how `job` ended.
    pub async fn mark_announced(&self, job: &Job) {
        if job.status.is_terminal()
            && job.context.conversation.is_some()
            && let Err(error) = self.runner.store().mark_announced(&job.id, Micros::now()).await
        {
            tracing::warn!(%error, job = %job.id, "could not mark job announced");
        }
    }
}
