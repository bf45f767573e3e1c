//! Tests of the event log (ids, transactions, reads by owner with filters and paging), of
//! duplicate detection and of announcements to conversations.

use super::*;

/// Every event of `owner`, oldest first.
async fn all_events(store: &Harness, owner: &str) -> Vec<StoredEvent> {
    store.events_after(owner, 0, &EventFilter::default(), 1_000).await.expect("events")
}

/// Ends a job (which must still be working) and returns the job and its event.
async fn end(store: &Harness, job: &Job, outcome: Outcome, now: i64) -> (Job, StoredEvent) {
    store
        .finish(&job.id, &outcome, Micros(now), &BareEvents)
        .await
        .expect("finish")
        .expect("the job was working")
}

/// Inserts `job` with a dedupe key.
async fn put_keyed(store: &Harness, job: &Job, key: &str) {
    let created = BareEvents.compose(JobChange::Created, job);
    store
        .insert(Insert { dedupe_key: Some(key), ..Insert::new(job, "i", created) })
        .await
        .expect("insert");
}

/// Makes the database refuse every new event, as a full disk or a bug in an event would.
async fn refuse_events(store: &Harness, refuse: bool) {
    let statements: &[&'static str] = match (store.is_postgres(), refuse) {
        (false, true) => &["CREATE TRIGGER refuse_events BEFORE INSERT ON events \
                            BEGIN SELECT RAISE(ABORT, 'events refused'); END"],
        (false, false) => &["DROP TRIGGER refuse_events"],
        (true, true) => &[
            "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'events refused'; END $$",
            "CREATE TRIGGER refuse_events BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION refuse_events()",
        ],
        (true, false) => &["DROP TRIGGER refuse_events ON events", "DROP FUNCTION refuse_events()"],
    };
    for statement in statements {
        store.execute(statement, &[]).await;
    }
}

fn event_ids(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|event| event.id).collect()
}

fn job_ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id.clone()).collect()
}

async fn insert_and_finish_write_events_with_increasing_ids(store: Harness) {
    assert_eq!(store.last_event_id().await.unwrap(), 0, "no event yet");

    let first = job_of("owner-a", Some("conv-1"), 10);
    let created = put(&store, &first, "i").await.unwrap();
    assert_eq!(
        created,
        StoredEvent {
            id: created.id,
            job_id: first.id.clone(),
            owner: "owner-a".to_owned(),
            conversation: Some("conv-1".to_owned()),
            kind: "job.created".to_owned(),
            payload: json!({ "job_id": first.id, "status": "working" }),
            created_at: Micros(10),
        }
    );
    assert!(created.id > 0);
    assert_eq!(store.last_event_id().await.unwrap(), created.id);

    let second = job_of("owner-a", None, 11);
    let second_created = put(&store, &second, "i").await.unwrap();
    assert!(second_created.id > created.id);
    assert_eq!(store.last_event_id().await.unwrap(), second_created.id);

    let (ended, completed) = end(&store, &first, Outcome::Completed(json!(1)), 20).await;
    assert_eq!(ended.status, JobStatus::Completed);
    assert!(completed.id > second_created.id);
    assert_eq!(
        (completed.kind.as_str(), &completed.payload, completed.created_at),
        ("job.completed", &json!({ "job_id": first.id, "status": "completed" }), Micros(20))
    );
    assert_eq!(completed.conversation.as_deref(), Some("conv-1"), "the job's conversation");
    assert_eq!(store.last_event_id().await.unwrap(), completed.id);

    let (_, failed) = end(&store, &second, Outcome::Failed(error("x")), 30).await;
    assert!(failed.id > completed.id);
    assert_eq!(failed.kind, "job.failed");
    let third = job_of("owner-a", None, 31);
    let third_created = put(&store, &third, "i").await.unwrap();
    let (_, cancelled) = end(&store, &third, Outcome::Cancelled(error("cancelled")), 32).await;
    assert_eq!(cancelled.kind, "job.cancelled");
    assert_eq!(store.last_event_id().await.unwrap(), cancelled.id);

    let expected = [created, second_created, completed, failed, third_created, cancelled];
    assert!(expected.windows(2).all(|pair| pair[0].id < pair[1].id), "strictly increasing");
    assert_eq!(all_events(&store, "owner-a").await, expected, "stored as returned, in order");
}

