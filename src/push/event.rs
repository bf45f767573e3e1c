//! The JSON host apps receive for a job event — as SSE `data:` and inside webhook bodies —
//! written down as types, so `schemas/event.json` and `schemas/webhook.json` are generated from
//! what is actually sent (the integration tests parse every event they see into these, with
//! unknown fields refused).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{config::DeliveryHint, tools::JobView};

/// One job event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// `job.created`, `job.progress` (a working job showed more, e.g. a partial image at
    /// `job.image_url`), `job.completed`, `job.failed` or `job.cancelled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Durable and increasing: resume a stream after it with `Last-Event-ID`.
    pub event_id: i64,
    /// When the change was committed (RFC 3339, UTC, microseconds).
    pub created_at: String,
    /// The job as the change left it: the same JSON as `job_status`.
    pub job: JobView,
    /// The conversation the job belongs to (header or MCP session), if any.
    pub conversation: Option<String>,
    /// How the result should enter the conversation.
    pub delivery: DeliveryHint,
    /// Ended jobs: one sentence to say, e.g. "The image of “a red fox” is ready."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub say: Option<String>,
    /// Ended jobs: the messages that inject the result into a realtime session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<RealtimePayloads>,
}

/// Ready-made realtime messages (see docs/realtime.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RealtimePayloads {
    /// OpenAI Realtime client events, to send in this order.
    pub openai: Vec<Value>,
    pub gemini: GeminiPayloads,
}

/// Gemini Live client messages; send one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeminiPayloads {
    /// `{"toolResponse": …}` closing the model's own function call; `null` unless the host
    /// passed its id in `_meta["offstage/call_id"]`.
    pub tool_response: Option<Value>,
    /// `{"clientContent": …}`: a user turn carrying the result.
    pub client_content: Value,
}

/// A webhook request body, in the Standard Webhooks envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// The event type, as in `data.type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event was committed (RFC 3339).
    pub timestamp: String,
    pub data: EventBody,
}
