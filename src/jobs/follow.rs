//! Events other instances committed, published in this process as if written here: what lets a
//! client listening on one instance hear about jobs run on another.
//!
//! Woken by the store's notifications and, whatever happens to those, every [`POLL_EVERY`];
//! either way it reads the events themselves from the store, after the last id it saw. Events
//! this process wrote come back too: [`JobEvents`] drops ids it already delivered.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    events::{JobChange, JobEvents},
    store::JobStore,
};

/// The fallback when a notification was lost (the listener reconnecting, say).
pub(super) const POLL_EVERY: Duration = Duration::from_secs(1);

/// Events read per query; a backlog takes several.
const BATCH: usize = 512;

/// Follows the store from event id `after` until `shutdown`.
pub(super) async fn follow(
    store: Arc<dyn JobStore>,
    events: JobEvents,
    mut wakeups: watch::Receiver<u64>,
    mut after: i64,
    shutdown: CancellationToken,
) {
    let mut listening = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = wakeups.changed(), if listening => listening = changed.is_ok(),
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        loop {
            let changes = match store.changes_after(after, BATCH).await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!(%error, "could not read other instances' events");
                    break;
                }
            };
            let complete = changes.len() < BATCH;
            for (event, job) in changes {
                after = event.id;
                // A job purged since has nobody left to tell.
                let (Some(job), Some(change)) = (job, JobChange::of_kind(&event.kind)) else {
                    continue;
                };
                events.publish(change, job, event);
            }
            if complete {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{
        Job,
        events::{BareEvents, EventComposer as _},
        postgres::PgJobStore,
        store::Insert,
        testdb::TestDb,
    };

    #[tokio::test]
    async fn without_any_wake_up_a_poll_still_publishes_what_others_committed() {
        let Some(db) = TestDb::create().await else { return };
        let (writer, reader) =
            (PgJobStore::open(&db.url).await.unwrap(), PgJobStore::open(&db.url).await.unwrap());
        // A wake-up channel that never fires: every notification lost.
        let (_silent, never) = watch::channel(0_u64);
        let events = JobEvents::default();
        events.expect_after(0);
        let mut heard = events.subscribe();
        let shutdown = CancellationToken::new();
        let store: Arc<dyn JobStore> = Arc::new(reader);
        tokio::spawn(follow(store, events.clone(), never, 0, shutdown.clone()));
        let job = Job::working("t", 1);
        let created = BareEvents.compose(JobChange::Created, &job);
        let stored = writer.insert(Insert::new(&job, "elsewhere", created)).await.unwrap();
        let got = tokio::time::timeout(POLL_EVERY * 3, heard.recv())
            .await
            .expect("published within a few poll intervals")
            .unwrap();
        assert_eq!((got.event.id, &got.job.id), (stored.id, &job.id));
        shutdown.cancel();
    }
}