async fn a_change_that_is_not_made_writes_no_event(store: Harness) {
    let job = insert(&store, "t", 10, "i").await;
    end(&store, &job, Outcome::Completed(json!(1)), 20).await;
    let last = store.last_event_id().await.unwrap();
    let before = all_events(&store, "owner-a").await;
    assert_eq!(before.len(), 2);

    // A cancel that loses the race to the completion writes nothing at all.
    let lost = finish(&store, &job.id, &Outcome::Cancelled(error("cancelled")), Micros(30)).await;
    assert_eq!(lost.unwrap(), None);
    let unknown =
        finish(&store, &JobId::generate(), &Outcome::Failed(error("x")), Micros(30)).await;
    assert_eq!(unknown.unwrap(), None);
    // Nor does an insert the database refuses (here a duplicate id).
    let duplicate = Job { tool: "dup".to_owned(), ..job.clone() };
    assert!(put(&store, &duplicate, "i").await.is_err());

    assert_eq!(store.last_event_id().await.unwrap(), last);
    assert_eq!(all_events(&store, "owner-a").await, before);
}

async fn a_change_whose_event_cannot_be_written_is_not_made(store: Harness) {
    // The change and its event commit together or not at all: a stream never misses a change.
    let working = insert(&store, "t", 10, "i").await;
    refuse_events(&store, true).await;

    let ended = finish(&store, &working.id, &Outcome::Completed(json!(1)), Micros(20)).await;
    assert!(ended.is_err(), "the finish fails with its event");
    assert_eq!(store.get(&working.id).await.unwrap(), Some(working.clone()), "still working");
    let refused = job("t", 30);
    assert!(put(&store, &refused, "i").await.is_err(), "the insert fails with its event");
    assert_eq!(store.get(&refused.id).await.unwrap(), None, "and leaves no job behind");
    assert_eq!(row_count(&store).await, 1);

    refuse_events(&store, false).await;
    let (done, event) = end(&store, &working, Outcome::Completed(json!(1)), 40).await;
    assert_eq!((done.status, event.kind.as_str()), (JobStatus::Completed, "job.completed"));
    assert_eq!(all_events(&store, "owner-a").await.len(), 2, "one created, one ended");
}

async fn events_after_reads_one_owners_events_oldest_first(store: Harness) {
    let a1 = job_of("owner-a", Some("c1"), 1);
    let a2 = job_of("owner-a", Some("c2"), 2);
    let a3 = job_of("owner-a", None, 3);
    let b1 = job_of("owner-b", Some("c1"), 4);
    let mut created = Vec::new();
    for job in [&a1, &a2, &a3, &b1] {
        created.push(put(&store, job, "i").await.unwrap());
    }
    let [a1_created, a2_created, a3_created, b1_created] = created.try_into().unwrap();
    let (_, a1_ended) = end(&store, &a1, Outcome::Completed(json!(1)), 5).await;
    let (_, b1_ended) = end(&store, &b1, Outcome::Failed(error("x")), 6).await;

    let everything = all_events(&store, "owner-a").await;
    assert_eq!(
        everything,
        [a1_created.clone(), a2_created.clone(), a3_created.clone(), a1_ended.clone()],
        "another owner's events are never read"
    );
    assert_eq!(all_events(&store, "owner-b").await, [b1_created.clone(), b1_ended.clone()]);
    assert_eq!(all_events(&store, "owner-c").await, []);

    let read = async |after: i64, conversation: Option<&str>, job: Option<&Job>, limit: usize| {
        let filter = EventFilter {
            conversation: conversation.map(str::to_owned),
            job: job.map(|job| job.id.clone()),
        };
        store.events_after("owner-a", after, &filter, limit).await.unwrap()
    };
    assert_eq!(read(0, Some("c1"), None, 100).await, [a1_created.clone(), a1_ended.clone()]);
    assert_eq!(read(0, Some("c2"), None, 100).await, std::slice::from_ref(&a2_created));
    assert_eq!(read(0, Some("nowhere"), None, 100).await, []);
    assert_eq!(read(0, None, Some(&a1), 100).await, [a1_created.clone(), a1_ended.clone()]);
    assert_eq!(read(0, None, Some(&a3), 100).await, std::slice::from_ref(&a3_created));
    assert_eq!(read(0, Some("c1"), Some(&a2), 100).await, [], "both filters apply");
    assert_eq!(read(0, Some("c1"), Some(&b1), 100).await, [], "another owner's job is empty");

    // Paging: `limit` at a time, each page resuming after the last id read.
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = read(after, None, None, 3).await;
        let Some(last) = page.last() else { break };
        after = last.id;
        pages.push(event_ids(&page));
    }
    assert_eq!(
        pages,
        [event_ids(&everything[..3]), event_ids(&everything[3..])],
        "two pages, then nothing"
    );
    assert_eq!(read(a2_created.id, None, None, 100).await, [a3_created.clone(), a1_ended.clone()]);
    assert_eq!(read(a1_ended.id, None, None, 100).await, []);
    assert_eq!(read(a1_created.id, Some("c1"), None, 1).await, std::slice::from_ref(&a1_ended));

    // The live renderer fills gaps from every owner's events strictly between two ids.
    let between = store.events_between(a1_created.id, b1_ended.id, 100).await.unwrap();
    assert_eq!(event_ids(&between), event_ids(&[a2_created, a3_created, b1_created, a1_ended]));
    let first = store.events_between(a1_created.id, b1_ended.id, 1).await.unwrap();
    assert_eq!(event_ids(&first), [a1_created.id + 1], "the limit keeps the oldest");
}

