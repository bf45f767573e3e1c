//! Rows as both stores hold them: one mapping from columns to [`Job`] and [`StoredEvent`],
//! whichever database the row came from (SQLite's INTEGER and PostgreSQL's BIGINT both read
//! as `i64`; JSON is kept as text in both).

use sqlx::{FromRow, Row};

use super::{
    Job, JobContext, JobError, JobId, JobOutput, JobStatus, Micros, Outcome,
    events::StoredEvent,
    store::{DeliveryState, DeliveryStatus, DueDelivery, PurgedJob, StoreError},
};

/// The columns [`JobRow`] reads, as a literal so queries stay `&'static str`.
macro_rules! job_columns {
    () => {
        "id, tool, owner, input, status, output, error_code, error_message, attempts, eta_ms, \
         created_at, updated_at, started_at, finished_at, conversation, delivery, call_id, \
         progress, produces"
    };
}
pub(super) use job_columns;

/// The columns [`EventRow`] reads, as a literal for `concat!`.
macro_rules! event_columns {
    () => {
        "id, job_id, owner, conversation, kind, payload, created_at"
    };
}
pub(super) use event_columns;

/// [`event_columns`] as a constant, for queries built with `format!`.
pub(super) const EVENT_COLUMNS: &str = event_columns!();

/// The columns [`DeliveryRow`] reads, as a literal for `concat!`.
macro_rules! delivery_columns {
    () => {
        "event_id, endpoint, status, attempts, last_status, last_error, delivered_at"
    };
}
pub(super) use delivery_columns;

#[derive(Debug, FromRow)]
pub(super) struct JobRow {
    id: String,
    tool: String,
    owner: String,
    input: String,
    status: String,
    /// The result of a completed job, the detail of a failed one.
    output: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    eta_ms: i64,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    conversation: Option<String>,
    delivery: Option<String>,
    call_id: Option<String>,
    progress: Option<String>,
    /// `image` or `json` ([`JobOutput::as_str`]); rows from before the column were backfilled
    /// from their tool name by the migration that added it.
    produces: String,
}

#[derive(Debug, FromRow)]
pub(super) struct EventRow {
    id: i64,
    job_id: String,
    owner: String,
    conversation: Option<String>,
    kind: String,
    payload: String,
    created_at: i64,
}

/// The job a row of [`job_columns`] holds.
pub(super) fn to_job<'r, R: Row>(row: &'r R) -> Result<Job, StoreError>
where
    JobRow: FromRow<'r, R>,
{
    let row = JobRow::from_row(row)?;
    let id = row.id;
    let corrupt = |reason: String| StoreError::Corrupt { id: id.clone(), reason };
    let json = |text: Option<String>, what: &str| {
        text.map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| corrupt(format!("{what}: {e}")))
    };
    let output = json(row.output, "output")?;
    let progress = json(row.progress, "progress")?;
    let input = json(Some(row.input), "input")?.unwrap_or_default();
    let status = row.status;
    let produces = JobOutput::parse(&row.produces)
        .ok_or_else(|| corrupt(format!("produces {}", row.produces)))?;
    Ok(Job {
        id: JobId::parse(&id).ok_or_else(|| corrupt("malformed id".to_owned()))?,
        tool: row.tool,
        produces,
        owner: row.owner,
        input,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status}")))?,
        output: if row.error_code.is_none() { output.clone() } else { None },
        error: row.error_code.map(|code| JobError {
            code,
            message: row.error_message.unwrap_or_default(),
            detail: output,
        }),
        progress,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        eta_ms: u64::try_from(row.eta_ms).unwrap_or(0),
        created_at: Micros(row.created_at),
        updated_at: Micros(row.updated_at),
        started_at: row.started_at.map(Micros),
        finished_at: row.finished_at.map(Micros),
        context: JobContext {
            conversation: row.conversation,
            delivery: row.delivery,
            call_id: row.call_id,
        },
    })
}

