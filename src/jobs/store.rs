//! The job store trait: the single source of truth for jobs, their event log and the webhook
//! outbox, behind which the embedded SQLite store and the shared PostgreSQL store sit without
//! tools, providers or MCP noticing.
//!
//! Every state change is a compare-and-set from `working`, so a cancel racing a completion
//! resolves to exactly one outcome whichever process or task gets there first; and every change
//! is written together with its event (and that event's webhook deliveries) in one transaction.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Job, JobId, Micros, Outcome,
    events::{EventComposer, NewEvent, StoredEvent},
};

/// A job to persist: its new `working` row, the process that runs it, the key a repeat of the
/// same call is recognised by, and its creation event.
#[derive(Debug, Clone)]
pub struct Insert<'a> {
    pub job: &'a Job,
    pub instance: &'a str,
    pub dedupe_key: Option<&'a str>,
    pub event: NewEvent,
}

impl<'a> Insert<'a> {
    /// A job without a dedupe key.
    pub fn new(job: &'a Job, instance: &'a str, event: NewEvent) -> Self {
        Insert { job, instance, dedupe_key: None, event }
    }
}

/// One process's claim to be alive until a point in time.
///
/// Every job a process drives names it as owner. The process renews its lease (one heartbeat,
/// whatever the number of jobs); when it dies the lease expires and another process (or the
/// same one, restarted) claims and resumes its jobs. This is what makes jobs survive crashes
/// without ever being run by two live processes at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub instance: Arc<str>,
    pub until: Micros,
}

/// A job removed by retention: the runner asks its handler to delete what it left on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedJob {
    pub id: JobId,
    pub tool: String,
}

/// Which events a reader wants, beyond its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub conversation: Option<String>,
    pub job: Option<JobId>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryStatus> {
        match value {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// Where one webhook delivery of a job's event stands (shown in the job JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub event_id: i64,
    pub endpoint: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Micros>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    /// The `webhook-id`.
    pub id: String,
    pub endpoint: String,
    /// Attempts including this one.
    pub attempts: u32,
    pub first_queued_at: Micros,
    pub event: StoredEvent,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered { status: u16 },
    Retry { at: Micros, status: Option<u16>, error: String },
    GaveUp { status: Option<u16>, error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job store migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("job store is closed")]
    Closed,
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    #[error("job store holds a corrupt row for {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// Persists a new `working` job owned by `instance`, with its creation event. Visible to
    /// `get` once this returns.
    async fn insert(&self, new: Insert<'_>) -> Result<StoredEvent, StoreError>;

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// Counts an attempt (and stamps `started_at` on the first). `None` if no longer `working`.
    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError>;

    /// Moves a `working` job to its outcome and writes the event `composer` makes of it.
    /// `None` if the job had already ended (lost the race).
    async fn finish(
        &self,
        id: &JobId,
        outcome: &Outcome,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError>;

    /// Records a `working` job's latest progress and writes the event `composer` makes of it.
    /// `None` if the job is no longer `working`.
    async fn progress(
        &self,
        id: &JobId,
        progress: &Value,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError>;

    /// Records that `lease.instance` is alive until `lease.until` (creating or renewing it).
    async fn heartbeat(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Ends `instance`'s lease now, so its jobs can be resumed at once (graceful shutdown).
    async fn release(&self, instance: &str) -> Result<(), StoreError>;

    /// Claims for `lease.instance` up to `limit` `working` jobs, oldest first, whose owner has
    /// no lease alive at `now` (it died, shut down, or never heartbeat).
    async fn claim_orphans(
        &self,
        lease: &Lease,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;

    /// Deletes up to `limit` ended jobs that finished before `cutoff`, and events older than it
    /// (several per job, so the event log keeps pace with the jobs).
    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit: usize,
    ) -> Result<Vec<PurgedJob>, StoreError>;

    /// The newest `working` or `completed` job of `owner` with this dedupe key created at or
    /// after `since`. Failed and cancelled jobs never count: asking again means trying again.
    async fn find_duplicate(
        &self,
        owner: &str,
        dedupe_key: &str,
        since: Micros,
    ) -> Result<Option<Job>, StoreError>;

    /// Marks as announced, and returns, up to `limit` completed or failed jobs of this owner and
    /// conversation that were never announced. Each job is returned at most once, ever.
    async fn take_unannounced(
        &self,
        owner: &str,
        conversation: &str,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;

    /// Records that the conversation has been told how the job ended.
    async fn mark_announced(&self, id: &JobId, now: Micros) -> Result<(), StoreError>;

    /// The id of the newest event (0 when there is none): where a live-only stream starts.
    async fn last_event_id(&self) -> Result<i64, StoreError>;

    /// Events of `owner` after event id `after`, oldest first.
    async fn events_after(
        &self,
        owner: &str,
        after: i64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every owner's events with `after < id < before`, oldest first: what an in-process
    /// listener that saw ids skip ahead (a slow publisher, another process) has not seen.
    async fn events_between(
        &self,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every owner's events after `after`, oldest first, each with its job as it is now (`None`
    /// once purged): how an instance learns what other instances committed. Stores that only
    /// one process writes have nothing to tell and keep the default.
    async fn changes_after(
        &self,
        _after: i64,
        _limit: usize,
    ) -> Result<Vec<(StoredEvent, Option<Job>)>, StoreError> {
        Ok(Vec::new())
    }

    /// Changes whenever other processes may have committed events: a wake-up, never data
    /// (read them with [`JobStore::changes_after`]). `None` for a store only one process
    /// writes.
    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Claims up to `limit` pending deliveries due at `now`; each is not due again before
    /// `retry_at` unless settled (so a crash mid-attempt means one more attempt, not none).
    async fn claim_deliveries(
        &self,
        now: Micros,
        retry_at: Micros,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records the outcome of an attempt. Delivered and given-up are final: a late settle of
    /// the same delivery (a slow attempt racing its retry) changes nothing.
    async fn settle_delivery(
        &self,
        id: &str,
        outcome: &DeliveryOutcome,
        now: Micros,
    ) -> Result<(), StoreError>;

    /// Every webhook delivery of the job's events, oldest first.
    async fn deliveries_of(&self, job: &JobId) -> Result<Vec<DeliveryState>, StoreError>;
}
