//! The statements both SQL stores run word for word, written once. Their SQL uses `$n`
//! placeholders, which SQLite reads as well as PostgreSQL; [`statements!`] expands them in
//! each store for its own database, because one generic function over sqlx's `Database`
//! would need a bound per bound type and per executor, repeated on every function.
//!
//! What differs between the databases stays in each store: inserts and event ids, claims
//! (`SKIP LOCKED`), purges and announcements.

macro_rules! statements {
    ($db:ty) => {
        use $crate::jobs::{
            Job, JobId, Micros, Outcome,
            events::StoredEvent,
            row::{
                delivery_columns, event_columns, job_columns, limit, outcome_columns, to_delivery,
                to_event, to_job,
            },
            store::{DeliveryOutcome, DeliveryState, EventFilter, Lease, StoreError},
        };

        type Pool = sqlx::Pool<$db>;
        /// A statement answering at most one job's row; an update among them is run by the
        /// store with its event.
        pub(super) type Update<'q> =
            sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>;

        /// The job `query` answers, if any.
        async fn one_job(query: Update<'_>, pool: &Pool) -> Result<Option<Job>, StoreError> {
            query.fetch_optional(pool).await?.as_ref().map(to_job).transpose()
        }

        pub(super) async fn get(pool: &Pool, id: &JobId) -> Result<Option<Job>, StoreError> {
            let query = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
            one_job(sqlx::query(query).bind(id.as_str()), pool).await
        }

        pub(super) async fn start_attempt(
            pool: &Pool,
            id: &JobId,
            now: Micros,
        ) -> Result<Option<Job>, StoreError> {
            let query = sqlx::query(concat!(
                "UPDATE jobs SET attempts = attempts + 1, started_at = COALESCE(started_at, $1), \
                 updated_at = $1 WHERE id = $2 AND status = 'working' RETURNING ",
                job_columns!()
            ));
            one_job(query.bind(now.0).bind(id.as_str()), pool).await
        }

        /// Moves a `working` job to `outcome`.
        pub(super) fn finish<'q>(id: &'q JobId, outcome: &'q Outcome, now: Micros) -> Update<'q> {
            let (output, error) = outcome_columns(outcome);
            sqlx::query(concat!(
                "UPDATE jobs SET status = $1, output = $2, error_code = $3, error_message = $4, \
                 updated_at = $5, finished_at = $5, lease_owner = NULL \
                 WHERE id = $6 AND status = 'working' RETURNING ",
                job_columns!()
            ))
            .bind(outcome.status().as_str())
            .bind(output)
            .bind(error.map(|e| e.code.as_str()))
            .bind(error.map(|e| e.message.as_str()))
            .bind(now.0)
            .bind(id.as_str())
        }

        /// Records a `working` job's latest progress.
        pub(super) fn progress<'q>(
            id: &'q JobId,
            progress: &serde_json::Value,
            now: Micros,
        ) -> Update<'q> {
            sqlx::query(concat!(
                "UPDATE jobs SET progress = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'working' RETURNING ",
                job_columns!()
            ))
            .bind(progress.to_string())
            .bind(now.0)
            .bind(id.as_str())
        }

        pub(super) async fn heartbeat(pool: &Pool, lease: &Lease) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO instances (id, alive_until) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until",
            )
            .bind(lease.instance.as_ref())
            .bind(lease.until.0)
            .execute(pool)
            .await?;
            // Rows of instances dead for a day own nothing any more (their jobs were claimed).
            sqlx::query("DELETE FROM instances WHERE alive_until < $1")
                .bind(lease.until.minus(std::time::Duration::from_secs(24 * 3600)).0)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn release(pool: &Pool, instance: &str) -> Result<(), StoreError> {
            sqlx::query("UPDATE instances SET alive_until = 0 WHERE id = $1")
                .bind(instance)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn find_duplicate(
            pool: &Pool,
            owner: &str,
            dedupe_key: &str,
            since: Micros,
        ) -> Result<Option<Job>, StoreError> {
            let query = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE dedupe_key = $1 AND owner = $2 AND created_at >= $3 \
                  AND status IN ('working', 'completed') ORDER BY created_at DESC LIMIT 1"
            ));
            one_job(query.bind(dedupe_key).bind(owner).bind(since.0), pool).await
        }

        pub(super) async fn mark_announced(
            pool: &Pool,
            id: &JobId,
            now: Micros,
        ) -> Result<(), StoreError> {
            sqlx::query("UPDATE jobs SET announced_at = $1 WHERE id = $2 AND announced_at IS NULL")
                .bind(now.0)
                .bind(id.as_str())
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn events_after(
            pool: &Pool,
            owner: &str,
            after: i64,
            filter: &EventFilter,
            limit_to: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            // The casts give PostgreSQL the parameters' type when they are NULL.
            let rows = sqlx::query(concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE owner = $1 AND id > $2 \
                 AND (CAST($3 AS TEXT) IS NULL OR conversation = $3) \
                 AND (CAST($4 AS TEXT) IS NULL OR job_id = $4) ORDER BY id LIMIT $5"
            ))
            .bind(owner)
            .bind(after)
            .bind(filter.conversation.as_deref())
            .bind(filter.job.as_ref().map(JobId::as_str))
            .bind(limit(limit_to))
            .fetch_all(pool)
            .await?;
            rows.iter().map(to_event).collect()
        }

        pub(super) async fn events_between(
            pool: &Pool,
            after: i64,
            before: i64,
            limit_to: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            let rows = sqlx::query(concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3"
            ))
            .bind(after)
            .bind(before)
            .bind(limit(limit_to))
            .fetch_all(pool)
            .await?;
            rows.iter().map(to_event).collect()
        }

        pub(super) async fn settle_delivery(
            pool: &Pool,
            id: &str,
            outcome: &DeliveryOutcome,
            now: Micros,
        ) -> Result<(), StoreError> {
            let query = match outcome {
                DeliveryOutcome::Delivered { status } => sqlx::query(
                    "UPDATE deliveries SET status = 'delivered', last_status = $1, \
                     last_error = NULL, delivered_at = $2, updated_at = $2 \
                     WHERE id = $3 AND status = 'pending'",
                )
                .bind(i64::from(*status))
                .bind(now.0)
                .bind(id),
                DeliveryOutcome::Retry { at, status, error } => sqlx::query(
                    "UPDATE deliveries SET next_attempt_at = $1, last_status = $2, \
                     last_error = $3, updated_at = $4 WHERE id = $5 AND status = 'pending'",
                )
                .bind(at.0)
                .bind(status.map(i64::from))
                .bind(error.as_str())
                .bind(now.0)
                .bind(id),
                DeliveryOutcome::GaveUp { status, error } => sqlx::query(
                    "UPDATE deliveries SET status = 'failed', last_status = $1, last_error = $2, \
                     updated_at = $3 WHERE id = $4 AND status = 'pending'",
                )
                .bind(status.map(i64::from))
                .bind(error.as_str())
                .bind(now.0)
                .bind(id),
            };
            query.execute(pool).await?;
            Ok(())
        }

        pub(super) async fn deliveries_of(
            pool: &Pool,
            job: &JobId,
        ) -> Result<Vec<DeliveryState>, StoreError> {
            let rows = sqlx::query(concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM deliveries WHERE job_id = $1 ORDER BY created_at, endpoint"
            ))
            .bind(job.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter().map(|row| to_delivery(row, job)).collect()
        }
    };
}

pub(super) use statements;
