//! The job store trait: the single source of truth for job state, behind which SQLite today
//! and a shared PostgreSQL store tomorrow sit without tools, providers or MCP noticing.
//!
//! Every state change is a compare-and-set from `working`, so a cancel racing a completion
//! resolves to exactly one outcome whichever process or task gets there first.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use super::{Job, JobId, Micros, Outcome};

/// A claim on running jobs by one process until a point in time.
///
/// A process renews its lease while it lives; when it dies the lease expires and another
/// process (or the same one, restarted) resumes the job. This is what makes jobs survive
/// crashes without ever being run by two processes at once.
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
    #[error("job store holds a corrupt row for job {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// Persists a new `working` job claimed by `lease`. Visible to `get` once this returns.
    async fn insert(&self, job: &Job, lease: &Lease) -> Result<(), StoreError>;

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

    /// Extends the leases this instance holds on `ids` (the jobs it is driving) to `lease.until`.
    async fn renew_leases(&self, lease: &Lease, ids: &[JobId]) -> Result<u64, StoreError>;

    /// Lets other processes resume this instance's jobs at once (graceful shutdown).
    async fn release_leases(&self, instance: &str) -> Result<u64, StoreError>;

    /// Claims up to `limit` `working` jobs whose lease expired before `now`.
    async fn claim_expired(
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
