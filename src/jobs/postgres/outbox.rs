//! The event log and the webhook outbox in PostgreSQL: events take their ids under the
//! `event_ids` row lock (so ids follow commit order across instances), deliveries are queued in
//! the same transaction and claimed with `SKIP LOCKED` by one dispatcher at a time.

use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use super::listen::CHANNEL;
use crate::jobs::{
    Job, JobId, Micros,
    events::{NewEvent, StoredEvent},
    row::{ClaimedRow, EVENT_COLUMNS, job_columns, limit, to_event, to_job, with_events},
    store::{DueDelivery, StoreError},
};

/// Appends events (and their deliveries) inside `transaction`, each stamped with the time `at`
/// gives its job. Call it last before committing: from here to the commit this transaction
/// holds the lock every event writer needs.
pub(super) async fn append(
    transaction: &mut Transaction<'_, Postgres>,
    items: &[(&Job, &NewEvent)],
    at: impl Fn(&Job) -> Micros,
) -> Result<Vec<StoredEvent>, StoreError> {
    let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
    // The notification is delivered only if and when this transaction commits; it is a hint
    // to look, never the event itself.
    let last: i64 = sqlx::query_scalar(
        "WITH taken AS (UPDATE event_ids SET last_id = last_id + $1 RETURNING last_id) \
         SELECT last_id FROM taken, LATERAL pg_notify($2, last_id::text)",
    )
    .bind(count)
    .bind(CHANNEL)
    .fetch_one(&mut **transaction)
    .await?;
    let stored: Vec<StoredEvent> = items
        .iter()
        .zip(last - count + 1..)
        .map(|((job, event), id)| StoredEvent {
            id,
            job_id: job.id.clone(),
            owner: job.owner.clone(),
            conversation: job.context.conversation.clone(),
            kind: event.kind.clone(),
            payload: event.payload.clone(),
            created_at: at(job),
        })
        .collect();
    let mut query = QueryBuilder::<Postgres>::new(
        "INSERT INTO events (id, job_id, owner, conversation, kind, payload, created_at) ",
    );
    query.push_values(&stored, |mut row, event| {
        row.push_bind(event.id)
            .push_bind(event.job_id.as_str().to_owned())
            .push_bind(event.owner.clone())
            .push_bind(event.conversation.clone())
            .push_bind(event.kind.clone())
            .push_bind(event.payload.to_string())
            .push_bind(event.created_at.0);
    });
    query.build().execute(&mut **transaction).await?;
    let deliveries: Vec<(&StoredEvent, &str)> = stored
        .iter()
        .zip(items)
        .flat_map(|(stored, (_, event))| {
            event.webhooks.iter().map(move |url| (stored, url.as_str()))
        })
        .collect();
    if !deliveries.is_empty() {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO deliveries (id, event_id, job_id, endpoint, status, next_attempt_at, \
             created_at, updated_at) ",
        );
        query.push_values(deliveries, |mut row, (event, endpoint)| {
            let id = format!("msg_{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
            row.push_bind(id)
                .push_bind(event.id)
                .push_bind(event.job_id.as_str().to_owned())
                .push_bind(endpoint.to_owned())
                .push_bind("pending")
                .push_bind(event.created_at.0)
                .push_bind(event.created_at.0)
                .push_bind(event.created_at.0);
        });
        query.build().execute(&mut **transaction).await?;
    }
    Ok(stored)
}

/// Every owner's events after `after`, each with its job as it is now (`None` once purged).
pub(super) async fn changes_after(
    pool: &PgPool,
    after: i64,
    limit_to: usize,
) -> Result<Vec<(StoredEvent, Option<Job>)>, StoreError> {
    let events = super::shared::events_between(pool, after, i64::MAX, limit_to).await?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = events.iter().map(|event| event.job_id.as_str().to_owned()).collect();
    let rows = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ANY($1)"))
        .bind(ids)
        .fetch_all(pool)
        .await?;
    let jobs: std::collections::HashMap<JobId, Job> = rows
        .iter()
        .map(|row| to_job(row).map(|job| (job.id.clone(), job)))
        .collect::<Result<_, _>>()?;
    Ok(events
        .into_iter()
        .map(|event| {
            let job = jobs.get(&event.job_id).cloned();
            (event, job)
        })
        .collect())
}

pub(super) async fn purge_events_before(
    pool: &PgPool,
    cutoff: Micros,
    limit_to: usize,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "WITH picked AS MATERIALIZED (SELECT id FROM events WHERE created_at < $1 LIMIT $2 \
         FOR UPDATE SKIP LOCKED) DELETE FROM events USING picked WHERE events.id = picked.id",
    )
    .bind(cutoff.0)
    .bind(limit(limit_to))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn claim_deliveries(
    pool: &PgPool,
    now: Micros,
    retry_at: Micros,
    limit_to: usize,
) -> Result<Vec<DueDelivery>, StoreError> {
    // SKIP LOCKED: every instance's dispatcher may look at once; each delivery goes to one.
    // (A materialised CTE: an `IN (… LIMIT n)` subquery of an UPDATE may run more than once.)
    let query = "WITH picked AS MATERIALIZED (SELECT id FROM deliveries WHERE status = 'pending' \
           AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = $2, \
           updated_at = $1 FROM picked WHERE d.id = picked.id \
           AND d.status = 'pending' AND d.next_attempt_at <= $1 \
         RETURNING d.id, d.event_id, d.endpoint, d.attempts, d.created_at";
    let claimed: Vec<ClaimedRow> = sqlx::query_as(query)
        .bind(now.0)
        .bind(retry_at.0)
        .bind(limit(limit_to))
        .fetch_all(pool)
        .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let event_ids: Vec<i64> = claimed.iter().map(|row| row.event_id).collect();
    let query = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1)");
    let events = sqlx::query(sqlx::AssertSqlSafe(query)).bind(event_ids).fetch_all(pool).await?;
    let events = events.iter().map(to_event).collect::<Result<_, _>>()?;
    Ok(with_events(claimed, events))
}