/// The event a row of [`EVENT_COLUMNS`] holds.
pub(super) fn to_event<'r, R: Row>(row: &'r R) -> Result<StoredEvent, StoreError>
where
    EventRow: FromRow<'r, R>,
{
    let row = EventRow::from_row(row)?;
    let id = row.id;
    let corrupt = |reason: String| StoreError::Corrupt { id: format!("event {id}"), reason };
    Ok(StoredEvent {
        id,
        job_id: JobId::parse(&row.job_id).ok_or_else(|| corrupt("malformed job id".to_owned()))?,
        owner: row.owner,
        conversation: row.conversation,
        kind: row.kind,
        payload: serde_json::from_str(&row.payload)
            .map_err(|e| corrupt(format!("payload: {e}")))?,
        created_at: Micros(row.created_at),
    })
}

/// The `output` and error columns of an outcome: a completed job's result, or a failed or
/// cancelled job's detail with its error.
pub(super) fn outcome_columns(outcome: &Outcome) -> (Option<String>, Option<&JobError>) {
    match outcome {
        Outcome::Completed(output) => (Some(output.to_string()), None),
        Outcome::Failed(error) | Outcome::Cancelled(error) => {
            (error.detail.as_ref().map(ToString::to_string), Some(error))
        }
    }
}

/// A job removed by retention, from a `RETURNING id, tool` row.
pub(super) fn to_purged<'r, R: Row>(row: &'r R) -> Result<PurgedJob, StoreError>
where
    PurgedRow: FromRow<'r, R>,
{
    let row = PurgedRow::from_row(row)?;
    let id = JobId::parse(&row.id).ok_or_else(|| StoreError::Corrupt {
        id: row.id.clone(),
        reason: "malformed id".to_owned(),
    })?;
    Ok(PurgedJob { id, tool: row.tool })
}

#[derive(Debug, FromRow)]
pub(super) struct PurgedRow {
    id: String,
    tool: String,
}

/// A row limit as SQL takes it.
pub(super) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[derive(Debug, FromRow)]
pub(super) struct DeliveryRow {
    event_id: i64,
    endpoint: String,
    status: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
}

/// Where a delivery of `job`'s events stands, from a row of [`delivery_columns`].
pub(super) fn to_delivery<'r, R: Row>(row: &'r R, job: &JobId) -> Result<DeliveryState, StoreError>
where
    DeliveryRow: FromRow<'r, R>,
{
    let row = DeliveryRow::from_row(row)?;
    Ok(DeliveryState {
        event_id: row.event_id,
        endpoint: row.endpoint,
        status: DeliveryStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt {
            id: job.to_string(),
            reason: format!("delivery status {}", row.status),
        })?,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.last_error,
        delivered_at: row.delivered_at.map(Micros),
    })
}

/// A delivery just claimed (`RETURNING` [`CLAIMED_COLUMNS`]), before its event is attached.
#[derive(Debug, FromRow)]
pub(super) struct ClaimedRow {
    pub(super) id: String,
    pub(super) event_id: i64,
    endpoint: String,
    attempts: i64,
    created_at: i64,
}

pub(super) const CLAIMED_COLUMNS: &str = "id, event_id, endpoint, attempts, created_at";

/// Claimed deliveries with their events. An event purged by retention takes its deliveries
/// with it (cascade); none can be missing here, but a skipped row is better than a failed batch.
pub(super) fn with_events(claimed: Vec<ClaimedRow>, events: Vec<StoredEvent>) -> Vec<DueDelivery> {
    let by_id: std::collections::HashMap<i64, StoredEvent> =
        events.into_iter().map(|event| (event.id, event)).collect();
    claimed
        .into_iter()
        .filter_map(|row| {
            let event = by_id.get(&row.event_id)?.clone();
            Some(DueDelivery {
                id: row.id,
                endpoint: row.endpoint,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                first_queued_at: Micros(row.created_at),
                event,
            })
        })
        .collect()
}
