//! The shared job store: one PostgreSQL database that every instance of a deployment reads and
//! writes, so any instance answers for any job, takes over the jobs of one that died, and
//! streams every instance's events in one order.
//!
//! The same tables as the embedded store (`migrations/postgres/`), with what many writers need:
//! - Event ids in commit order: each transaction that writes events takes its ids by updating
//!   the one row of `event_ids`, whose lock it holds until it commits (`outbox.rs`).
//! - Claims that never wait on each other: orphaned jobs, webhook deliveries, announcements and
//!   retention take rows with `FOR UPDATE SKIP LOCKED`, so two instances never take one row.
//! - Cross-instance wake-ups: every event transaction sends `NOTIFY offstage_events` (delivered
//!   at commit); `listen.rs` turns them into wake-ups for the follower (`jobs/follow.rs`), which
//!   reads the events themselves from the table. A notification carries nothing that is not
//!   in the tables, so one lost while the listener reconnects costs a poll interval, no data.
//!
//! Inserts use the same group commit as SQLite (`jobs/batch.rs`).

mod listen;
mod outbox;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{
    ConnectOptions,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres},
};
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::settings::redacted;

use super::{
    Job, JobId, Micros, Outcome,
    batch::{MAX_BATCH, PendingInsert, WriteBatch, insert_jobs, queue, write_inserts},
    events::{EventComposer, JobChange, NewEvent, StoredEvent},
    row::{job_columns, limit, to_job, to_purged},
    store::{
        DeliveryOutcome, DeliveryState, DueDelivery, EventFilter, Insert, JobStore, Lease,
        PurgedJob, StoreError,
    },
};

/// Connections per instance: enough for concurrent calls and job writes, few enough that a
/// dozen instances stay far below PostgreSQL's default `max_connections` (100).
const POOL_SIZE: u32 = 8;

/// Events removed per purged job allowed, at most, in one retention pass.
const EVENTS_PER_PURGED_JOB: usize = 8;

#[derive(Debug, Clone)]
pub struct PgJobStore {
    pub(super) pool: PgPool,
    inserts: mpsc::Sender<PendingInsert>,
    wakeups: watch::Receiver<u64>,
    closed: tokio_util::sync::CancellationToken,
}

impl PgJobStore {
    /// Connects, brings the schema up to date (safely when other instances start at once) and
    /// starts listening for other instances' events.
    pub async fn open(url: &Url) -> Result<PgJobStore, StoreError> {
        let options = PgConnectOptions::from_url(url)?
            .application_name("offstage")
            // An operator's log is not a query log.
            .disable_statement_logging();
        // One connection first, so that a wrong address, database or role is reported as
        // itself rather than as a pool that timed out.
        let probe = options.connect().await.map_err(|error| {
            StoreError::Unavailable(format!("cannot connect to {}: {error}", redacted(url)))
        })?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        super::migrations::postgres().run(&pool).await?;
        let closed = tokio_util::sync::CancellationToken::new();
        let wakeups = listen::start(options, closed.clone()).await?;
        let (inserts, pending) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_inserts(PgBatch(pool.clone()), pending));
        Ok(PgJobStore { pool, inserts, wakeups, closed })
    }

    pub async fn close(&self) {
        self.closed.cancel();
        self.pool.close().await;
    }
}

impl PgJobStore {
    /// Runs `update` (an UPDATE of one working job, RETURNING its columns) and appends the
    /// event `composer` makes of the change, in one transaction. `None` when no working job
    /// matched (it had ended: the compare-and-set lost).
    async fn change_with_event(
        &self,
        update: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        change: JobChange,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let Some(row) = update.fetch_optional(&mut *transaction).await? else { return Ok(None) };
        let job = to_job(&row)?;
        let event = composer.compose(change, &job);
        let mut stored = outbox::append(&mut transaction, &[(&job, &event)], |_| now).await?;
        transaction.commit().await?;
        Ok(Some((job, stored.remove(0))))
    }
}

/// The pool that batches of inserts go through.
#[derive(Debug)]
struct PgBatch(PgPool);

#[async_trait]
impl WriteBatch for PgBatch {
    async fn write(&self, rows: &[PendingInsert]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut transaction = self.0.begin().await?;
        insert_jobs::<Postgres>(rows).build().execute(&mut *transaction).await?;
        let items: Vec<(&Job, &NewEvent)> = rows.iter().map(|row| (&row.job, &row.event)).collect();
        let events = outbox::append(&mut transaction, &items, |job| job.created_at).await?;
        transaction.commit().await?;
        Ok(events)
    }
}

// The statements both stores run as they are.
mod shared {
    crate::jobs::statements::statements!(sqlx::Postgres);
}

#[async_trait]
impl JobStore for PgJobStore {
    async fn insert(&self, new: Insert<'_>) -> Result<StoredEvent, StoreError> {
        queue(&self.inserts, new).await
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        shared::get(&self.pool, id).await
    }

    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError> {
        shared::start_attempt(&self.pool, id, now).await
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
        shared::heartbeat(&self.pool, lease).await
    }

    async fn release(&self, instance: &str) -> Result<(), StoreError> {
        shared::release(&self.pool, instance).await
    }

