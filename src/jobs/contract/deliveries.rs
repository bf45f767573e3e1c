//! Tests of the webhook outbox: deliveries queued with their event, claimed when due, settled,
//! shown per job, kept across restarts and purged with their job.

use super::*;
use crate::jobs::{
    events::EventComposer,
    store::{DeliveryOutcome, DeliveryState, DeliveryStatus, DueDelivery},
};

const A: &str = "https://a.example/hook";
const B: &str = "https://b.example/hook";
const C: &str = "https://c.example/hook";

/// The bare events, sent to these endpoints.
#[derive(Debug)]
struct Hooks(&'static [&'static str]);

impl EventComposer for Hooks {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
        let webhooks = self.0.iter().map(|&endpoint| endpoint.to_owned()).collect();
        NewEvent { webhooks, ..BareEvents.compose(change, job) }
    }
}

/// Inserts `job` with its creation event sent to `endpoints`.
async fn put_hooked(store: &Harness, job: &Job, endpoints: &'static [&str]) -> StoredEvent {
    let created = Hooks(endpoints).compose(JobChange::Created, job);
    store.insert(Insert::new(job, "i", created)).await.expect("insert")
}

/// Ends `job` with its event sent to `endpoints`.
async fn end_hooked(
    store: &Harness,
    job: &Job,
    endpoints: &'static [&str],
    now: i64,
) -> StoredEvent {
    let (outcome, composer) = (Outcome::Completed(json!(1)), Hooks(endpoints));
    let ended = store.finish(&job.id, &outcome, Micros(now), &composer).await.expect("finish");
    ended.expect("the job was working").1
}

