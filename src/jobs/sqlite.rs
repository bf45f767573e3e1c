//! The embedded job store: one SQLite file in the data directory, zero setup.
//!
//! Inserts sit on the `generate_image` reply path, so three things keep them fast:
//! - Writes go through a single connection, queueing in memory instead of spinning on SQLite's
//!   busy handler (which sleeps in whole milliseconds).
//! - Group commit (`jobs/batch.rs`): inserts that arrive while one is being written are coalesced
//!   into one transaction. Each caller still gets its answer only after the commit.
//! - Checkpoints run on their own connection, so the WAL's fsync never lands inside an insert.
//!
//! Reads use a small pool of their own. WAL with `synchronous = NORMAL` survives process
//! crashes; only an OS crash or power cut can lose the last commits. The single writer also
//! makes event ids increase in commit order, which is what lets a stream resume by id.

mod batch;
mod outbox;

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::mpsc;

use super::{
    Job, JobId, Micros, Outcome,
    batch::{MAX_BATCH, PendingInsert, queue, write_inserts},
    events::{EventComposer, JobChange, StoredEvent},
    row::{job_columns, limit, to_job, to_purged},
    store::{
        DeliveryOutcome, DeliveryState, DueDelivery, EventFilter, Insert, JobStore, Lease,
        PurgedJob, StoreError,
    },
};

/// How often the WAL is folded back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Events removed per purged job allowed, at most, in one retention pass.
const EVENTS_PER_PURGED_JOB: usize = 8;

#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    inserts: mpsc::Sender<PendingInsert>,
    /// Stops the checkpoint task when the store closes.
    closed: Arc<tokio_util::sync::CancellationToken>,
}

impl SqliteJobStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteJobStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // A connection to a local file cannot go stale, so acquiring one skips sqlx's ping: a
        // round trip to the connection's thread that would cost every query about as much as
        // the query itself.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        super::migrations::sqlite().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let closed = Arc::new(tokio_util::sync::CancellationToken::new());
        tokio::spawn(checkpoint(checkpointer, closed.as_ref().clone()));
        let (inserts, pending) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_inserts(batch::SqliteBatch(writer.clone()), pending));
        Ok(SqliteJobStore { writer, reader, inserts, closed })
    }

    /// Closes the pools; the database is checkpointed on the way out.
    pub async fn close(&self) {
        self.closed.cancel();
        self.reader.close().await;
        if let Err(error) =
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await
        {
            tracing::debug!(%error, "final checkpoint failed");
        }
        self.writer.close().await;
    }

    /// Runs `update` (an `UPDATE … RETURNING` of one job's columns) and, if it matched, the
    /// event `composer` makes of the change, in one transaction.
    async fn change_with_event(
        &self,
        update: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        change: JobChange,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        let mut transaction = self.writer.begin().await?;
        let Some(row) = update.fetch_optional(&mut *transaction).await? else { return Ok(None) };
        let job = to_job(&row)?;
        let event = composer.compose(change, &job);
        let stored = outbox::append(&mut transaction, &job, event, now).await?;
        transaction.commit().await?;
        Ok(Some((job, stored)))
    }
}

/// Folds the WAL into the database file regularly, on a connection of its own.
async fn checkpoint(pool: SqlitePool, closed: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = closed.cancelled() => break,
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        // PASSIVE never waits for, nor blocks, the writer.
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(%error, "checkpoint failed");
        }
    }
    pool.close().await;
}

