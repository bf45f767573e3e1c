//! The SQLite side of group commit (`jobs/batch.rs`): one batch of new jobs, their creation
//! events and deliveries in one transaction on the single writer connection.

use async_trait::async_trait;
use sqlx::{Sqlite, SqlitePool};

use super::outbox;
use crate::jobs::{
    Job,
    batch::{PendingInsert, WriteBatch, insert_jobs},
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
        insert_jobs::<Sqlite>(rows).build().execute(&mut *transaction).await?;
        let items: Vec<(&Job, &NewEvent)> = rows.iter().map(|row| (&row.job, &row.event)).collect();
        let events = outbox::append_many(&mut transaction, &items).await?;
        transaction.commit().await?;
        Ok(events)
    }
}
