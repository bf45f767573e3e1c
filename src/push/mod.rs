//! Push: what every job event says and who receives it. The composer turns a job change into
//! the durable event (job view, a sentence to say, ready-made realtime payloads) and picks its
//! webhook endpoints; `webhooks` delivers the outbox; `realtime` builds the OpenAI Realtime and
//! Gemini Live messages a host app sends to inject a result.

pub mod event;
pub mod realtime;
pub mod webhooks;

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{
    config::{DeliveryHint, PushConfig},
    jobs::{
        Job, JobStatus,
        events::{EventComposer, JobChange, NewEvent, StoredEvent},
    },
    settings::Secret,
    tools::{Caller, JobView, Links, view::announcement},
};

/// Composes offstage's job events. Progress events go to the event stream and MCP
/// subscribers only: webhooks carry creation-to-result outcomes, not every partial step.
#[derive(Debug)]
pub struct Composer {
    links: Links,
    /// Webhook endpoint URLs by job owner.
    webhooks: HashMap<String, Vec<String>>,
}

impl Composer {
    pub fn new(links: Links, push: &PushConfig) -> Composer {
        let mut webhooks: HashMap<String, Vec<String>> = HashMap::new();
        for webhook in &push.webhooks {
            let owner = webhook
                .token
                .as_ref()
                .map(Secret::expose)
                .map_or_else(Caller::local, Caller::for_token)
                .owner;
            webhooks.entry(owner).or_default().push(webhook.url.clone());
        }
        Composer { links, webhooks }
    }
}

impl EventComposer for Composer {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
        let kind = change.kind(job);
        let view = JobView::of(job, &self.links);
        let delivery =
            job.context.delivery.as_deref().and_then(DeliveryHint::parse).unwrap_or_default();
        let mut payload = json!({
            "type": kind,
            "job": view,
            "conversation": job.context.conversation,
            "delivery": delivery,
        });
        let mut webhooks = Vec::new();
        if change == JobChange::Ended {
            let say = announcement(job);
            let result = view.to_json();
            let image_url = match job.status {
                JobStatus::Completed => view.image_url.as_deref(),
                _ => None,
            };
            payload["say"] = json!(say);
            payload["realtime"] = realtime::payloads(&realtime::Announcement {
                job_id: job.id.as_str(),
                tool: &job.tool,
                status: job.status.as_str(),
                say: &say,
                image_url,
                delivery,
                result: &result,
                call_id: job.context.call_id.as_deref(),
            });
            // Host apps want results; creation is visible on the event stream.
            webhooks = self.webhooks.get(&job.owner).cloned().unwrap_or_default();
        }
        NewEvent { kind: kind.to_owned(), payload, webhooks }
    }
}

/// The JSON a host app receives for a stored event (SSE `data:`, webhook `data`): the payload
/// plus its event id.
pub fn event_json(event: &StoredEvent) -> Value {
    let mut body = event.payload.clone();
    if let Value::Object(object) = &mut body {
        object.insert("event_id".to_owned(), json!(event.id));
        object.insert("created_at".to_owned(), json!(event.created_at.to_rfc3339()));
    }
    body
}