// The statements both stores run as they are.
mod shared {
    crate::jobs::statements::statements!(sqlx::Sqlite);
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, new: Insert<'_>) -> Result<StoredEvent, StoreError> {
        queue(&self.inserts, new).await
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        shared::get(&self.reader, id).await
    }

    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError> {
        shared::start_attempt(&self.writer, id, now).await
    }

    async fn finish(
        &self,
        id: &JobId,
        outcome: &Outcome,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        self.change_with_event(shared::finish(id, outcome, now), JobChange::Ended, now, composer)
            .await
    }

    async fn progress(
        &self,
        id: &JobId,
        progress: &serde_json::Value,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        let update = shared::progress(id, progress, now);
        self.change_with_event(update, JobChange::Progress, now, composer).await
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<(), StoreError> {
        shared::heartbeat(&self.writer, lease).await
    }

    async fn release(&self, instance: &str) -> Result<(), StoreError> {
        shared::release(&self.writer, instance).await
    }

    async fn claim_orphans(
        &self,
        lease: &Lease,
        now: Micros,
        limit_to: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET lease_owner = ?1 WHERE id IN (\
               SELECT j.id FROM jobs j LEFT JOIN instances i ON i.id = j.lease_owner \
               WHERE j.status = 'working' AND j.lease_owner IS NOT ?1 \
                 AND (i.id IS NULL OR i.alive_until < ?2) \
               ORDER BY j.created_at LIMIT ?3) \
             RETURNING ",
            job_columns!()
        ))
        .bind(lease.instance.as_ref())
        .bind(now.0)
        .bind(limit(limit_to))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(to_job).collect()
    }

    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit_to: usize,
    ) -> Result<Vec<PurgedJob>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM jobs WHERE id IN (\
               SELECT id FROM jobs WHERE status <> 'working' AND finished_at < ? LIMIT ?) \
             RETURNING id, tool",
        )
        .bind(cutoff.0)
        .bind(limit(limit_to))
        .fetch_all(&self.writer)
        .await?;
        // A job leaves at least two events (created, ended) and progress may add more: the
        // event log gets a larger share so it never falls behind the jobs it describes.
        let events = limit_to.saturating_mul(EVENTS_PER_PURGED_JOB);
        outbox::purge_events_before(&self.writer, cutoff, events).await?;
        rows.iter().map(to_purged).collect()
    }

    async fn find_duplicate(
        &self,
        owner: &str,
        dedupe_key: &str,
        since: Micros,
    ) -> Result<Option<Job>, StoreError> {
        shared::find_duplicate(&self.reader, owner, dedupe_key, since).await
    }

    async fn take_unannounced(
        &self,
        owner: &str,
        conversation: &str,
        now: Micros,
        limit_to: usize,
    ) -> Result<Vec<Job>, StoreError> {
        // Most calls have nothing to announce: find that out with a read, not a write.
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE owner = ? AND conversation = ? AND announced_at IS NULL \
             AND status IN ('completed', 'failed') LIMIT 1",
        )
        .bind(owner)
        .bind(conversation)
        .fetch_optional(&self.reader)
        .await?;
        if pending.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET announced_at = ?1 WHERE id IN (\
               SELECT id FROM jobs WHERE owner = ?2 AND conversation = ?3 \
               AND announced_at IS NULL AND status IN ('completed', 'failed') \
               ORDER BY finished_at LIMIT ?4) \
             RETURNING ",
            job_columns!()
        ))
        .bind(now.0)
        .bind(owner)
        .bind(conversation)
        .bind(limit(limit_to))
        .fetch_all(&self.writer)
        .await?;
        let mut jobs = rows.iter().map(to_job).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|job| job.finished_at);
        Ok(jobs)
    }

    async fn mark_announced(&self, id: &JobId, now: Micros) -> Result<(), StoreError> {
        shared::mark_announced(&self.writer, id, now).await
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        // sqlite_sequence also remembers ids of events since purged, unlike MAX(id).
        let last: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                .fetch_optional(&self.reader)
                .await?;
        Ok(last.unwrap_or(0))
    }

    async fn events_after(
        &self,
        owner: &str,
        after: i64,
        filter: &EventFilter,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        shared::events_after(&self.reader, owner, after, filter, limit_to).await
    }

    async fn events_between(
        &self,
        after: i64,
        before: i64,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        shared::events_between(&self.reader, after, before, limit_to).await
    }

    async fn claim_deliveries(
        &self,
        now: Micros,
        retry_at: Micros,
        limit_to: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        outbox::claim_deliveries(&self.writer, now, retry_at, limit_to).await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        outcome: &DeliveryOutcome,
        now: Micros,
    ) -> Result<(), StoreError> {
        shared::settle_delivery(&self.writer, id, outcome, now).await
    }

    async fn deliveries_of(&self, job: &JobId) -> Result<Vec<DeliveryState>, StoreError> {
        shared::deliveries_of(&self.reader, job).await
    }
}