async fn find_duplicate_finds_a_live_or_completed_job_of_the_same_owner_and_key(store: Harness) {
    let working = job_of("owner-a", None, 100);
    put_keyed(&store, &working, "k").await;
    let find = async |owner: &str, key: &str, since: i64| {
        store.find_duplicate(owner, key, Micros(since)).await.unwrap().map(|job| job.id)
    };

    assert_eq!(find("owner-a", "k", 50).await, Some(working.id.clone()));
    assert_eq!(find("owner-a", "k", 100).await, Some(working.id.clone()), "`since` is inclusive");
    assert_eq!(find("owner-a", "k", 101).await, None, "older than the window");
    assert_eq!(find("owner-b", "k", 0).await, None, "another owner's job never counts");
    assert_eq!(find("owner-a", "other", 0).await, None);
    // A job without a key is nobody's duplicate.
    let unkeyed = job_of("owner-a", None, 100);
    put(&store, &unkeyed, "i").await.unwrap();
    assert_eq!(find("owner-a", "", 0).await, None);

    let (completed, _) = end(&store, &working, Outcome::Completed(json!(1)), 150).await;
    assert_eq!(
        store.find_duplicate("owner-a", "k", Micros(0)).await.unwrap(),
        Some(completed),
        "a completed job is returned whole, as stored"
    );

    // Failed and cancelled jobs never count: asking again means trying again.
    for (key, outcome) in
        [("f", Outcome::Failed(error("x"))), ("c", Outcome::Cancelled(error("cancelled")))]
    {
        let job = job_of("owner-a", None, 200);
        put_keyed(&store, &job, key).await;
        assert_eq!(find("owner-a", key, 0).await, Some(job.id.clone()));
        end(&store, &job, outcome, 210).await;
        assert_eq!(find("owner-a", key, 0).await, None, "{key}");
    }

    // Of several, the newest that counts.
    let older = job_of("owner-a", None, 300);
    let newer = job_of("owner-a", None, 400);
    let newest_failed = job_of("owner-a", None, 500);
    for job in [&older, &newer, &newest_failed] {
        put_keyed(&store, job, "n").await;
    }
    end(&store, &newest_failed, Outcome::Failed(error("x")), 510).await;
    assert_eq!(find("owner-a", "n", 0).await, Some(newer.id.clone()));
    end(&store, &newer, Outcome::Cancelled(error("cancelled")), 520).await;
    assert_eq!(find("owner-a", "n", 0).await, Some(older.id));
    assert_eq!(find("owner-a", "n", 301).await, None);
}

async fn take_unannounced_returns_each_ended_job_of_a_conversation_once(store: Harness) {
    let jobs: Vec<Job> = [
        ("owner-a", Some("c1")),
        ("owner-a", Some("c1")),
        ("owner-a", Some("c1")),
        ("owner-a", Some("c1")),
        ("owner-a", Some("c2")),
        ("owner-b", Some("c1")),
        ("owner-a", None),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (owner, conversation))| job_of(owner, conversation, i64::try_from(n).unwrap()))
    .collect();
    for job in &jobs {
        put(&store, job, "i").await.unwrap();
    }
    let [completed, failed, cancelled, working, other_conversation, other_owner, no_conversation] =
        jobs.try_into().unwrap();
    // Finished out of creation order, to show the order is by end.
    let (completed, _) = end(&store, &completed, Outcome::Completed(json!(1)), 30).await;
    let (failed, _) = end(&store, &failed, Outcome::Failed(error("x")), 20).await;
    end(&store, &cancelled, Outcome::Cancelled(error("cancelled")), 25).await;
    let (other_conversation, _) =
        end(&store, &other_conversation, Outcome::Completed(json!(2)), 40).await;
    let (other_owner, _) = end(&store, &other_owner, Outcome::Completed(json!(3)), 41).await;
    end(&store, &no_conversation, Outcome::Completed(json!(4)), 42).await;

    let take = async |owner: &str, conversation: &str, limit: usize| {
        store.take_unannounced(owner, conversation, Micros(100), limit).await.unwrap()
    };
    assert_eq!(
        take("owner-a", "c1", 10).await,
        [failed, completed],
        "ended jobs, whole and as stored, by end time; cancelled and working ones are not news"
    );
    assert_eq!(take("owner-a", "c1", 10).await, [], "never twice");

    // Other conversations and owners were untouched, and each gets its own once.
    assert_eq!(take("owner-a", "c2", 10).await, [other_conversation]);
    assert_eq!(take("owner-b", "c1", 10).await, [other_owner]);
    assert_eq!(take("owner-a", "c2", 10).await, []);
    assert_eq!(take("owner-b", "c1", 10).await, []);

    // A job that ends later is news again, once.
    let (working, _) = end(&store, &working, Outcome::Completed(json!(5)), 50).await;
    assert_eq!(take("owner-a", "c1", 10).await, [working]);
    assert_eq!(take("owner-a", "c1", 10).await, []);
}

