//! Ready-made realtime payloads: the exact OpenAI Realtime client events and Gemini Live client
//! messages a host app sends over its own WebSocket to put a finished job into the conversation.
//! Pure JSON building; it knows nothing of the store, HTTP, MCP or how the event is delivered.
//!
//! Wire formats, from the OpenAI Realtime client-event reference and the Gemini Live
//! `BidiGenerateContentClientMessage` reference (with google-genai's `FunctionResponse`):
//! - OpenAI Realtime (GA): `conversation.item.create` with a user `message` item, plus
//!   `response.cancel` / `response.create` chosen by the delivery hint.
//! - Gemini Live (`BidiGenerateContent`, camelCase JSON): `toolResponse` answering the model's
//!   own function call when its id is known, and a `clientContent` user turn otherwise.

use serde_json::{Value, json};

use crate::config::DeliveryHint;

/// What a finished job says to a realtime conversation; everything the payloads are built from.
#[derive(Debug, Clone, Copy)]
pub struct Announcement<'a> {
    pub job_id: &'a str,
    /// The tool that made the job; Gemini matches a function response to its call by name.
    pub tool: &'a str,
    /// `completed`, `failed` or `cancelled`.
    pub status: &'a str,
    /// One speakable sentence, e.g. "The image of “a red fox” is ready."
    pub say: &'a str,
    /// The finished image; `Some` only for completed image jobs.
    pub image_url: Option<&'a str>,
    pub delivery: DeliveryHint,
    /// The job's JSON view (`schemas/job.json`), handed to Gemini as the function's output.
    pub result: &'a Value,
    /// The realtime platform's own function-call id (Gemini `functionCalls[].id`), when the host
    /// passed it in `_meta["offstage/call_id"]`.
    pub call_id: Option<&'a str>,
}

/// Every payload of one announcement:
/// `{"openai": [events…], "gemini": {"tool_response": {…} | null, "client_content": {…}}}`.
pub fn payloads(announcement: &Announcement<'_>) -> Value {
    json!({
        "openai": openai_realtime(announcement),
        "gemini": gemini_live(announcement),
    })
}

/// OpenAI Realtime client events, in the order to send them.
///
/// Each event carries a deterministic `event_id` (`offstage_<job id>_<step>`): the server echoes
/// it in any `error` event, and a host that receives the same job event twice (webhook retry,
/// SSE replay) can recognise what it already sent.
pub fn openai_realtime(announcement: &Announcement<'_>) -> Vec<Value> {
    let job_id = announcement.job_id;
    let mut content = vec![json!({"type": "input_text", "text": context_text(announcement)})];
    if let Some(image_url) = announcement.image_url {
        content.push(json!({"type": "input_image", "image_url": image_url}));
    }
    // A `user` message, because only user messages may carry `input_image` (system messages
    // take `input_text` only); the bracketed prefix tells the model this is a job notice, not
    // something the person said. The call that started the job was answered long ago, so a
    // `function_call_output` no longer fits.
    let item = json!({
        "type": "conversation.item.create",
        "event_id": event_id(job_id, "item"),
        "item": {"type": "message", "role": "user", "content": content},
    });
    let respond = json!({"type": "response.create", "event_id": event_id(job_id, "response")});
    match announcement.delivery {
        // Cancel first so the model stops mid-sentence and its next response already knows the
        // result. With no response in progress the server answers with a harmless error.
        DeliveryHint::Interrupt => vec![
            json!({"type": "response.cancel", "event_id": event_id(job_id, "cancel")}),
            item,
            respond,
        ],
        // The host sends `response.create` once no response is in progress (after
        // `response.done`); sent during one, the server rejects it.
        DeliveryHint::WhenIdle => vec![item, respond],
        // Context only: without `response.create` the model mentions it when next it speaks.
        DeliveryHint::Silent => vec![item],
    }
}

/// Gemini Live client messages: `tool_response` (or `null` without a call id) and
/// `client_content`. A host sends one of them, not both: `tool_response` while the model's
/// function call is still open (`willContinue: true` earlier, NON_BLOCKING), else
/// `client_content`.
pub fn gemini_live(announcement: &Announcement<'_>) -> Value {
    let scheduling = gemini_scheduling(announcement.delivery);
    let tool_response = announcement.call_id.map(|call_id| {
        // Gemini reads `output` for a function's result and `error` for its failure.
        let mut response = match announcement.status {
            "completed" => json!({"output": announcement.result}),
            _ => json!({"error": {"message": announcement.say, "job": announcement.result}}),
        };
        // Scheduling twice: Google's Live guide puts it inside `response`, the API type has a
        // top-level `FunctionResponse.scheduling`, and clients in the wild send either.
        response["scheduling"] = json!(scheduling);
        json!({
            "toolResponse": {
                "functionResponses": [{
                    "id": call_id,
                    "name": announcement.tool,
                    "response": response,
                    "scheduling": scheduling,
                    // The final response: it closes a call left open as a generator.
                    "willContinue": false,
                }],
            },
        })
    });
    // `turnComplete: true` makes the model answer now; `false` only appends to the context.
    // Client content cuts into a generation in progress, so for `when_idle` and `silent` the
    // host sends it between model turns.
    let turn_complete = announcement.delivery != DeliveryHint::Silent;
    json!({
        "tool_response": tool_response,
        "client_content": {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": context_text(announcement)}]}],
                "turnComplete": turn_complete,
            },
        },
    })
}

/// The line the model reads, the same on both platforms:
/// `[offstage job <id> completed] The image of “…” is ready. Image: <url>`.
fn context_text(announcement: &Announcement<'_>) -> String {
    let Announcement { job_id, status, say, .. } = *announcement;
    match announcement.image_url {
        // The URL in the text too: the model can pass it on, and Gemini's turn is text only.
        Some(image_url) => format!("[offstage job {job_id} {status}] {say} Image: {image_url}"),
        None => format!("[offstage job {job_id} {status}] {say}"),
    }
}

/// Gemini's `FunctionResponseScheduling` for a delivery hint; the hint names were taken from it.
fn gemini_scheduling(delivery: DeliveryHint) -> &'static str {
    match delivery {
        DeliveryHint::Interrupt => "INTERRUPT",
        DeliveryHint::WhenIdle => "WHEN_IDLE",
        DeliveryHint::Silent => "SILENT",
    }
}

fn event_id(job_id: &str, step: &str) -> String {
    format!("offstage_{job_id}_{step}")
}

#[cfg(test)]
mod tests;
