//! The embedded job store: one SQLite file in the data directory, zero setup.
//!
//! Inserts sit on the `generate_image` reply path, so three things keep them fast:
//! - Writes go through a single connection, queueing in memory instead of spinning on SQLite's
//!   busy handler (which sleeps in whole milliseconds).
//! - Group commit: inserts that arrive while one is being written are coalesced into one
//!   multi-row statement. Each caller still gets its answer only after the commit.
//! - Checkpoints run on their own connection, so the WAL's fsync never lands inside an insert.
//!
//! Reads use a small pool of their own. WAL with `synchronous = NORMAL` survives process
//! crashes; only an OS crash or power cut can lose the last commits.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use sqlx::{
    QueryBuilder, Row, Sqlite,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use tokio::sync::{mpsc, oneshot};

use super::{
    Job, JobError, JobId, JobStatus, Micros, Outcome,
    store::{JobStore, Lease, PurgedJob, StoreError},
};

/// The columns [`to_job`] reads, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, tool, owner, input, status, output, error_code, error_message, attempts, eta_ms, \
         created_at, updated_at, started_at, finished_at"
    };
}

/// The most inserts written by one statement (11 binds each, far below SQLite's limit).
const MAX_BATCH: usize = 256;
/// How often the WAL is folded back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    writer: SqlitePool,
    reader: SqlitePool,
    inserts: mpsc::Sender<PendingInsert>,
    /// Stops the checkpoint task when the store closes.
    closed: Arc<tokio_util::sync::CancellationToken>,
}

#[derive(Debug)]
struct PendingInsert {
    job: Job,
    instance: Arc<str>,
    done: oneshot::Sender<Result<(), StoreError>>,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer =
            SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let closed = Arc::new(tokio_util::sync::CancellationToken::new());
        tokio::spawn(checkpoint(checkpointer, closed.as_ref().clone()));
        let (inserts, pending) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_inserts(writer.clone(), pending));
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

/// The group-commit loop: takes whatever inserts are waiting, writes them in one statement,
/// answers each caller.
async fn write_inserts(writer: SqlitePool, mut pending: mpsc::Receiver<PendingInsert>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match insert_rows(&writer, &batch).await {
            Ok(()) => {
                for insert in batch.drain(..) {
                    let _ = insert.done.send(Ok(()));
                }
            }
            // One bad row (a constraint violation) must not fail its neighbours: retry them
            // one by one. Any other failure would fail each retry the same way, only slower.
            Err(StoreError::Database(sqlx::Error::Database(error)))
                if error.kind() != sqlx::error::ErrorKind::Other =>
            {
                for insert in batch.drain(..) {
                    let result = insert_rows(&writer, std::slice::from_ref(&insert)).await;
                    let _ = insert.done.send(result);
                }
            }
            Err(error) => {
                let reason = error.to_string();
                for insert in batch.drain(..) {
                    let _ = insert.done.send(Err(StoreError::Unavailable(reason.clone())));
                }
            }
        }
    }
}

async fn insert_rows(writer: &SqlitePool, rows: &[PendingInsert]) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO jobs (id, tool, owner, input, status, attempts, eta_ms, created_at, \
         updated_at, lease_owner) ",
    );
    query.push_values(rows, |mut row, PendingInsert { job, instance, .. }| {
        row.push_bind(job.id.as_str().to_owned())
            .push_bind(job.tool.clone())
            .push_bind(job.owner.clone())
            .push_bind(job.input.to_string())
            .push_bind(job.status.as_str())
            .push_bind(i64::from(job.attempts))
            .push_bind(i64::try_from(job.eta_ms).unwrap_or(i64::MAX))
            .push_bind(job.created_at.0)
            .push_bind(job.updated_at.0)
            .push_bind(instance.to_string());
    });
    query.build().execute(writer).await?;
    Ok(())
}

