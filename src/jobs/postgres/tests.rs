//! What the shared store adds to the store contract (which `jobs/store/contract` runs on both
//! stores): several stores on one database, as several instances are — migrations racing at
//! start, event ids in commit order across writers, claims that hand each row to exactly one
//! instance, and wake-ups from another instance's commits.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::future::join_all;
use serde_json::json;

use super::*;
use crate::jobs::{events::BareEvents, testdb::TestDb};

/// `count` stores on one fresh database, opened at once (so their migrations race).
async fn stores(count: usize) -> Option<(TestDb, Vec<PgJobStore>)> {
    let db = TestDb::create().await?;
    let opened = join_all((0..count).map(|_| PgJobStore::open(&db.url))).await;
    let stores = opened.into_iter().collect::<Result<Vec<_>, _>>().expect("open every store");
    Some((db, stores))
}

fn job(owner: &str, conversation: Option<&str>, created_at: i64) -> Job {
    let mut job = Job {
        owner: owner.to_owned(),
        input: json!({ "prompt": "a fox" }),
        eta_ms: 1_000,
        ..Job::working("t", created_at)
    };
    job.context.conversation = conversation.map(str::to_owned);
    job
}

async fn put(store: &PgJobStore, job: &Job, instance: &str) -> StoredEvent {
    let event = BareEvents.compose(JobChange::Created, job);
    store.insert(Insert::new(job, instance, event)).await.expect("insert")
}

fn lease(instance: &str, until: i64) -> Lease {
    Lease { instance: Arc::from(instance), until: Micros(until) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_once_and_share_one_store() {
    let Some((_db, stores)) = stores(3).await else { return };
    let job = job("o", None, 1);
    put(&stores[0], &job, "a").await;
    for store in &stores {
        assert_eq!(store.get(&job.id).await.unwrap().unwrap().id, job.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_ids_follow_commit_order_across_writers() {
    // Two instances write events as fast as they can while a reader follows by id, the way a
    // resumed stream does. Ids taken in one order and committed in another would show as a
    // gap the reader passes and never fills.
    let Some((_db, stores)) = stores(2).await else { return };
    let reader = stores[0].clone();
    let follow = tokio::spawn(async move {
        let (mut seen, mut after) = (Vec::new(), 0);
        while seen.len() < 300 {
            for event in reader.events_between(after, i64::MAX, 1_000).await.unwrap() {
                after = event.id;
                seen.push(event.id);
            }
            tokio::task::yield_now().await;
        }
        seen
    });
    let writers = stores.iter().enumerate().map(|(n, store)| {
        let store = store.clone();
        tokio::spawn(async move {
            let writes = (0..50).map(|i| {
                let store = store.clone();
                async move {
                    let job = job("o", None, i);
                    put(&store, &job, &format!("i{n}")).await;
                    let done = Outcome::Completed(json!({ "ok": true }));
                    store
                        .progress(&job.id, &json!({ "step": 1 }), Micros(i), &BareEvents)
                        .await
                        .unwrap();
                    store.finish(&job.id, &done, Micros(i), &BareEvents).await.unwrap().unwrap();
                }
            });
            join_all(writes).await;
        })
    });
    for writer in join_all(writers).await {
        writer.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), follow).await.unwrap().unwrap();
    assert_eq!(seen, (1..=300).collect::<Vec<i64>>(), "every id once, in order, none skipped");
    assert_eq!(stores[1].last_event_id().await.unwrap(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphans_are_claimed_by_exactly_one_instance() {
    let Some((_db, stores)) = stores(3).await else { return };
    let jobs: Vec<Job> = (0..60).map(|i| job("o", None, i)).collect();
    for job in &jobs {
        put(&stores[0], job, "dead").await;
    }
    let now = Micros::now();
    let claims = stores.iter().enumerate().map(|(n, store)| async move {
        let lease = lease(&format!("alive-{n}"), now.0 + 60_000_000);
        store.heartbeat(&lease).await.unwrap();
        let mut mine = Vec::new();
        loop {
            let claimed = store.claim_orphans(&lease, now, 7).await.unwrap();
            if claimed.is_empty() {
                break mine;
            }
            mine.extend(claimed.into_iter().map(|job| job.id));
        }
    });
    let claimed: Vec<Vec<JobId>> = join_all(claims).await;
    let total: usize = claimed.iter().map(Vec::len).sum();
    let distinct: BTreeSet<&JobId> = claimed.iter().flatten().collect();
    assert_eq!(total, 60, "no job claimed twice: {claimed:?}");
    assert_eq!(distinct.len(), 60, "every job claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_delivery_and_each_announcement_goes_to_one_instance() {
    let Some((_db, stores)) = stores(3).await else { return };
    #[derive(Debug)]
    struct Hooked;
    impl EventComposer for Hooked {
        fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
            NewEvent {
                webhooks: vec!["https://hooks.example/a".to_owned()],
                ..BareEvents.compose(change, job)
            }
        }
    }
    for i in 0..40 {
        let job = job("o", Some("c"), i);
        put(&stores[0], &job, "a").await;
        let done = Outcome::Completed(json!({}));
        stores[0].finish(&job.id, &done, Micros(i + 1), &Hooked).await.unwrap().unwrap();
    }
    let now = Micros::now();
    let dispatchers = stores.iter().map(|store| async move {
        let mut mine = Vec::new();
        loop {
            let due = store.claim_deliveries(now, Micros(now.0 + 60_000_000), 3).await.unwrap();
            if due.is_empty() {
                break mine;
            }
            mine.extend(due.into_iter().map(|delivery| delivery.id));
        }
    });
    let claimed: Vec<Vec<String>> = join_all(dispatchers).await;
    let distinct: BTreeSet<&String> = claimed.iter().flatten().collect();
    assert_eq!((claimed.iter().map(Vec::len).sum::<usize>(), distinct.len()), (40, 40));

    let announcers = stores.iter().map(|store| async move {
        let mut mine = Vec::new();
        loop {
            let taken = store.take_unannounced("o", "c", now, 2).await.unwrap();
            if taken.is_empty() {
                break mine;
            }
            mine.extend(taken.into_iter().map(|job| job.id));
        }
    });
    let announced: Vec<Vec<JobId>> = join_all(announcers).await;
    let distinct: BTreeSet<&JobId> = announced.iter().flatten().collect();
    assert_eq!((announced.iter().map(Vec::len).sum::<usize>(), distinct.len()), (40, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_instances_commit_wakes_this_one_and_reads_with_its_job() {
    let Some((_db, stores)) = stores(2).await else { return };
    let mut wakeups = stores[1].wakeups().expect("a shared store wakes its followers");
    wakeups.borrow_and_update();
    let job = job("o", None, 1);
    let created = put(&stores[0], &job, "a").await;
    tokio::time::timeout(Duration::from_secs(10), wakeups.changed())
        .await
        .expect("woken within seconds")
        .unwrap();
    let changes = stores[1].changes_after(0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, created);
    assert_eq!(changes[0].1.as_ref().map(|job| &job.id), Some(&job.id));
    assert!(stores[1].changes_after(created.id, 10).await.unwrap().is_empty());
}