    async fn claim_orphans(
        &self,
        lease: &Lease,
        now: Micros,
        limit_to: usize,
    ) -> Result<Vec<Job>, StoreError> {
        // Two steps, so that each job goes to one instance even when several look at once:
        // `seen` picks orphans as this statement's snapshot shows them, with their owner then;
        // `locked` takes those still owned by that same owner (rechecked on the newest row,
        // since FOR UPDATE follows a concurrent claim) and skips rows another claim holds.
        // Comparing owners rather than asking again whether the owner is alive matters: an
        // instance that just started may have claimed a job with a heartbeat this snapshot
        // predates. The CTEs are materialised: PostgreSQL may run an `IN (… LIMIT n)` subquery
        // of an UPDATE more than once, taking more than n rows.
        let rows = sqlx::query(concat!(
            "WITH seen AS MATERIALIZED (\
               SELECT j.id AS seen_id, j.lease_owner AS seen_owner \
               FROM jobs j LEFT JOIN instances i ON i.id = j.lease_owner \
               WHERE j.status = 'working' AND j.lease_owner IS DISTINCT FROM $1 \
                 AND (i.id IS NULL OR i.alive_until < $2) \
               ORDER BY j.created_at LIMIT $3), \
             locked AS MATERIALIZED (\
               SELECT jobs.id AS locked_id, seen.seen_owner AS locked_owner FROM jobs \
               JOIN seen ON jobs.id = seen.seen_id \
               WHERE jobs.status = 'working' \
                 AND jobs.lease_owner IS NOT DISTINCT FROM seen.seen_owner \
               FOR UPDATE OF jobs SKIP LOCKED) \
             UPDATE jobs SET lease_owner = $1 FROM locked WHERE jobs.id = locked.locked_id \
             AND jobs.status = 'working' AND jobs.lease_owner IS NOT DISTINCT FROM locked.locked_owner \
             RETURNING ",
            job_columns!()
        ))
        .bind(lease.instance.as_ref())
        .bind(now.0)
        .bind(limit(limit_to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(to_job).collect()
    }

    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit_to: usize,
    ) -> Result<Vec<PurgedJob>, StoreError> {
        let rows = sqlx::query(
            "WITH picked AS MATERIALIZED (\
               SELECT id FROM jobs WHERE status <> 'working' AND finished_at < $1 \
               LIMIT $2 FOR UPDATE SKIP LOCKED) \
             DELETE FROM jobs USING picked WHERE jobs.id = picked.id \
             RETURNING jobs.id, jobs.tool",
        )
        .bind(cutoff.0)
        .bind(limit(limit_to))
        .fetch_all(&self.pool)
        .await?;
        let events = limit_to.saturating_mul(EVENTS_PER_PURGED_JOB);
        outbox::purge_events_before(&self.pool, cutoff, events).await?;
        rows.iter().map(to_purged).collect()
    }

    async fn find_duplicate(
        &self,
        owner: &str,
        dedupe_key: &str,
        since: Micros,
    ) -> Result<Option<Job>, StoreError> {
        shared::find_duplicate(&self.pool, owner, dedupe_key, since).await
    }

    async fn take_unannounced(
        &self,
        owner: &str,
        conversation: &str,
        now: Micros,
        limit_to: usize,
    ) -> Result<Vec<Job>, StoreError> {
        // Most calls have nothing to announce: find that out with a read, not a write.
        let pending: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE owner = $1 AND conversation = $2 AND announced_at IS NULL \
             AND status IN ('completed', 'failed') LIMIT 1",
        )
        .bind(owner)
        .bind(conversation)
        .fetch_optional(&self.pool)
        .await?;
        if pending.is_none() {
            return Ok(Vec::new());
        }
        // Two calls of one conversation on two instances: each job goes to exactly one.
        let rows = sqlx::query(concat!(
            "WITH picked AS MATERIALIZED (\
               SELECT id AS picked_id FROM jobs WHERE owner = $2 AND conversation = $3 \
               AND announced_at IS NULL AND status IN ('completed', 'failed') \
               ORDER BY finished_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET announced_at = $1 FROM picked WHERE jobs.id = picked.picked_id \
             AND jobs.announced_at IS NULL RETURNING ",
            job_columns!()
        ))
        .bind(now.0)
        .bind(owner)
        .bind(conversation)
        .bind(limit(limit_to))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows.iter().map(to_job).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|job| job.finished_at);
        Ok(jobs)
    }

    async fn mark_announced(&self, id: &JobId, now: Micros) -> Result<(), StoreError> {
        shared::mark_announced(&self.pool, id, now).await
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT last_id FROM event_ids").fetch_one(&self.pool).await?)
    }

    async fn events_after(
        &self,
        owner: &str,
        after: i64,
        filter: &EventFilter,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        shared::events_after(&self.pool, owner, after, filter, limit_to).await
    }

    async fn events_between(
        &self,
        after: i64,
        before: i64,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        shared::events_between(&self.pool, after, before, limit_to).await
    }

    async fn changes_after(
        &self,
        after: i64,
        limit_to: usize,
    ) -> Result<Vec<(StoredEvent, Option<Job>)>, StoreError> {
        outbox::changes_after(&self.pool, after, limit_to).await
    }

    fn wakeups(&self) -> Option<watch::Receiver<u64>> {
        Some(self.wakeups.clone())
    }

    async fn claim_deliveries(
        &self,
        now: Micros,
        retry_at: Micros,
        limit_to: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        outbox::claim_deliveries(&self.pool, now, retry_at, limit_to).await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        outcome: &DeliveryOutcome,
        now: Micros,
    ) -> Result<(), StoreError> {
        shared::settle_delivery(&self.pool, id, outcome, now).await
    }

    async fn deliveries_of(&self, job: &JobId) -> Result<Vec<DeliveryState>, StoreError> {
        shared::deliveries_of(&self.pool, job).await
    }
}

#[cfg(test)]
mod tests;