fn to_job(row: &SqliteRow) -> Result<Job, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt { id: id.clone(), reason };
    let status: String = row.try_get("status")?;
    let input: String = row.try_get("input")?;
    let output: Option<String> = row.try_get("output")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    let attempts: i64 = row.try_get("attempts")?;
    let eta_ms: i64 = row.try_get("eta_ms")?;
    Ok(Job {
        id: JobId::parse(&id).ok_or_else(|| corrupt("malformed id".to_owned()))?,
        tool: row.try_get("tool")?,
        owner: row.try_get("owner")?,
        input: serde_json::from_str(&input).map_err(|e| corrupt(format!("input: {e}")))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status}")))?,
        output: output
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| corrupt(format!("output: {e}")))?,
        error: error_code.map(|code| JobError { code, message: error_message.unwrap_or_default() }),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        eta_ms: u64::try_from(eta_ms).unwrap_or(0),
        created_at: Micros(row.try_get("created_at")?),
        updated_at: Micros(row.try_get("updated_at")?),
        started_at: row.try_get::<Option<i64>, _>("started_at")?.map(Micros),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Micros),
    })
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, job: &Job, instance: &str) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        let pending = PendingInsert { job: job.clone(), instance: instance.into(), done };
        self.inserts.send(pending).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(to_job).transpose()
    }

    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE jobs SET attempts = attempts + 1, started_at = COALESCE(started_at, ?1), \
             updated_at = ?1 WHERE id = ?2 AND status = 'working' RETURNING ",
            columns!()
        ))
        .bind(now.0)
        .bind(id.as_str())
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(to_job).transpose()
    }

    async fn finish(
        &self,
        id: &JobId,
        outcome: &Outcome,
        now: Micros,
    ) -> Result<Option<Job>, StoreError> {
        let (output, error) = match outcome {
            Outcome::Completed(output) => (Some(output.to_string()), None),
            Outcome::Failed(error) | Outcome::Cancelled(error) => (None, Some(error)),
        };
        let row = sqlx::query(concat!(
            "UPDATE jobs SET status = ?1, output = ?2, error_code = ?3, error_message = ?4, \
             updated_at = ?5, finished_at = ?5, lease_owner = NULL \
             WHERE id = ?6 AND status = 'working' RETURNING ",
            columns!()
        ))
        .bind(outcome.status().as_str())
        .bind(output)
        .bind(error.map(|e| e.code.as_str()))
        .bind(error.map(|e| e.message.as_str()))
        .bind(now.0)
        .bind(id.as_str())
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(to_job).transpose()
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instances (id, alive_until) VALUES (?, ?) \
             ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until",
        )
        .bind(lease.instance.as_ref())
        .bind(lease.until.0)
        .execute(&self.writer)
        .await?;
        // Rows of processes dead for a day own nothing any more (their jobs were claimed).
        sqlx::query("DELETE FROM instances WHERE alive_until < ?")
            .bind(lease.until.minus(Duration::from_secs(24 * 3600)).0)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn release(&self, instance: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET alive_until = 0 WHERE id = ?")
            .bind(instance)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn claim_orphans(
        &self,
        lease: &Lease,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET lease_owner = ?1 WHERE id IN (\
               SELECT j.id FROM jobs j LEFT JOIN instances i ON i.id = j.lease_owner \
               WHERE j.status = 'working' AND j.lease_owner IS NOT ?1 \
                 AND (i.id IS NULL OR i.alive_until < ?2) \
               ORDER BY j.created_at LIMIT ?3) \
             RETURNING ",
            columns!()
        ))
        .bind(lease.instance.as_ref())
        .bind(now.0)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(to_job).collect()
    }

    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit: usize,
    ) -> Result<Vec<PurgedJob>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM jobs WHERE id IN (\
               SELECT id FROM jobs WHERE status <> 'working' AND finished_at < ? LIMIT ?) \
             RETURNING id, tool",
        )
        .bind(cutoff.0)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let parsed = JobId::parse(&id).ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    reason: "malformed id".to_owned(),
                })?;
                Ok(PurgedJob { id: parsed, tool: row.try_get("tool")? })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
