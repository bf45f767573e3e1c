//! Tests of what the SQLite store keeps for push: the event log (ids, owners, filters, paging,
//! one event per committed change), duplicate-call lookup, once-only announcements, and the
//! webhook outbox (claims, retries, final outcomes, durability).

use serde_json::json;

use super::*;
use crate::jobs::{
    JobContext, JobError,
    events::{BareEvents, EventComposer, JobChange, NewEvent},
    store::DeliveryStatus,
};

async fn open() -> (tempfile::TempDir, SqliteJobStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteJobStore::open(&dir.path().join("offstage.db")).await.expect("open store");
    (dir, store)
}

fn job(owner: &str, conversation: Option<&str>, created_at: i64) -> Job {
    Job {
        id: JobId::generate(),
        tool: "generate_image".to_owned(),
        owner: owner.to_owned(),
        input: json!({"prompt": "a fox"}),
        status: JobStatus::Working,
        output: None,
        error: None,
        attempts: 0,
        eta_ms: 1_000,
        created_at: Micros(created_at),
        updated_at: Micros(created_at),
        started_at: None,
        finished_at: None,
        context: JobContext { conversation: conversation.map(str::to_owned), ..Default::default() },
    }
}

/// Composes bare events that go to `webhooks` when a job ends.
#[derive(Debug)]
struct Hooks(Vec<String>);

impl EventComposer for Hooks {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
        let mut event = BareEvents.compose(change, job);
        if change == JobChange::Ended {
            event.webhooks = self.0.clone();
        }
        event
    }
}

async fn insert(store: &SqliteJobStore, job: &Job, dedupe: Option<&str>) -> StoredEvent {
    let event = BareEvents.compose(JobChange::Created, job);
    store.insert(job, "me", dedupe, event).await.expect("insert")
}

async fn end(store: &SqliteJobStore, job: &Job, outcome: Outcome, at: i64) -> Option<StoredEvent> {
    let ended = store.finish(&job.id, &outcome, Micros(at), &BareEvents).await.expect("finish");
    ended.map(|(_, event)| event)
}

fn completed() -> Outcome {
    Outcome::Completed(json!({"ok": true}))
}

fn failed() -> Outcome {
    Outcome::Failed(JobError { code: "x".to_owned(), message: "It broke.".to_owned() })
}

fn cancelled() -> Outcome {
    Outcome::Cancelled(JobError { code: "cancelled".to_owned(), message: "Stopped.".to_owned() })
}

#[tokio::test]
async fn every_committed_change_is_one_event_with_an_increasing_id() {
    let (_dir, store) = open().await;
    assert_eq!(store.last_event_id().await.unwrap(), 0);
    let a = job("alice", Some("c1"), 10);
    let created = insert(&store, &a, None).await;
    assert_eq!((created.kind.as_str(), created.owner.as_str()), ("job.created", "alice"));
    assert_eq!(created.conversation.as_deref(), Some("c1"));
    let ended = end(&store, &a, completed(), 20).await.expect("first finish wins");
    assert!(ended.id > created.id);
    assert_eq!(ended.kind, "job.completed");
    assert_eq!(ended.created_at, Micros(20));
    // The loser of the compare-and-set writes no event.
    assert!(end(&store, &a, cancelled(), 30).await.is_none());
    assert_eq!(store.last_event_id().await.unwrap(), ended.id);
    let all = store.events_after("alice", 0, &EventFilter::default(), 10).await.unwrap();
    assert_eq!(all, vec![created, ended]);
}

