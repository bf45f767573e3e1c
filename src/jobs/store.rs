//! The job store trait: the single source of truth for job state, behind which SQLite today
//! and a shared PostgreSQL store tomorrow sit without tools, providers or MCP noticing.
//!
//! Every state change is a compare-and-set from `working`, so a cancel racing a completion
//! resolves to exactly one outcome whichever process or task gets there first.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use super::{Job, JobId, Micros, Outcome};

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
    #[error("job store holds a corrupt row for job {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// Persists a new `working` job owned by `instance`. Visible to `get` once this returns.
    async fn insert(&self, job: &Job, instance: &str) -> Result<(), StoreError>;

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// Counts an attempt (and stamps `started_at` on the first). `None` if no longer `working`.
    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError>;

    /// Moves a `working` job to its outcome. `None` if it had already ended (lost the race).
    async fn finish(
        &self,
        id: &JobId,
        outcome: &Outcome,
        now: Micros,
    ) -> Result<Option<Job>, StoreError>;

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

    /// Deletes up to `limit` ended jobs that finished before `cutoff`.
    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit: usize,
    ) -> Result<Vec<PurgedJob>, StoreError>;
}
