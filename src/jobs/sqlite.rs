//! The embedded job store: one SQLite file in the data directory, zero setup.
//!
//! Writes go through a single connection so they queue in memory instead of spinning on
//! SQLite's busy handler (which sleeps in whole milliseconds and would spoil the reply
//! latency of `generate_image`); reads use a small pool of their own. WAL with
//! `synchronous = NORMAL` survives process crashes; only an OS crash or power cut can lose
//! the last commits.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

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

#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    writer: SqlitePool,
    reader: SqlitePool,
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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteJobStore { writer, reader })
    }

    /// Closes both pools, flushing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
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
    async fn insert(&self, job: &Job, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (id, tool, owner, input, status, attempts, eta_ms, created_at, \
             updated_at, lease_owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id.as_str())
        .bind(&job.tool)
        .bind(&job.owner)
        .bind(job.input.to_string())
        .bind(job.status.as_str())
        .bind(i64::from(job.attempts))
        .bind(i64::try_from(job.eta_ms).unwrap_or(i64::MAX))
        .bind(job.created_at.0)
        .bind(job.updated_at.0)
        .bind(lease.instance.as_ref())
        .bind(lease.until.0)
        .execute(&self.writer)
        .await?;
        Ok(())
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
             updated_at = ?5, finished_at = ?5, lease_owner = NULL, lease_until = NULL \
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

    async fn renew_leases(&self, lease: &Lease, ids: &[JobId]) -> Result<u64, StoreError> {
        // One JSON array bind instead of a variable-length IN list: any number of ids, one
        // prepared statement.
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = ? WHERE status = 'working' AND lease_owner = ? \
             AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(lease.until.0)
        .bind(lease.instance.as_ref())
        .bind(ids)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn release_leases(&self, instance: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = 0 WHERE status = 'working' AND lease_owner = ?",
        )
        .bind(instance)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn claim_expired(
        &self,
        lease: &Lease,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET lease_owner = ?1, lease_until = ?2 WHERE id IN (\
               SELECT id FROM jobs WHERE status = 'working' AND COALESCE(lease_until, 0) < ?3 \
               ORDER BY created_at LIMIT ?4) \
             RETURNING ",
            columns!()
        ))
        .bind(lease.instance.as_ref())
        .bind(lease.until.0)
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