#[tokio::test]
async fn events_are_read_per_owner_filtered_and_paged() {
    let (_dir, store) = open().await;
    let mut alice_c1 = Vec::new();
    for n in 0..5 {
        let j = job("alice", Some("c1"), n);
        alice_c1.push(insert(&store, &j, None).await.id);
        insert(&store, &job("alice", Some("c2"), n), None).await;
        insert(&store, &job("bob", Some("c1"), n), None).await;
    }
    let c1 = EventFilter { conversation: Some("c1".to_owned()), job: None };
    let page = store.events_after("alice", 0, &c1, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), alice_c1[..3]);
    let rest = store.events_after("alice", page[2].id, &c1, 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), alice_c1[3..]);
    assert!(rest.iter().all(|e| e.owner == "alice" && e.conversation.as_deref() == Some("c1")));
    assert_eq!(
        store.events_after("alice", 0, &EventFilter::default(), 100).await.unwrap().len(),
        10
    );
    assert_eq!(store.events_after("bob", 0, &EventFilter::default(), 100).await.unwrap().len(), 5);
    let one = store.events_after("alice", 0, &c1, 1).await.unwrap().remove(0);
    let by_job = EventFilter { conversation: None, job: Some(one.job_id.clone()) };
    assert_eq!(store.events_after("alice", 0, &by_job, 10).await.unwrap(), vec![one.clone()]);
    assert!(store.events_after("bob", 0, &by_job, 10).await.unwrap().is_empty(), "not bob's");
    // Every owner's events between two ids, for the live renderer's gaps.
    let last = store.last_event_id().await.unwrap();
    let between = store.events_between(one.id, last, 100).await.unwrap();
    assert_eq!(between.len() as i64, last - one.id - 1);
    assert!(between.windows(2).all(|w| w[0].id + 1 == w[1].id));
}

#[tokio::test]
async fn a_duplicate_is_a_recent_working_or_completed_job_of_the_same_owner_and_key() {
    let (_dir, store) = open().await;
    let first = job("alice", Some("c1"), 1_000);
    insert(&store, &first, Some("key")).await;
    let found = store.find_duplicate("alice", "key", Micros(500)).await.unwrap();
    assert_eq!(found.map(|j| j.id), Some(first.id.clone()));
    assert!(store.find_duplicate("bob", "key", Micros(500)).await.unwrap().is_none());
    assert!(store.find_duplicate("alice", "other", Micros(500)).await.unwrap().is_none());
    assert!(
        store.find_duplicate("alice", "key", Micros(1_001)).await.unwrap().is_none(),
        "too old"
    );
    end(&store, &first, completed(), 2_000).await;
    assert!(store.find_duplicate("alice", "key", Micros(500)).await.unwrap().is_some());

    for outcome in [failed(), cancelled()] {
        let again = job("alice", Some("c1"), 3_000);
        insert(&store, &again, Some("retry")).await;
        end(&store, &again, outcome, 3_500).await;
        let found = store.find_duplicate("alice", "retry", Micros(0)).await.unwrap();
        assert!(found.is_none(), "asking again after a failure means trying again");
    }
}

#[tokio::test]
async fn each_ended_job_is_taken_for_announcement_once() {
    let (_dir, store) = open().await;
    let done = job("alice", Some("c1"), 1);
    let broke = job("alice", Some("c1"), 2);
    let stopped = job("alice", Some("c1"), 3);
    let working = job("alice", Some("c1"), 4);
    let elsewhere = job("alice", Some("c2"), 5);
    let other_owner = job("bob", Some("c1"), 6);
    for j in [&done, &broke, &stopped, &working, &elsewhere, &other_owner] {
        insert(&store, j, None).await;
    }
    end(&store, &done, completed(), 10).await;
    end(&store, &broke, failed(), 11).await;
    end(&store, &stopped, cancelled(), 12).await;
    end(&store, &elsewhere, completed(), 13).await;
    end(&store, &other_owner, completed(), 14).await;

    let taken = store.take_unannounced("alice", "c1", Micros(20), 10).await.unwrap();
    // Oldest ending first; a cancellation was the caller's own doing and is not announced.
    assert_eq!(taken.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![done.id, broke.id]);
    assert!(store.take_unannounced("alice", "c1", Micros(21), 10).await.unwrap().is_empty());
    // A job the conversation already heard about through job_status is not taken.
    store.mark_announced(&elsewhere.id, Micros(22)).await.unwrap();
    assert!(store.take_unannounced("alice", "c2", Micros(23), 10).await.unwrap().is_empty());
    assert_eq!(store.take_unannounced("bob", "c1", Micros(24), 10).await.unwrap().len(), 1);
    // The limit holds the rest for next time.
    for n in 0..3 {
        let j = job("carol", Some("c3"), 100 + n);
        insert(&store, &j, None).await;
        end(&store, &j, completed(), 200 + n).await;
    }
    assert_eq!(store.take_unannounced("carol", "c3", Micros(300), 2).await.unwrap().len(), 2);
    assert_eq!(store.take_unannounced("carol", "c3", Micros(301), 2).await.unwrap().len(), 1);
}

