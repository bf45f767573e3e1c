//! The SQLite side of group commit (`jobs/batch.rs`): one batch of new jobs, their creation
//! events and deliveries in one transaction on the single writer connection.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::outbox;
use crate::jobs::{
    Job,
    batch::{PendingInsert, WriteBatch, insert_jobs, push_jobs},
    events::{NewEvent, StoredEvent},
    store::StoreError,
};

/// The writer pool (one connection) that batches go through.
#[derive(Debug)]
pub(super) struct SqliteBatch(pub(super) SqlitePool);

#[async_trait]
impl WriteBatch for SqliteBatch {
    async fn write(&self, rows: &[PendingInsert]) -> Result<Vec<StoredEvent>, StoreError> {
        let items: Vec<(&Job, &NewEvent)> = rows.iter().map(|row| (&row.job, &row.event)).collect();
        if rows.iter().any(|row| !row.event.webhooks.is_empty()) {
            let mut transaction = self.0.begin().await?;
            insert_jobs::<Sqlite>(rows).build().execute(&mut *transaction).await?;
            let events = outbox::append_many(&mut transaction, &items).await?;
            transaction.commit().await?;
            return Ok(events);
        }
        // Without deliveries the whole transaction is one command to the connection's thread
        // (begin, both inserts, commit) instead of four: each is a hand-over to that thread and
        // back, which on two cores costs more than the statements.
        let created = |job: &Job| job.created_at;
        let mut query = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
        push_jobs(&mut query, rows);
        query.push("; ");
        outbox::push_events(&mut query, &items, created);
        query.push("; COMMIT");
        let mut connection = self.0.acquire().await?;
        match query.build().fetch_all(&mut *connection).await {
            Ok(answered) => outbox::stored_events(&answered, &items, created),
            Err(error) => {
                // A statement failed inside the transaction: undo what came before it, so the
                // connection goes back clean (an error if none was open is as good).
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                Err(error.into())
            }
        }
    }
}
