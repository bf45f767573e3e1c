//! The job machinery every job-mode tool gets without writing it: duplicate detection,
//! admission, the placeholder reply, and the lines a voice model says when a job starts, is
//! asked for again, and ends. Rust tools ([`super::typed::Background`]) and manifest tools both
//! go through [`start`] and [`finished`].

use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::Digest;

use super::{Caller, JobView, Services, ToolError, ToolOutput};
use crate::jobs::{
    Job, JobContext, JobOutput, JobStatus,
    runner::{Dedupe, NewJob, SubmitError},
};

// The keys of a generic job's stored output belong to the view that reads them; kept
// nameable here, where [`finished`] writes them.
pub use super::view::{RESULT_KEY, SAY_KEY};

/// A validated call about to become a job.
#[derive(Debug)]
pub struct JobRequest<'a> {
    pub tool: &'a str,
    /// What the job will produce: its tool's [`super::ToolDefinition::produces`].
    pub produces: JobOutput,
    /// What the job stores: checked and normalised.
    pub input: Value,
    /// What repeated calls are compared on, usually `input` with its text normalised.
    pub same_call: Value,
    pub caller: Caller,
    /// What the model says first, e.g. "Making the image now".
    pub started: String,
}

/// Submits the job (or finds the one this call repeats) and answers at once.
pub async fn start(services: &Services, request: JobRequest<'_>) -> Result<ToolOutput, ToolError> {
    let JobRequest { tool, produces, input, same_call, caller, started } = request;
    let dedupe = caller.conversation.as_ref().map(|conversation| Dedupe {
        key: dedupe_key(tool, conversation, &same_call),
        window: *services.push.dedupe_window,
        local: caller.local_conversation,
    });
    let new = NewJob {
        tool: tool.to_owned(),
        produces,
        input,
        context: JobContext {
            delivery: Some(services.delivery_for(tool, &caller).as_str().to_owned()),
            conversation: caller.conversation,
            call_id: caller.call_id,
        },
        owner: caller.owner,
        dedupe,
    };
    let submitted = services.runner.submit(new).await.map_err(|error| match error {
        SubmitError::Busy { retry_after, .. } => ToolError::Busy { retry_after },
        SubmitError::ShuttingDown => ToolError::Busy { retry_after: Duration::from_secs(5) },
        other => ToolError::Internal(other.to_string()),
    })?;
    let job = submitted.job;
    let view = JobView::of(&job, &services.links);
    let eta = Duration::from_millis(view.eta_ms.unwrap_or(0));
    let text = match (submitted.duplicate, job.status) {
        (false, _) => started_line(&started, tool, &job, eta),
        (true, JobStatus::Working) => already_line(tool, &job, eta),
        (true, _) => match &view.image_url {
            Some(url) => format!("{} It is at {url}", super::view::announcement(&job)),
            None => super::view::announcement(&job),
        },
    };
    let mut structured = json!({
        "job_id": job.id,
        "status": job.status,
        "eta_ms": view.eta_ms.unwrap_or(0),
    });
    if let Some(url) = &view.image_url {
        structured["image_url"] = json!(url);
    }
    if let Some(result) = &view.result {
        structured["result"] = result.clone();
    }
    if submitted.duplicate {
        structured["duplicate"] = json!(true);
    }
    Ok(ToolOutput { text, structured, job: Some(job) })
}

/// A generic job's output as stored: the tool's result under `result` (what the job JSON shows)
/// and, when the tool has one, the sentence announcing it under `say`.
pub fn finished(result: Value, say: Option<String>) -> Value {
    let mut output = Map::new();
    output.insert(RESULT_KEY.to_owned(), result);
    if let Some(say) = say {
        output.insert(SAY_KEY.to_owned(), json!(say));
    }
    Value::Object(output)
}

/// Same tool, same normalised arguments, same conversation.
fn dedupe_key(tool: &str, conversation: &str, same_call: &Value) -> String {
    let canonical = json!([tool, conversation, same_call]).to_string();
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn seconds(eta: Duration) -> f64 {
    eta.as_secs_f64().round().max(1.0)
}

/// The one line the model reads: it is under way, roughly when, not to call again, and the
/// job id for `job_status`. Short, because some stacks wrap it in JSON before the model reads
/// it (see `tests/stacks`: it must stay within 60 tokens everywhere).
fn started_line(started: &str, tool: &str, job: &Job, eta: Duration) -> String {
    let started = started.trim().trim_end_matches('.');
    format!(
        "{started}, ready in about {} s. Don't call {tool} again for it; job {}.",
        seconds(eta),
        job.id
    )
}

/// The reply to a repeated call: it is under way already.
fn already_line(tool: &str, job: &Job, eta: Duration) -> String {
    let what = match job.produces {
        JobOutput::Image => "That image is",
        JobOutput::Json => "That is",
    };
    format!(
        "{what} already being made, about {} s left; don't call {tool} again for it; job {}.",
        seconds(eta),
        job.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::working("t", 0)
    }

    #[test]
    fn lines_are_short_and_say_not_to_call_again() {
        let job = job();
        let line = started_line(
            "Making the image now.",
            "generate_image",
            &job,
            Duration::from_millis(25_400),
        );
        assert!(line.starts_with("Making the image now, ready in about 25 s."), "{line}");
        assert!(line.contains("Don't call generate_image again"), "{line}");
        assert!(line.ends_with(&format!("; job {}.", job.id)), "{line}");
        assert!(line.chars().count() <= 120, "{} chars: {line}", line.chars().count());
        let again = already_line("web_search", &job, Duration::ZERO);
        assert!(again.starts_with("That is already being made, about 1 s left"), "{again}");
    }

    #[test]
    fn the_announcement_rides_with_the_output() {
        assert_eq!(finished(json!({"a": 1}), None), json!({"result": {"a": 1}}));
        let said = finished(json!([1, 2]), Some("Two.".into()));
        assert_eq!(said, json!({"result": [1, 2], "say": "Two."}));
    }

    #[test]
    fn repeated_calls_match_only_in_the_same_tool_and_conversation() {
        let args = json!({"q": "fox"});
        let key = dedupe_key("t", "c", &args);
        assert_eq!(key, dedupe_key("t", "c", &json!({"q": "fox"})));
        assert_ne!(key, dedupe_key("u", "c", &args));
        assert_ne!(key, dedupe_key("t", "d", &args));
    }
}
