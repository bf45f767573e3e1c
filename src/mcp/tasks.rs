//! The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on durable jobs: a job
//! *is* the task (`taskId` = job id), so `tasks/get` reads the same store every other view
//! reads, and tasks survive restarts like jobs do.
//!
//! Only 2026-07-28 requests that declare the extension get tasks. Legacy sessions never do,
//! whatever they announced at `initialize` (SEP-2663 says the capability does not apply there,
//! and clients that announce it anyway cannot read a task result).

use std::time::Duration;

use rmcp::{
    RoleServer,
    model::{
        CallToolResult, ContentBlock, DetailedTask, ProtocolVersion, Task, TaskPayload, TaskStatus,
    },
    service::RequestContext,
};

use crate::{
    jobs::{Job, JobStatus},
    tools::{JobView, builtin::job_status::status_line},
};

/// How often clients should poll `tasks/get`.
pub(crate) const POLL_INTERVAL_MS: u64 = 1000;

/// True when this request may be answered with a task.
pub(crate) fn wanted(ctx: &RequestContext<RoleServer>) -> bool {
    let modern = ctx
        .meta
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    modern && ctx.meta.client_capabilities().is_some_and(|caps| caps.supports_tasks())
}

/// The task's base fields. Its TTL is the job's retention: until then `tasks/get` answers.
pub(crate) fn task(job: &Job, view: &JobView, ttl: Duration) -> Task {
    let status = match job.status {
        JobStatus::Working => TaskStatus::Working,
        // A tool that ran and failed is a completed task with an `isError` result; `failed` is
        // for JSON-RPC errors (SEP-2663).
        JobStatus::Completed | JobStatus::Failed => TaskStatus::Completed,
        JobStatus::Cancelled => TaskStatus::Cancelled,
    };
    Task::new(job.id.to_string(), status, job.created_at.to_rfc3339(), job.updated_at.to_rfc3339())
        .with_status_message(status_line(job, view))
        .with_ttl_ms(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .with_poll_interval_ms(POLL_INTERVAL_MS)
}

/// The task with its result inline once it ended (what `tasks/get` and `notifications/tasks`
/// carry).
pub(crate) fn detailed(job: &Job, view: &JobView, ttl: Duration) -> DetailedTask {
    let task = task(job, view, ttl);
    let payload = match job.status {
        JobStatus::Working => TaskPayload::Working,
        JobStatus::Cancelled => TaskPayload::Cancelled,
        JobStatus::Completed | JobStatus::Failed => {
            let content = vec![ContentBlock::text(status_line(job, view))];
            let mut result = if job.status == JobStatus::Failed {
                CallToolResult::error(content)
            } else {
                CallToolResult::success(content)
            };
            result.structured_content = Some(view.to_json());
            let result = match serde_json::to_value(result) {
                Ok(serde_json::Value::Object(object)) => object,
                _ => serde_json::Map::new(),
            };
            TaskPayload::Completed { result }
        }
    };
    DetailedTask::new(task, payload)
}
