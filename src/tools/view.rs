//! The public face of a job: one JSON shape shared by `job_status`, `resources/read` and
//! `GET /v1/jobs/{id}`, and the URLs that point at it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::image_record::{self, ImageJobInput, ImageJobOutput};
use crate::{
    jobs::{
        Job, JobId, JobOutput, JobStatus, Micros,
        store::{DeliveryState, DeliveryStatus},
    },
    providers::router::Attempt,
};

/// Output key holding the sentence that announces a completed job ("It is 12 degrees in
/// Berlin."); read by [`announcement`], written by `job::finished`.
pub const SAY_KEY: &str = "say";
/// Output key holding a generic job's result, shown as `result` in the job JSON.
pub const RESULT_KEY: &str = "result";

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

    /// The base every URL we hand out starts with (ends in `/`).
    pub fn base(&self) -> &str {
        self.base.as_str()
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobView {
    pub job_id: String,
    pub tool: String,
    /// `working`, `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// Works at once: a placeholder while working, the image once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// ThumbHash (base64) of the finished image: decode it with any ThumbHash library to
    /// paint a blurred stand-in of the right colours and shape while `image_url` loads. Add
    /// `?w=512&format=webp` (widths 64 to 2048, formats webp, png, jpeg) to `image_url` for a
    /// lighter copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Estimated milliseconds left, while working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// What a working job has shown so far, in its tool's terms; image jobs say
    /// `{"partial_images": n}` once `image_url` shows the n-th partial image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    /// What a completed job produced (tools other than image tools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why it failed or was cancelled, as a sentence to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Image jobs: which provider and model made the image, and every provider call made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderRecord>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Webhook deliveries of this job's events, when any endpoint receives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<WebhookView>>,
}

/// How an image job used its providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRecord {
    /// The provider that made the image (completed jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// In order; a fallback shows as calls to more than one provider.
    pub attempts: Vec<Attempt>,
}

impl ProviderRecord {
    /// From a completed job's parsed output, else from a failed job's error detail.
    fn of(job: &Job, output: Option<&ImageJobOutput>) -> Option<ProviderRecord> {
        if let Some(output) = output {
            return Some(ProviderRecord {
                name: Some(output.provider.clone()),
                // A job finished from an image an earlier attempt stored knows no model.
                model: (!output.model.is_empty()).then(|| output.model.clone()),
                attempts: output.attempts.clone(),
            });
        }
        let detail = job.error.as_ref()?.detail.as_ref()?;
        let attempts = serde_json::from_value(detail.get("attempts")?.clone()).ok()?;
        Some(ProviderRecord { name: None, model: None, attempts })
    }
}

/// Where one webhook delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookView {
    pub event_id: i64,
    pub url: String,
    /// `pending` (retrying), `delivered` or `failed` (gave up).
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

impl JobView {
    pub fn of(job: &Job, links: &Links) -> JobView {
        let produces_image = job.produces == JobOutput::Image;
        // Parsed once: every `job_status` builds a view.
        let output = produces_image.then(|| ImageJobOutput::of(job)).flatten();
        JobView {
            job_id: job.id.to_string(),
            tool: job.tool.clone(),
            status: job.status,
            image_url: produces_image.then(|| links.image_url(&job.id)),
            preview: output.as_ref().and_then(|output| output.preview.clone()),
            eta_ms: (job.status == JobStatus::Working).then(|| remaining_ms(job)),
            progress: (job.status == JobStatus::Working).then(|| job.progress.clone()).flatten(),
            result: job.output.as_ref().and_then(|output| output.get(RESULT_KEY)).cloned(),
            error: job.error.as_ref().map(|error| error.message.clone()),
            provider: produces_image.then(|| ProviderRecord::of(job, output.as_ref())).flatten(),
            created_at: job.created_at.to_rfc3339(),
            finished_at: job.finished_at.map(Micros::to_rfc3339),
            webhooks: None,
        }
    }

    pub fn with_deliveries(&mut self, deliveries: &[DeliveryState]) {
        if deliveries.is_empty() {
            return;
        }
        self.webhooks = Some(
            deliveries
                .iter()
                .map(|delivery| WebhookView {
                    event_id: delivery.event_id,
                    url: delivery.endpoint.clone(),
                    status: delivery.status,
                    attempts: delivery.attempts,
                    last_status: delivery.last_status,
                    last_error: delivery.last_error.clone(),
                    delivered_at: delivery.delivered_at.map(Micros::to_rfc3339),
                })
                .collect(),
        );
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// One short sentence telling a conversation how a job ended, e.g. "The image of “a red fox”
/// is ready." Used for piggy-backed results and for the host app's events.
pub fn announcement(job: &Job) -> String {
    let image = (job.produces == JobOutput::Image).then(|| ImageJobInput::of(job)).flatten();
    let what = match image {
        Some(input) if image_record::is_edit(job) => {
            format!("The picture edit \u{201c}{}\u{201d}", shorten(&input.prompt, 60))
        }
        Some(input) => format!("The image of \u{201c}{}\u{201d}", shorten(&input.prompt, 60)),
        None => format!("The {} job", job.tool.replace('_', " ")),
    };
    let said = job.output.as_ref().and_then(|output| output.get(SAY_KEY));
    if let (JobStatus::Completed, Some(serde_json::Value::String(said))) = (job.status, said) {
        return said.clone();
    }
    match job.status {
        JobStatus::Working => format!("{what} is still being made."),
        JobStatus::Completed => format!("{what} is ready."),
        JobStatus::Failed => match &job.error {
            Some(error) => format!("{what} failed: {}", error.message),
            None => format!("{what} failed."),
        },
        JobStatus::Cancelled => format!("{what} was cancelled."),
    }
}

/// At most `max` characters, cut at a word boundary with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}\u{2026}", cut.trim_end_matches([',', '.', ';', ':']))
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