async fn take_unannounced_respects_its_limit_and_mark_announced(store: Harness) {
    let mut ended = Vec::new();
    for n in 0..4 {
        let job = job_of("owner-a", Some("c"), n);
        put(&store, &job, "i").await.unwrap();
        ended.push(end(&store, &job, Outcome::Completed(json!(n)), 10 + n).await.0);
    }
    // Told already (by job_status, say): never announced again.
    store.mark_announced(&ended[1].id, Micros(50)).await.unwrap();
    // Marking twice, or marking an unknown job, is harmless.
    store.mark_announced(&ended[1].id, Micros(51)).await.unwrap();
    store.mark_announced(&JobId::generate(), Micros(51)).await.unwrap();

    let take = async |limit: usize| {
        job_ids(&store.take_unannounced("owner-a", "c", Micros(100), limit).await.unwrap())
    };
    assert_eq!(take(2).await, job_ids(&[ended[0].clone(), ended[2].clone()]), "the oldest two");
    assert_eq!(take(2).await, job_ids(&ended[3..]));
    assert_eq!(take(2).await, []);
    for job in &ended {
        let stored = store.get(&job.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(job), "announcing changes nothing a view shows");
    }
}

async fn jobs_inserted_together_each_get_their_own_event(store: Harness) {
    // Group commit writes many jobs and events in one statement: each event must still name its
    // own job, owner, conversation and time.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            let owner = format!("owner-{}", n % 3);
            let job = job_of(&owner, Some(&format!("conv-{n}")), 1_000 + n);
            put(&store, &job, "i").await.map(|event| (job, event))
        });
    }
    let mut inserted = Vec::new();
    while let Some(result) = tasks.join_next().await {
        inserted.push(result.expect("task").expect("insert"));
    }
    let mut ids: Vec<i64> = inserted.iter().map(|(_, event)| event.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "one id per event");
    assert_eq!(store.last_event_id().await.unwrap(), *ids.last().unwrap());
    for (job, event) in &inserted {
        let expected = StoredEvent {
            id: event.id,
            job_id: job.id.clone(),
            owner: job.owner.clone(),
            conversation: job.context.conversation.clone(),
            kind: "job.created".to_owned(),
            payload: json!({ "job_id": job.id, "status": "working" }),
            created_at: job.created_at,
        };
        assert_eq!(event, &expected, "as returned");
        let filter = EventFilter { job: Some(job.id.clone()), ..EventFilter::default() };
        let stored = store.events_after(&job.owner, 0, &filter, 10).await.unwrap();
        assert_eq!(stored, [expected], "as stored");
    }
}

async fn event_ids_are_never_reused_after_a_purge(store: Harness) {
    // A stream resumes "after id N": were ids reused, it would skip the events that took them.
    let job = insert(&store, "t", 10, "i").await;
    let (_, last) = end(&store, &job, Outcome::Completed(json!(1)), 20).await;
    assert_eq!(store.purge_finished_before(Micros(100), 10).await.unwrap().len(), 1);
    assert_eq!(all_events(&store, "owner-a").await, [], "every event is gone");

    assert_eq!(store.last_event_id().await.unwrap(), last.id, "the last id is remembered");
    let next = put(&store, &job_of("owner-a", None, 200), "i").await.unwrap();
    assert_eq!(next.id, last.id + 1);
    assert_eq!(store.last_event_id().await.unwrap(), next.id);
}

contract! {
    insert_and_finish_write_events_with_increasing_ids,
    a_change_that_is_not_made_writes_no_event,
    a_change_whose_event_cannot_be_written_is_not_made,
    events_after_reads_one_owners_events_oldest_first,
    find_duplicate_finds_a_live_or_completed_job_of_the_same_owner_and_key,
    take_unannounced_returns_each_ended_job_of_a_conversation_once,
    take_unannounced_respects_its_limit_and_mark_announced,
    jobs_inserted_together_each_get_their_own_event,
    event_ids_are_never_reused_after_a_purge,
}
