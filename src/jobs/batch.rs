//! Group commit, for either store: inserts waiting for the writer are written together in one
//! transaction (jobs, their creation events and any webhook deliveries), and each caller is
//! answered after it commits. Under load this turns N commits into one; alone, an insert costs
//! what it did.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{
    Job,
    events::{NewEvent, StoredEvent},
    store::StoreError,
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
