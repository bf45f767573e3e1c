//! The public face of a job: one JSON shape shared by `job_status`, `resources/read` and
//! `GET /v1/jobs/{id}`, and the URLs that point at it.

use schemars::JsonSchema;
use serde::Serialize;
use url::Url;

use crate::jobs::{Job, JobId, JobStatus, Micros};

/// URI scheme of job resources: `offstage://jobs/{job_id}`.
pub const RESOURCE_PREFIX: &str = "offstage://jobs/";

/// Builds the absolute URLs and resource URIs we hand out.
#[derive(Debug, Clone)]
pub struct Links {
    /// Always ends with `/`, so relative joins keep any path prefix of `public_url`.
    base: Url,
}

impl Links {
    pub fn new(mut base: Url) -> Links {
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Links { base }
    }

    pub fn image_url(&self, id: &JobId) -> String {
        format!("{}v1/jobs/{id}/image", self.base)
    }

    pub fn resource_uri(id: &JobId) -> String {
        format!("{RESOURCE_PREFIX}{id}")
    }

    pub fn parse_resource_uri(uri: &str) -> Option<JobId> {
        uri.strip_prefix(RESOURCE_PREFIX).and_then(JobId::parse)
    }
}

/// A job as callers see it. Field names are part of the wire format (`schemas/job.json`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct JobView {
    pub job_id: String,
    pub tool: String,
    /// `working`, `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// Works at once: a placeholder while working, the image once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Estimated milliseconds left, while working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// Why it failed or was cancelled, as a sentence to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl JobView {
    pub fn of(job: &Job, links: &Links) -> JobView {
        let produces_image = job.tool == super::generate_image::NAME;
        JobView {
            job_id: job.id.to_string(),
            tool: job.tool.clone(),
            status: job.status,
            image_url: produces_image.then(|| links.image_url(&job.id)),
            eta_ms: (job.status == JobStatus::Working).then(|| remaining_ms(job)),
            error: job.error.as_ref().map(|error| error.message.clone()),
            created_at: job.created_at.to_rfc3339(),
            finished_at: job.finished_at.map(Micros::to_rfc3339),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The creation-time estimate minus the time already spent, never below zero.
fn remaining_ms(job: &Job) -> u64 {
    let elapsed_ms = (Micros::now().0 - job.created_at.0).max(0) / 1000;
    job.eta_ms.saturating_sub(u64::try_from(elapsed_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_path_prefixes_and_round_trip_resource_uris() {
        let links = Links::new(Url::parse("https://example.com/offstage").unwrap());
        let id = JobId::generate();
        assert_eq!(
            links.image_url(&id),
            format!("https://example.com/offstage/v1/jobs/{id}/image")
        );
        assert_eq!(Links::parse_resource_uri(&Links::resource_uri(&id)), Some(id));
        assert_eq!(Links::parse_resource_uri("offstage://jobs/nope"), None);
        assert_eq!(Links::parse_resource_uri("file:///etc/passwd"), None);
    }
}
