//! The event log and the webhook outbox in SQLite: events appended in the transaction of the
//! change they describe, deliveries queued with them, claimed and settled by the dispatcher.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction, sqlite::SqliteRow};

use crate::jobs::{
    Job, Micros,
    events::{NewEvent, StoredEvent},
    row::{CLAIMED_COLUMNS, ClaimedRow, EVENT_COLUMNS, limit, to_event, with_events},
    store::{DueDelivery, StoreError},
};

/// Appends one event (and its deliveries) inside `transaction`.
pub(super) async fn append(
    transaction: &mut Transaction<'_, Sqlite>,
    job: &Job,
    event: NewEvent,
    now: Micros,
) -> Result<StoredEvent, StoreError> {
    let mut events = append_at(transaction, &[(job, &event)], |_| now).await?;
    Ok(events.remove(0))
}

/// Appends the creation events of freshly inserted jobs (stamped with their creation time).
pub(super) async fn append_many(
    transaction: &mut Transaction<'_, Sqlite>,
    items: &[(&Job, &NewEvent)],
) -> Result<Vec<StoredEvent>, StoreError> {
    append_at(transaction, items, |job| job.created_at).await
}

/// Adds to `query` the statement inserting `items`' events, each stamped with the time `at`
/// gives its job, answering `id, job_id` ([`stored_events`] reads them).
pub(super) fn push_events(
    query: &mut QueryBuilder<Sqlite>,
    items: &[(&Job, &NewEvent)],
    at: impl Fn(&Job) -> Micros,
) {
    query.push("INSERT INTO events (job_id, owner, conversation, kind, payload, created_at) ");
    query.push_values(items, |mut row, (job, event)| {
        row.push_bind(job.id.as_str().to_owned())
            .push_bind(job.owner.clone())
            .push_bind(job.context.conversation.clone())
            .push_bind(event.kind.clone())
            .push_bind(event.payload.to_string())
            .push_bind(at(job).0);
    });
    query.push(" RETURNING id, job_id");
}

/// The stored events of `items`, from the `id, job_id` rows [`push_events`] answered.
pub(super) fn stored_events(
    rows: &[SqliteRow],
    items: &[(&Job, &NewEvent)],
    at: impl Fn(&Job) -> Micros,
) -> Result<Vec<StoredEvent>, StoreError> {
    // RETURNING gives no order guarantee: match ids back to jobs.
    let mut ids = HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(row.try_get::<String, _>("job_id")?, row.try_get::<i64, _>("id")?);
    }
    items
        .iter()
        .map(|(job, event)| {
            let id = ids.get(job.id.as_str()).copied().ok_or_else(|| StoreError::Corrupt {
                id: job.id.to_string(),
                reason: "event insert returned no id".to_owned(),
            })?;
            Ok(StoredEvent {
                id,
                job_id: job.id.clone(),
                owner: job.owner.clone(),
                conversation: job.context.conversation.clone(),
                kind: event.kind.clone(),
                payload: event.payload.clone(),
                created_at: at(job),
            })
        })
        .collect()
}

/// Appends events (and their deliveries), each stamped with the time `at` gives its job.
async fn append_at(
    transaction: &mut Transaction<'_, Sqlite>,
    items: &[(&Job, &NewEvent)],
    at: impl Fn(&Job) -> Micros,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new("");
    push_events(&mut query, items, &at);
    let rows = query.build().fetch_all(&mut **transaction).await?;
    let stored = stored_events(&rows, items, &at)?;
    let mut deliveries = Vec::new();
    for ((job, event), stored) in items.iter().zip(&stored) {
        for endpoint in &event.webhooks {
            deliveries.push((stored.id, &job.id, endpoint.as_str(), at(job)));
        }
    }
    if !deliveries.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, event_id, job_id, endpoint, status, next_attempt_at, \
             created_at, updated_at) ",
        );
        query.push_values(deliveries, |mut row, (event_id, job_id, endpoint, now)| {
            let id = format!("msg_{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
            row.push_bind(id)
                .push_bind(event_id)
                .push_bind(job_id.as_str().to_owned())
                .push_bind(endpoint.to_owned())
                .push_bind("pending")
                .push_bind(now.0)
                .push_bind(now.0)
                .push_bind(now.0);
        });
        query.build().execute(&mut **transaction).await?;
    }
    Ok(stored)
}

pub(super) async fn purge_events_before(
    writer: &SqlitePool,
    cutoff: Micros,
    limit_to: usize,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < ? LIMIT ?)",
    )
    .bind(cutoff.0)
    .bind(limit(limit_to))
    .execute(writer)
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn claim_deliveries(
    writer: &SqlitePool,
    now: Micros,
    retry_at: Micros,
    limit_to: usize,
) -> Result<Vec<DueDelivery>, StoreError> {
    let query = format!(
        "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, updated_at = ?1 \
         WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' \
           AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?3) \
         RETURNING {CLAIMED_COLUMNS}"
    );
    let claimed: Vec<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(now.0)
        .bind(retry_at.0)
        .bind(limit(limit_to))
        .fetch_all(writer)
        .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let event_ids: Vec<i64> = claimed.iter().map(|row| row.event_id).collect();
    let ids = serde_json::to_string(&event_ids).unwrap_or_else(|_| "[]".to_owned());
    let query =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))");
    let events = sqlx::query(sqlx::AssertSqlSafe(query)).bind(ids).fetch_all(writer).await?;
    let events = events.iter().map(to_event).collect::<Result<_, _>>()?;
    Ok(with_events(claimed, events))
}
