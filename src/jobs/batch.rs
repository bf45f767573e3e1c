//! Group commit, for either store: inserts waiting for the writer are written together in one
//! transaction (jobs, their creation events and any webhook deliveries), and each caller is
//! answered after it commits. Under load this turns N commits into one; alone, an insert costs
//! what it did.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};
use tokio::sync::{mpsc, oneshot};

use super::{
    Job,
    events::{NewEvent, StoredEvent},
    store::{Insert, StoreError},
};

/// The most inserts written by one transaction (14 binds each, far below either database's
/// limit on binds per statement).
pub(super) const MAX_BATCH: usize = 256;

#[derive(Debug)]
pub(super) struct PendingInsert {
    pub(super) job: Job,
    pub(super) instance: Arc<str>,
    pub(super) dedupe_key: Option<String>,
    pub(super) event: NewEvent,
    pub(super) done: oneshot::Sender<Result<StoredEvent, StoreError>>,
}

/// Queues an insert for the writer and waits until its batch committed.
pub(super) async fn queue(
    inserts: &mpsc::Sender<PendingInsert>,
    new: Insert<'_>,
) -> Result<StoredEvent, StoreError> {
    let (done, answer) = oneshot::channel();
    let pending = PendingInsert {
        job: new.job.clone(),
        instance: new.instance.into(),
        dedupe_key: new.dedupe_key.map(str::to_owned),
        event: new.event,
        done,
    };
    inserts.send(pending).await.map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// The `INSERT INTO jobs …` of a batch, the same for both databases.
pub(super) fn insert_jobs<DB: Database>(rows: &[PendingInsert]) -> QueryBuilder<DB>
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("");
    push_jobs(&mut query, rows);
    query
}

/// Adds the statement inserting `rows`' jobs to `query`.
pub(super) fn push_jobs<DB: Database>(query: &mut QueryBuilder<DB>, rows: &[PendingInsert])
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query.push(
        "INSERT INTO jobs (id, tool, owner, input, status, attempts, eta_ms, created_at, \
         updated_at, lease_owner, conversation, delivery, call_id, dedupe_key, produces) ",
    );
    query.push_values(rows, |mut row, insert| {
        let job = &insert.job;
        row.push_bind(job.id.as_str().to_owned())
            .push_bind(job.tool.clone())
            .push_bind(job.owner.clone())
            .push_bind(job.input.to_string())
            .push_bind(job.status.as_str().to_owned())
            .push_bind(i64::from(job.attempts))
            .push_bind(i64::try_from(job.eta_ms).unwrap_or(i64::MAX))
            .push_bind(job.created_at.0)
            .push_bind(job.updated_at.0)
            .push_bind(insert.instance.to_string())
            .push_bind(job.context.conversation.clone())
            .push_bind(job.context.delivery.clone())
            .push_bind(job.context.call_id.clone())
            .push_bind(insert.dedupe_key.clone())
            .push_bind(job.produces.as_str().to_owned());
    });
}

/// How one store writes a batch: in one transaction, answering events in the rows' order.
#[async_trait]
pub(super) trait WriteBatch: Send + Sync + 'static {
    async fn write(&self, rows: &[PendingInsert]) -> Result<Vec<StoredEvent>, StoreError>;
}

/// The loop: takes whatever inserts are waiting, writes them at once, answers each caller.
pub(super) async fn write_inserts(
    writer: impl WriteBatch,
    mut pending: mpsc::Receiver<PendingInsert>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match writer.write(&batch).await {
            Ok(events) => {
                for (insert, event) in batch.drain(..).zip(events) {
                    let _ = insert.done.send(Ok(event));
                }
            }
            // One bad row (a constraint violation) must not fail its neighbours: retry them
            // one by one. Any other failure would fail each retry the same way, only slower.
            Err(StoreError::Database(sqlx::Error::Database(error)))
                if error.kind() != sqlx::error::ErrorKind::Other =>
            {
                for insert in batch.drain(..) {
                    let result = writer
                        .write(std::slice::from_ref(&insert))
                        .await
                        .map(|mut events| events.remove(0));
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