/// A delivery of `event` to `endpoint` that was never attempted.
fn pending(event: &StoredEvent, endpoint: &str) -> DeliveryState {
    DeliveryState {
        event_id: event.id,
        endpoint: endpoint.to_owned(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_status: None,
        last_error: None,
        delivered_at: None,
    }
}

async fn claim(store: &Harness, now: i64, retry_at: i64, limit: usize) -> Vec<DueDelivery> {
    let mut due =
        store.claim_deliveries(Micros(now), Micros(retry_at), limit).await.expect("claim");
    due.sort_by(|a, b| (a.event.id, &a.endpoint).cmp(&(b.event.id, &b.endpoint)));
    due
}

async fn settle(store: &Harness, delivery: &DueDelivery, outcome: DeliveryOutcome, now: i64) {
    store.settle_delivery(&delivery.id, &outcome, Micros(now)).await.expect("settle");
}

/// `(endpoint, attempts)` of each claimed delivery.
fn claimed(due: &[DueDelivery]) -> Vec<(&str, u32)> {
    due.iter().map(|delivery| (delivery.endpoint.as_str(), delivery.attempts)).collect()
}

fn retry(at: i64, status: Option<u16>, error: &str) -> DeliveryOutcome {
    DeliveryOutcome::Retry { at: Micros(at), status, error: error.to_owned() }
}

async fn delivery_rows(store: &Harness) -> i64 {
    store.count("deliveries").await
}

async fn an_event_queues_one_delivery_per_endpoint(store: Harness) {
    let job = job_of("owner-a", Some("c"), 10);
    let created = put_hooked(&store, &job, &[A, B]).await;
    assert_eq!(
        store.deliveries_of(&job.id).await.unwrap(),
        [pending(&created, A), pending(&created, B)]
    );

    let ended = end_hooked(&store, &job, &[C], 20).await;
    assert_eq!(
        store.deliveries_of(&job.id).await.unwrap(),
        [pending(&created, A), pending(&created, B), pending(&ended, C)],
        "oldest first"
    );
    // Events nobody subscribed to queue nothing.
    let quiet = insert(&store, "t", 11, "i").await;
    finish(&store, &quiet.id, &Outcome::Completed(json!(2)), Micros(21)).await.unwrap().unwrap();
    assert_eq!(store.deliveries_of(&quiet.id).await.unwrap(), []);
    assert_eq!(store.deliveries_of(&JobId::generate()).await.unwrap(), []);
    assert_eq!(delivery_rows(&store).await, 3);

    // Each delivery is due from its event on, carrying the event as stored.
    let due = claim(&store, 10, 1_000, 10).await;
    assert_eq!(claimed(&due), [(A, 1), (B, 1)], "the ended event's delivery is not due yet");
    for delivery in &due {
        assert_eq!(delivery.event, created);
        assert_eq!(delivery.first_queued_at, Micros(10));
        assert!(delivery.id.starts_with("msg_"), "a webhook-id: {}", delivery.id);
    }
    assert_ne!(due[0].id, due[1].id, "one webhook-id per delivery");
    let due = claim(&store, 20, 1_000, 10).await;
    assert_eq!(claimed(&due), [(C, 1)]);
    assert_eq!((&due[0].event, due[0].first_queued_at), (&ended, Micros(20)));
}

async fn a_claimed_delivery_is_not_due_again_before_retry_at(store: Harness) {
    let job = job_of("owner-a", None, 10);
    let created = put_hooked(&store, &job, &[A]).await;
    assert_eq!(claim(&store, 9, 100, 10).await, [], "not due before its event");

    let first = claim(&store, 10, 100, 10).await;
    assert_eq!(claimed(&first), [(A, 1)]);
    assert_eq!(claim(&store, 10, 100, 10).await, [], "claimed once");
    assert_eq!(claim(&store, 99, 200, 10).await, [], "in flight until retry_at");
    // Never settled (the process died mid-attempt): due again at retry_at, as the same delivery.
    let again = claim(&store, 100, 200, 10).await;
    assert_eq!(claimed(&again), [(A, 2)]);
    assert_eq!(again[0].id, first[0].id, "the same webhook-id, so receivers can dedupe");
    assert_eq!((&again[0].event, again[0].first_queued_at), (&created, Micros(10)));
    assert_eq!(
        store.deliveries_of(&job.id).await.unwrap(),
        [DeliveryState { attempts: 2, ..pending(&created, A) }],
        "still pending, attempts counted"
    );
}

async fn claims_take_the_longest_due_first_up_to_their_limit(store: Harness) {
    let mut events = Vec::new();
    for created_at in [302, 300, 301] {
        events.push(put_hooked(&store, &job_of("owner-a", None, created_at), &[A]).await);
    }
    let first = claim(&store, 400, 1_000, 2).await;
    let times: Vec<Micros> = first.iter().map(|delivery| delivery.first_queued_at).collect();
    assert_eq!(times, [Micros(300), Micros(301)]);
    let rest = claim(&store, 400, 1_000, 2).await;
    assert_eq!(rest.iter().map(|delivery| &delivery.event).collect::<Vec<_>>(), [&events[0]]);
    assert_eq!(claim(&store, 400, 1_000, 2).await, []);
}

async fn settling_records_each_attempt_and_only_retries_come_back(store: Harness) {
    let job = job_of("owner-a", None, 10);
    let created = put_hooked(&store, &job, &[A, B, C]).await;
    let due = claim(&store, 10, 1_000, 10).await;
    let [to_a, to_b, to_c] = due.try_into().unwrap();

    settle(&store, &to_a, retry(500, Some(503), "HTTP 503"), 20).await;
    settle(&store, &to_b, DeliveryOutcome::Delivered { status: 204 }, 21).await;
    let gone = DeliveryOutcome::GaveUp { status: Some(410), error: "HTTP 410 Gone".to_owned() };
    settle(&store, &to_c, gone, 22).await;
    let a_waiting = DeliveryState {
        attempts: 1,
        last_status: Some(503),
        last_error: Some("HTTP 503".to_owned()),
        ..pending(&created, A)
    };
    let b_delivered = DeliveryState {
        status: DeliveryStatus::Delivered,
        attempts: 1,
        last_status: Some(204),
        delivered_at: Some(Micros(21)),
        ..pending(&created, B)
    };
    let c_given_up = DeliveryState {
        status: DeliveryStatus::Failed,
        attempts: 1,
        last_status: Some(410),
        last_error: Some("HTTP 410 Gone".to_owned()),
        ..pending(&created, C)
    };
    assert_eq!(
        store.deliveries_of(&job.id).await.unwrap(),
        [a_waiting, b_delivered.clone(), c_given_up.clone()]
    );

    // A retry is due at the time it asked for (earlier than the claim's retry_at), not before.
    assert_eq!(claim(&store, 499, 2_000, 10).await, []);
    let second = claim(&store, 500, 2_000, 10).await;
    assert_eq!(claimed(&second), [(A, 2)]);
    assert_eq!(second[0].id, to_a.id);
    settle(&store, &second[0], retry(600, None, "connection refused"), 510).await;
    let third = claim(&store, 600, 2_000, 10).await;
    assert_eq!(claimed(&third), [(A, 3)]);
    let a_waiting = DeliveryState {
        attempts: 3,
        last_status: None,
        last_error: Some("connection refused".to_owned()),
        ..pending(&created, A)
    };
    assert_eq!(store.deliveries_of(&job.id).await.unwrap()[0], a_waiting);
    settle(&store, &third[0], DeliveryOutcome::Delivered { status: 200 }, 700).await;
    let a_delivered = DeliveryState {
        status: DeliveryStatus::Delivered,
        attempts: 3,
        last_status: Some(200),
        delivered_at: Some(Micros(700)),
        ..pending(&created, A)
    };
    assert_eq!(
        store.deliveries_of(&job.id).await.unwrap(),
        [a_delivered, b_delivered, c_given_up],
        "delivering clears the last error"
    );

    // Delivered and given up are final: nothing is ever due again.
    assert_eq!(claim(&store, i64::MAX / 2, i64::MAX / 2, 10).await, []);
}

async fn a_late_settle_never_undoes_a_final_outcome(store: Harness) {
    // An attempt that outlived its claim (a paused process) was claimed and settled again; when
    // the slow attempt reports at last, what the job JSON shows must not go back on a delivery.
    let job = job_of("owner-a", None, 10);
    let created = put_hooked(&store, &job, &[A, B]).await;
    let [slow_a, slow_b] = claim(&store, 10, 100, 10).await.try_into().unwrap();
    let [again_a, again_b] = claim(&store, 100, 200, 10).await.try_into().unwrap();
    settle(&store, &again_a, DeliveryOutcome::Delivered { status: 200 }, 110).await;
    let gone = DeliveryOutcome::GaveUp { status: Some(410), error: "HTTP 410 Gone".to_owned() };
    settle(&store, &again_b, gone, 111).await;
    let after = store.deliveries_of(&job.id).await.unwrap();
    assert_eq!(
        after.iter().map(|state| state.status).collect::<Vec<_>>(),
        [DeliveryStatus::Delivered, DeliveryStatus::Failed]
    );

    settle(&store, &slow_a, retry(300, Some(503), "HTTP 503"), 120).await;
    let gone = DeliveryOutcome::GaveUp { status: None, error: "timed out".to_owned() };
    settle(&store, &slow_a, gone, 121).await;
    settle(&store, &slow_b, retry(300, Some(503), "HTTP 503"), 122).await;
    assert_eq!(store.deliveries_of(&job.id).await.unwrap(), after, "unchanged");
    assert_eq!(claim(&store, 300, 400, 10).await, [], "and never due again");
    assert_eq!(after[0].delivered_at, Some(Micros(110)));
    assert_eq!(after[0].event_id, created.id);
}

async fn pending_deliveries_survive_closing_and_reopening_the_store(store: Harness) {
    let job = job_of("owner-a", Some("c"), 10);
    let created = put_hooked(&store, &job, &[A, B]).await;
    // A in flight when the process stops, B never attempted, C queued by the end.
    let in_flight = claim(&store, 10, 100, 1).await;
    assert_eq!(claimed(&in_flight), [(A, 1)]);
    let ended = end_hooked(&store, &job, &[C], 20).await;
    let before = store.deliveries_of(&job.id).await.unwrap();
    let last = store.last_event_id().await.unwrap();
    store.close().await;

    let reopened = store.reopen().await;
    assert_eq!(reopened.deliveries_of(&job.id).await.unwrap(), before);
    assert_eq!(reopened.last_event_id().await.unwrap(), last);
    let due = claim(&reopened, 20, 1_000, 10).await;
    assert_eq!(claimed(&due), [(B, 1), (C, 1)], "A is still in flight until its retry_at");
    assert_eq!((&due[0].event, &due[1].event), (&created, &ended), "with their events");
    let due = claim(&reopened, 100, 1_000, 10).await;
    assert_eq!(claimed(&due), [(A, 2)], "then attempted once more, not lost");
    assert_eq!(due[0].id, in_flight[0].id);
    reopened.close().await;
}

async fn purge_removes_old_events_and_deliveries_with_their_job(store: Harness) {
    let old = job_of("owner-a", None, 10);
    put_hooked(&store, &old, &[A]).await;
    let [to_a] = claim(&store, 10, 1_000, 10).await.try_into().unwrap();
    settle(&store, &to_a, DeliveryOutcome::Delivered { status: 200 }, 20).await;
    end_hooked(&store, &old, &[A, B], 100).await;
    let recent = job_of("owner-a", None, 600);
    let recent_created = put_hooked(&store, &recent, &[A]).await;
    let recent_ended = end_hooked(&store, &recent, &[A], 700).await;
    let working = job_of("owner-a", None, 550);
    let working_created = put_hooked(&store, &working, &[B]).await;
    let last = store.last_event_id().await.unwrap();
    assert_eq!(delivery_rows(&store).await, 6);

    let purged = store.purge_finished_before(Micros(500), 10).await.unwrap();
    assert_eq!(purged, [PurgedJob { id: old.id.clone(), tool: "t".to_owned() }]);
    assert_eq!(store.get(&old.id).await.unwrap(), None);
    assert_eq!(store.deliveries_of(&old.id).await.unwrap(), [], "delivered or not, gone");
    let filter = EventFilter { job: Some(old.id.clone()), ..EventFilter::default() };
    assert_eq!(store.events_after("owner-a", 0, &filter, 10).await.unwrap(), []);
    // What is newer stays, with its deliveries; the old job's pending ones are never attempted.
    let events = store.events_after("owner-a", 0, &EventFilter::default(), 10).await.unwrap();
    assert_eq!(events, [recent_created.clone(), recent_ended.clone(), working_created.clone()]);
    assert_eq!(delivery_rows(&store).await, 3);
    let due = claim(&store, 1_000, 2_000, 10).await;
    let due_events: Vec<i64> = due.iter().map(|delivery| delivery.event.id).collect();
    assert_eq!(due_events, [recent_created.id, recent_ended.id, working_created.id]);

    // Ids are never reused, so a stream that read the purged events cannot be misled.
    assert_eq!(store.last_event_id().await.unwrap(), last);
    let next = put(&store, &job_of("owner-a", None, 800), "i").await.unwrap();
    assert!(next.id > last);
}

async fn one_purge_pass_removes_every_event_of_the_jobs_it_removes(store: Harness) {
    let old: Vec<Job> = (0..3).map(|n| job_of("owner-a", None, 10 + n)).collect();
    for job in &old {
        put(&store, job, "i").await.unwrap();
        end_hooked(&store, job, &[], 100).await;
    }
    let all = EventFilter::default();
    assert_eq!(store.events_after("owner-a", 0, &all, 100).await.unwrap().len(), 6);

    // Three jobs, one at a time: each pass must take at least its own job's two events.
    for (pass, job) in old.iter().enumerate() {
        let purged = store.purge_finished_before(Micros(500), 1).await.unwrap();
        assert_eq!(purged.len(), 1, "pass {pass}");
        let filter = EventFilter { job: Some(purged[0].id.clone()), ..EventFilter::default() };
        assert_eq!(store.events_after("owner-a", 0, &filter, 10).await.unwrap(), [], "{}", job.id);
    }
    assert_eq!(store.events_after("owner-a", 0, &all, 100).await.unwrap(), []);
}

contract! {
    an_event_queues_one_delivery_per_endpoint,
    a_claimed_delivery_is_not_due_again_before_retry_at,
    claims_take_the_longest_due_first_up_to_their_limit,
    settling_records_each_attempt_and_only_retries_come_back,
    a_late_settle_never_undoes_a_final_outcome,
    pending_deliveries_survive_closing_and_reopening_the_store,
    purge_removes_old_events_and_deliveries_with_their_job,
    one_purge_pass_removes_every_event_of_the_jobs_it_removes,
}