#[tokio::test]
async fn webhook_deliveries_are_claimed_retried_settled_and_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("offstage.db");
    let store = SqliteJobStore::open(&path).await.unwrap();
    let j = job("alice", None, 1);
    insert(&store, &j, None).await;
    let hooks = Hooks(vec!["https://a.example/in".to_owned(), "https://b.example/in".to_owned()]);
    let (_, event) = store.finish(&j.id, &completed(), Micros(10), &hooks).await.unwrap().unwrap();

    let due = store.claim_deliveries(Micros(10), Micros(1_000), 10).await.unwrap();
    assert_eq!(due.len(), 2, "one delivery per endpoint");
    assert!(due.iter().all(|d| d.event == event && d.attempts == 1));
    assert_ne!(due[0].id, due[1].id);
    // Claimed: not due again before `retry_at`, even if nobody settles it (a crash mid-try).
    assert!(store.claim_deliveries(Micros(999), Micros(2_000), 10).await.unwrap().is_empty());

    let (a, b) = (&due[0], &due[1]);
    let retry =
        DeliveryOutcome::Retry { at: Micros(50), status: Some(503), error: "HTTP 503".to_owned() };
    store.settle_delivery(&a.id, &retry, Micros(20)).await.unwrap();
    store
        .settle_delivery(&b.id, &DeliveryOutcome::Delivered { status: 204 }, Micros(21))
        .await
        .unwrap();
    assert!(store.claim_deliveries(Micros(49), Micros(2_000), 10).await.unwrap().is_empty());
    store.close().await;

    // Reopened (a restart): the pending retry is still there, under the same webhook-id.
    let store = SqliteJobStore::open(&path).await.unwrap();
    let again = store.claim_deliveries(Micros(50), Micros(2_000), 10).await.unwrap();
    assert_eq!(
        again.iter().map(|d| (d.id.clone(), d.attempts)).collect::<Vec<_>>(),
        vec![(a.id.clone(), 2)]
    );
    let gave_up = DeliveryOutcome::GaveUp { status: Some(410), error: "HTTP 410 Gone".to_owned() };
    store.settle_delivery(&a.id, &gave_up, Micros(60)).await.unwrap();
    assert!(
        store
            .claim_deliveries(Micros(i64::MAX / 2), Micros(i64::MAX / 2), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let mut states = store.deliveries_of(&j.id).await.unwrap();
    states.sort_by(|x, y| x.endpoint.cmp(&y.endpoint));
    assert_eq!(states[0].endpoint, "https://a.example/in");
    assert_eq!(
        (states[0].status, states[0].attempts, states[0].last_status),
        (DeliveryStatus::Failed, 2, Some(410))
    );
    assert_eq!(states[0].last_error.as_deref(), Some("HTTP 410 Gone"));
    assert_eq!(
        (states[1].status, states[1].attempts, states[1].delivered_at),
        (DeliveryStatus::Delivered, 1, Some(Micros(21)))
    );
    store.close().await;
}

#[tokio::test]
async fn retention_removes_old_events_and_their_deliveries() {
    let (_dir, store) = open().await;
    let old = job("alice", None, 1);
    insert(&store, &old, None).await;
    let hooks = Hooks(vec!["https://a.example/in".to_owned()]);
    store.finish(&old.id, &completed(), Micros(10), &hooks).await.unwrap();
    let recent = job("alice", None, 1_000);
    let kept = insert(&store, &recent, None).await;
    let purged = store.purge_finished_before(Micros(500), 10).await.unwrap();
    assert_eq!(purged.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![old.id.clone()]);
    let left = store.events_after("alice", 0, &EventFilter::default(), 10).await.unwrap();
    assert_eq!(left, vec![kept.clone()]);
    assert!(store.deliveries_of(&old.id).await.unwrap().is_empty());
    // Ids are never reused: the next event continues after every id ever handed out.
    let next = insert(&store, &job("alice", None, 2_000), None).await;
    assert!(next.id > kept.id);
    assert!(store.last_event_id().await.unwrap() >= next.id);
}
