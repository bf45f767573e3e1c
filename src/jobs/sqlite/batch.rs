//! The SQLite side of group commit (`jobs/batch.rs`): one batch of new jobs, their creation
//! events and deliveries in one transaction on the single writer connection.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::outbox;
use crate::jobs::{
    Job,
    batch::{PendingInsert, WriteBatch},
    events::{NewEvent, StoredEvent},
    store::StoreError,
};

/// The writer pool (one connection) that batches go through.
#[derive(Debug)]
pub(super) struct SqliteBatch(pub(super) SqlitePool);

#[async_trait]
impl WriteBatch for SqliteBatch {
    async fn write(&self, rows: &[PendingInsert]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut transaction = self.0.begin().await?;
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO jobs (id, tool, owner, input, status, attempts, eta_ms, created_at, \
             updated_at, lease_owner, conversation, delivery, call_id, dedupe_key) ",
        );
        query.push_values(rows, |mut row, insert| {
            let job = &insert.job;
            row.push_bind(job.id.as_str().to_owned())
                .push_bind(job.tool.clone())
                .push_bind(job.owner.clone())
                .push_bind(job.input.to_string())
                .push_bind(job.status.as_str())
                .push_bind(i64::from(job.attempts))
                .push_bind(i64::try_from(job.eta_ms).unwrap_or(i64::MAX))
                .push_bind(job.created_at.0)
                .push_bind(job.updated_at.0)
                .push_bind(insert.instance.to_string())
                .push_bind(job.context.conversation.clone())
                .push_bind(job.context.delivery.clone())
                .push_bind(job.context.call_id.clone())
                .push_bind(insert.dedupe_key.clone());
        });
        query.build().execute(&mut *transaction).await?;
        let items: Vec<(&Job, &NewEvent)> = rows.iter().map(|row| (&row.job, &row.event)).collect();
        let events = outbox::append_many(&mut transaction, &items).await?;
        transaction.commit().await?;
        Ok(events)
    }
}
