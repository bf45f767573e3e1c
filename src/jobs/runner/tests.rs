//! Tests of the job runner against a real SQLite store: admission and `Busy`, completion and
//! events, retries and backoff, timeouts, panics, cancellation, heartbeats, shutdown and
//! recovery by a new runner, store errors, estimates and retention.
//!
//! Durations are tens of milliseconds so the file runs in a few seconds; waits poll with a
//! generous deadline and time is only ever checked from below, so a slow machine cannot fail them.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
use tempfile::TempDir;
use tokio::sync::{Notify, broadcast};

use super::*;
use crate::jobs::{
    events::{JobEvent, NewEvent, StoredEvent},
    sqlite::SqliteJobStore,
    store::{DeliveryOutcome, DeliveryState, DueDelivery, EventFilter, PurgedJob},
};

const TOOL: &str = "draw";
/// Longest any test waits for something that should happen in milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

/// What the test handler does on one attempt; attempts take steps in order, across jobs.
#[derive(Debug)]
enum Step {
    /// Returns `{"echo": input}` at once (also what happens once the script runs out).
    Succeed,
    Fail(JobFailure),
    Panic,
    /// Sleeps this long, then succeeds; a long sleep is a hanging provider.
    Sleep(Duration),
    /// Waits for [`Script::release`], then succeeds.
    Gate,
}

/// One call of [`Script::run`]: which job, the attempt count it saw, and when.
#[derive(Debug, Clone)]
struct Call {
    id: JobId,
    attempts: u32,
    at: Instant,
}

/// A scripted handler that records what the runner asks of it.
#[derive(Debug)]
struct Script {
    steps: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Call>>,
    discarded: Mutex<Vec<JobId>>,
    /// Attempts whose future was dropped before it returned (cancel, timeout, shutdown).
    dropped: AtomicUsize,
    release: Notify,
    typical: Duration,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Script> {
        Arc::new(Script {
            steps: Mutex::new(steps.into_iter().collect()),
            calls: Mutex::new(Vec::new()),
            discarded: Mutex::new(Vec::new()),
            dropped: AtomicUsize::new(0),
            release: Notify::new(),
            typical: Duration::from_millis(50),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn discarded(&self) -> Vec<JobId> {
        self.discarded.lock().unwrap().clone()
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Counts an attempt as dropped unless it was disarmed by returning.
struct DropGuard<'a> {
    dropped: &'a AtomicUsize,
    armed: bool,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl JobHandler for Script {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        self.calls.lock().unwrap().push(Call {
            id: job.id.clone(),
            attempts: job.attempts,
            at: Instant::now(),
        });
        let step = self.steps.lock().unwrap().pop_front().unwrap_or(Step::Succeed);
        let mut guard = DropGuard { dropped: &self.dropped, armed: true };
        match step {
            Step::Succeed => {}
            Step::Fail(failure) => {
                guard.armed = false;
                return Err(failure);
            }
            Step::Panic => {
                guard.armed = false;
                panic!("the test handler panics on purpose");
            }
            Step::Sleep(duration) => tokio::time::sleep(duration).await,
            Step::Gate => self.release.notified().await,
        }
        guard.armed = false;
        Ok(json!({ "echo": job.input }))
    }

    async fn discard(&self, id: &JobId) {
        self.discarded.lock().unwrap().push(id.clone());
    }

    fn typical_duration(&self) -> Duration {
        self.typical
    }
}

fn failure(code: &str, retryable: bool, retry_after: Option<Duration>) -> Step {
    Step::Fail(JobFailure {
        detail: None,
        code: code.to_owned(),
        message: format!("The {code} thing happened."),
        retryable,
        retry_after,
    })
}

/// Limits small enough for tests: quick retries, a short lease (so the maintenance loop ticks
/// every 100 ms) and a generous timeout that only the timeout test shortens.
fn quick() -> JobsConfig {
    JobsConfig {
        concurrency: 2,
        queue: 8,
        timeout: PATIENCE.into(),
        max_attempts: 3,
        retry_base: Duration::from_millis(10).into(),
        retry_max: Duration::from_millis(40).into(),
        lease: Duration::from_millis(300).into(),
        ..JobsConfig::default()
    }
}

/// A store in a temporary directory, shared by every runner a test builds on it.
struct Fixture {
    dir: TempDir,
    store: Arc<SqliteJobStore>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteJobStore::open(&Self::db(dir.path())).await.expect("open store");
        Fixture { dir, store: Arc::new(store) }
    }

    fn db(dir: &Path) -> PathBuf {
        dir.join("offstage.db")
    }

    fn runner(&self, config: JobsConfig, script: &Arc<Script>) -> JobRunner {
        let store: Arc<dyn JobStore> = self.store.clone();
        JobRunner::builder(store, config).handler(TOOL, script.clone()).build()
    }

    /// The process a job belongs to (its `lease_owner`), read from the file as an outsider
    /// would; `None` once the job has ended.
    async fn lease_owner(&self, id: &JobId) -> Option<String> {
        let mut connection = self.connect().await;
        sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(&mut connection)
            .await
            .expect("lease owner")
    }

    /// Until when `instance` is known alive: its heartbeat row, if it has one.
    async fn alive_until(&self, instance: &str) -> Option<i64> {
        let mut connection = self.connect().await;
        sqlx::query_scalar("SELECT alive_until FROM instances WHERE id = ?")
            .bind(instance)
            .fetch_optional(&mut connection)
            .await
            .expect("instance row")
    }

    async fn instance_count(&self) -> i64 {
        let mut connection = self.connect().await;
        sqlx::query_scalar("SELECT COUNT(*) FROM instances")
            .fetch_one(&mut connection)
            .await
            .expect("instance count")
    }

    async fn row_count(&self) -> i64 {
        let mut connection = self.connect().await;
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut connection)
            .await
            .expect("row count")
    }

    async fn connect(&self) -> sqlx::SqliteConnection {
        SqliteConnectOptions::new()
            .filename(Self::db(self.dir.path()))
            .read_only(true)
            .connect()
            .await
            .expect("read-only connection")
    }
}

fn new_job(n: u32) -> NewJob {
    NewJob {
        tool: TOOL.to_owned(),
        produces: JobOutput::Json,
        owner: "alice".to_owned(),
        input: json!({ "n": n }),
        context: JobContext::default(),
        dedupe: None,
    }
}

/// Submits job `n`, which must be new (no dedupe key, so never a duplicate).
async fn submit(runner: &JobRunner, n: u32) -> Job {
    let submitted = submit_new(runner, new_job(n)).await;
    assert!(!submitted.duplicate, "a job without a dedupe key is never a duplicate");
    submitted.job
}

async fn submit_new(runner: &JobRunner, new: NewJob) -> Submitted {
    tokio::time::timeout(PATIENCE, runner.submit(new))
        .await
        .expect("submit must not wait for the job")
        .expect("submit")
}

/// The job once it has ended; fails the test if it is still working after [`PATIENCE`].
async fn ended(runner: &JobRunner, id: &JobId) -> Job {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let job = tokio::time::timeout(PATIENCE * 2, runner.wait_for_end(id, deadline))
        .await
        .expect("wait_for_end returns by its deadline")
        .expect("store")
        .expect("the job exists");
    assert!(job.status.is_terminal(), "job {id} still {:?} after {PATIENCE:?}", job.status);
    job
}

/// What `events` receives up to and including the first `Ended` change.
async fn published_until_ended(events: &mut broadcast::Receiver<Arc<JobEvent>>) -> Vec<JobEvent> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|event: &JobEvent| event.change != JobChange::Ended) {
        let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event");
        seen.push(JobEvent::clone(&event.expect("no lag")));
    }
    seen
}

/// Every event stored for `job` (owned by alice, as [`new_job`] makes them), oldest first.
async fn stored_events(fixture: &Fixture, job: &JobId) -> Vec<StoredEvent> {
    let filter = EventFilter { job: Some(job.clone()), ..EventFilter::default() };
    fixture.store.events_after("alice", 0, &filter, 100).await.expect("events")
}

/// Polls `check` until it holds; fails the test after [`PATIENCE`].
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `discard` runs just after the outcome is published, so it may trail `wait_for_end`.
async fn assert_discarded(script: &Script, ids: &[JobId]) {
    eventually("the discards are as expected", async || script.discarded() == ids).await;
}

fn error_code(job: &Job) -> &str {
    job.error.as_ref().map_or("", |error| error.code.as_str())
}

fn cancelled_by_user() -> JobError {
    JobError {
        detail: None,
        code: "cancelled".to_owned(),
        message: "Cancelled at the user's request.".to_owned(),
    }
}

/// The process that a runner names as owner of its jobs and in its heartbeats.
fn instance(runner: &JobRunner) -> String {
    runner.inner.instance.to_string()
}

/// Inserts a job as a process that died mid-run would have left it: working, owned by
/// "dead-process", which has no heartbeat row (it never heartbeat, or its row was purged).
async fn orphan(fixture: &Fixture, attempts: u32) -> Job {
    owned_by(fixture, "dead-process", attempts).await
}

/// Inserts a working job as another process `instance` would have, `attempts` in.
async fn owned_by(fixture: &Fixture, instance: &str, attempts: u32) -> Job {
    let now = Micros::now();
    let job = Job {
        owner: "alice".to_owned(),
        input: json!({ "orphan": true }),
        attempts,
        eta_ms: 50,
        created_at: now,
        updated_at: now,
        ..Job::working(TOOL, 0)
    };
    let created = BareEvents.compose(JobChange::Created, &job);
    fixture.store.insert(Insert::new(&job, instance, created)).await.expect("insert");
    job
}

/// The real store, watched and sabotaged: it counts finished passes of `claim_orphans`, and its
/// next `failures` calls of `finish` fail (a database that is briefly unwritable).
#[derive(Debug)]
struct Spy {
    store: Arc<SqliteJobStore>,
    failures: AtomicUsize,
    claim_passes: AtomicUsize,
}

impl Spy {
    fn new(fixture: &Fixture, failures: usize) -> Arc<Spy> {
        Arc::new(Spy {
            store: fixture.store.clone(),
            failures: AtomicUsize::new(failures),
            claim_passes: AtomicUsize::new(0),
        })
    }

    fn runner(self: &Arc<Self>, script: &Arc<Script>) -> JobRunner {
        let store: Arc<dyn JobStore> = self.clone();
        JobRunner::builder(store, quick()).handler(TOOL, script.clone()).build()
    }

    fn failures_left(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }

    fn claim_passes(&self) -> usize {
        self.claim_passes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JobStore for Spy {
    async fn insert(&self, new: Insert<'_>) -> Result<StoredEvent, StoreError> {
        self.store.insert(new).await
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.store.get(id).await
    }

    async fn start_attempt(&self, id: &JobId, now: Micros) -> Result<Option<Job>, StoreError> {
        self.store.start_attempt(id, now).await
    }

    async fn finish(
        &self,
        id: &JobId,
        outcome: &Outcome,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
        if fail.is_ok() {
            return Err(StoreError::Closed);
        }
        self.store.finish(id, outcome, now, composer).await
    }

    async fn progress(
        &self,
        id: &JobId,
        progress: &Value,
        now: Micros,
        composer: &dyn EventComposer,
    ) -> Result<Option<(Job, StoredEvent)>, StoreError> {
        self.store.progress(id, progress, now, composer).await
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<(), StoreError> {
        self.store.heartbeat(lease).await
    }

    async fn release(&self, instance: &str) -> Result<(), StoreError> {
        self.store.release(instance).await
    }

    async fn claim_orphans(
        &self,
        lease: &Lease,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let claimed = self.store.claim_orphans(lease, now, limit).await;
        self.claim_passes.fetch_add(1, Ordering::SeqCst);
        claimed
    }

    async fn purge_finished_before(
        &self,
        cutoff: Micros,
        limit: usize,
    ) -> Result<Vec<PurgedJob>, StoreError> {
        self.store.purge_finished_before(cutoff, limit).await
    }

    async fn find_duplicate(
        &self,
        owner: &str,
        dedupe_key: &str,
        since: Micros,
    ) -> Result<Option<Job>, StoreError> {
        self.store.find_duplicate(owner, dedupe_key, since).await
    }

    async fn take_unannounced(
        &self,
        owner: &str,
        conversation: &str,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.store.take_unannounced(owner, conversation, now, limit).await
    }

    async fn mark_announced(&self, id: &JobId, now: Micros) -> Result<(), StoreError> {
        self.store.mark_announced(id, now).await
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        self.store.last_event_id().await
    }

    async fn events_after(
        &self,
        owner: &str,
        after: i64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_after(owner, after, filter, limit).await
    }

    async fn events_between(
        &self,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_between(after, before, limit).await
    }

    async fn claim_deliveries(
        &self,
        now: Micros,
        retry_at: Micros,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.store.claim_deliveries(now, retry_at, limit).await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        outcome: &DeliveryOutcome,
        now: Micros,
    ) -> Result<(), StoreError> {
        self.store.settle_delivery(id, outcome, now).await
    }

    async fn deliveries_of(&self, job: &JobId) -> Result<Vec<DeliveryState>, StoreError> {
        self.store.deliveries_of(job).await
    }
}

/// Records a heartbeat for `instance` that runs out `ago` before now: a crashed process.
async fn heartbeat_expired(fixture: &Fixture, instance: &str, ago: Duration) {
    let lease = Lease { instance: Arc::from(instance), until: Micros::now().minus(ago) };
    fixture.store.heartbeat(&lease).await.expect("heartbeat");
}

#[tokio::test]
async fn submit_returns_a_working_job_without_waiting_for_the_handler() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate]);
    let runner = fixture.runner(quick(), &script);

    // `submit` itself would time out here if it waited for the gated handler.
    let job = submit(&runner, 1).await;
    assert_eq!(job.status, JobStatus::Working);
    assert_eq!((job.tool.as_str(), job.owner.as_str()), (TOOL, "alice"));
    assert_eq!(job.input, json!({ "n": 1 }));
    assert_eq!((job.attempts, job.started_at, job.finished_at), (0, None, None));
    let stored = runner.get(&job.id).await.unwrap().expect("stored before submit returns");
    // The first attempt may have started meanwhile; everything else is as submitted.
    assert_eq!(Job { attempts: 0, started_at: None, updated_at: job.updated_at, ..stored }, job);

    eventually("the handler runs", async || script.calls().len() == 1).await;
    let running = runner.get(&job.id).await.unwrap().unwrap();
    assert_eq!((running.status, running.attempts), (JobStatus::Working, 1));
    assert!(running.started_at.is_some());

    script.release.notify_one();
    assert_eq!(ended(&runner, &job.id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn a_completed_job_is_published_and_wait_for_end_returns_its_output() {
    let fixture = Fixture::new().await;
    let script = Script::new([]);
    let runner = fixture.runner(quick(), &script);
    let mut events = runner.events().subscribe();

    let job = submit(&runner, 7).await;
    let done = ended(&runner, &job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.output, Some(json!({ "echo": { "n": 7 } })));
    assert_eq!((&done.error, done.attempts), (&None, 1));
    assert!(done.finished_at.is_some());
    assert_eq!(runner.get(&job.id).await.unwrap(), Some(done.clone()));

    // Every committed change is published once, carrying the job and the event as stored.
    let seen = published_until_ended(&mut events).await;
    let [created, completed] = stored_events(&fixture, &job.id).await.try_into().unwrap();
    assert_eq!((created.kind.as_str(), completed.kind.as_str()), ("job.created", "job.completed"));
    assert_eq!(
        seen,
        [
            JobEvent { change: JobChange::Created, job: job.clone(), event: created },
            JobEvent { change: JobChange::Ended, job: done, event: completed },
        ]
    );
    assert!(matches!(events.try_recv(), Err(broadcast::error::TryRecvError::Empty)));
    assert!(script.discarded().is_empty(), "a completed job keeps its output");
}

#[tokio::test]
async fn retryable_failures_are_retried_up_to_max_attempts() {
    let fixture = Fixture::new().await;
    let script = Script::new((0..3).map(|_| failure("rate_limited", true, None)));
    let runner = fixture.runner(quick(), &script);

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(
        done.error,
        Some(JobError {
            detail: None,
            code: "rate_limited".to_owned(),
            message: "The rate_limited thing happened.".to_owned(),
        })
    );
    assert_eq!(done.attempts, 3, "attempts are counted in the store");
    let seen: Vec<u32> = script.calls().iter().map(|call| call.attempts).collect();
    assert_eq!(seen, [1, 2, 3], "each attempt sees its own number");
    // A failed job's leftovers are discarded.
    assert_discarded(&script, &[job.id]).await;
}

#[tokio::test]
async fn a_retry_that_succeeds_completes_the_job() {
    let fixture = Fixture::new().await;
    let script = Script::new([failure("server_error", true, None), Step::Succeed]);
    let runner = fixture.runner(quick(), &script);

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, done.attempts, done.error), (JobStatus::Completed, 2, None));
    assert_eq!(script.calls().len(), 2);
}

#[tokio::test]
async fn a_permanent_failure_fails_at_once() {
    let fixture = Fixture::new().await;
    let script = Script::new([failure("content_policy", false, None), Step::Succeed]);
    let runner = fixture.runner(quick(), &script);

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1));
    assert_eq!(error_code(&done), "content_policy");
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test]
async fn a_providers_retry_after_is_honoured() {
    let fixture = Fixture::new().await;
    let asked = Duration::from_millis(300);
    // Far longer than the configured backoff (10–40 ms), so only `retry_after` explains the wait.
    let script = Script::new([failure("rate_limited", true, Some(asked)), Step::Succeed]);
    let runner = fixture.runner(quick(), &script);

    let job = submit(&runner, 1).await;
    assert_eq!(ended(&runner, &job.id).await.status, JobStatus::Completed);
    let calls = script.calls();
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= asked, "retried after {waited:?}, asked for {asked:?}");
}

#[tokio::test]
async fn the_job_timeout_fails_a_hanging_job() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Sleep(Duration::from_secs(3600))]);
    let config = JobsConfig { timeout: Duration::from_millis(100).into(), ..quick() };
    let runner = fixture.runner(config, &script);

    let started = Instant::now();
    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!((done.status, error_code(&done)), (JobStatus::Failed, "timeout"));
    assert!(done.error.unwrap().message.contains("100ms"), "the message says the limit");
    assert_eq!(script.dropped(), 1, "the hanging attempt was stopped");
    assert_discarded(&script, &[job.id]).await;
}

#[tokio::test]
async fn a_panicking_handler_fails_the_job_and_the_runner_carries_on() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Panic, Step::Succeed]);
    let runner = fixture.runner(quick(), &script);

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, error_code(&done)), (JobStatus::Failed, "internal"));
    assert_eq!(done.attempts, 1, "a panic is not retried");

    let next = submit(&runner, 2).await;
    assert_eq!(ended(&runner, &next.id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn a_full_lane_answers_busy_and_writes_nothing() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate, Step::Gate]);
    let config = JobsConfig { concurrency: 1, queue: 1, ..quick() };
    let runner = fixture.runner(config, &script);

    let running = submit(&runner, 1).await;
    let queued = submit(&runner, 2).await;
    match runner.submit(new_job(3)).await {
        Err(SubmitError::Busy { tool, retry_after }) => {
            assert_eq!(tool, TOOL);
            assert!(retry_after >= Duration::from_secs(1), "retry_after {retry_after:?}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(fixture.row_count().await, 2, "the refused job was never written");

    // Finished jobs give their places back.
    script.release.notify_one();
    assert_eq!(ended(&runner, &running.id).await.status, JobStatus::Completed);
    script.release.notify_one();
    assert_eq!(ended(&runner, &queued.id).await.status, JobStatus::Completed);
    let later = submit(&runner, 4).await;
    assert_eq!(ended(&runner, &later.id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_for_good() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate]);
    let runner = fixture.runner(quick(), &script);
    let job = submit(&runner, 1).await;
    eventually("the handler runs", async || script.calls().len() == 1).await;
    let mut events = runner.events().subscribe();

    let outcome = runner.cancel(&job.id, cancelled_by_user()).await.unwrap();
    let CancelOutcome::Cancelled(cancelled) = outcome else {
        panic!("expected Cancelled, got {outcome:?}");
    };
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(cancelled.error, Some(cancelled_by_user()));
    let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event").unwrap();
    let [_created, stored] = stored_events(&fixture, &job.id).await.try_into().unwrap();
    assert_eq!(stored.kind, "job.cancelled");
    let expected = JobEvent { change: JobChange::Ended, job: cancelled.clone(), event: stored };
    assert_eq!(*event, expected, "the cancellation is published");

    eventually("the attempt is dropped", async || script.dropped() == 1).await;
    assert_discarded(&script, std::slice::from_ref(&job.id)).await;

    // A completion arriving now loses the compare-and-set and changes nothing.
    let completed = Outcome::Completed(json!(1));
    let late = runner.store().finish(&job.id, &completed, Micros::now(), &BareEvents).await;
    assert_eq!(late.unwrap(), None);
    assert_eq!(stored_events(&fixture, &job.id).await.len(), 2, "and writes no event");
    assert_eq!(runner.get(&job.id).await.unwrap(), Some(cancelled.clone()));
    assert_eq!(ended(&runner, &job.id).await, cancelled);
    assert_eq!(script.calls().len(), 1, "a cancelled job is not retried");
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate]);
    let config = JobsConfig { concurrency: 1, ..quick() };
    let runner = fixture.runner(config, &script);
    let running = submit(&runner, 1).await;
    let queued = submit(&runner, 2).await;
    eventually("the first job runs", async || script.calls().len() == 1).await;

    let outcome = runner.cancel(&queued.id, cancelled_by_user()).await.unwrap();
    assert!(matches!(outcome, CancelOutcome::Cancelled(_)), "{outcome:?}");
    script.release.notify_one();
    assert_eq!(ended(&runner, &running.id).await.status, JobStatus::Completed);
    // The slot is free now; had the queued job been left waiting it would run next.
    let after = submit(&runner, 3).await;
    assert_eq!(ended(&runner, &after.id).await.status, JobStatus::Completed);
    let ran: Vec<JobId> = script.calls().into_iter().map(|call| call.id).collect();
    assert_eq!(ran, [running.id, after.id]);
    assert_eq!(runner.get(&queued.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
    assert_discarded(&script, &[queued.id]).await;
}

#[tokio::test]
async fn cancelling_an_ended_or_unknown_job_changes_nothing() {
    let fixture = Fixture::new().await;
    let script = Script::new([]);
    let runner = fixture.runner(quick(), &script);
    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;

    let outcome = runner.cancel(&job.id, cancelled_by_user()).await.unwrap();
    assert_eq!(outcome, CancelOutcome::AlreadyEnded(done.clone()));
    assert_eq!(runner.get(&job.id).await.unwrap(), Some(done));
    let unknown = runner.cancel(&JobId::generate(), cancelled_by_user()).await.unwrap();
    assert_eq!(unknown, CancelOutcome::NotFound);
}

#[tokio::test]
async fn an_unknown_tool_is_refused() {
    let fixture = Fixture::new().await;
    let runner = fixture.runner(quick(), &Script::new([]));
    let new = NewJob { tool: "paint".to_owned(), ..new_job(1) };
    match runner.submit(new).await {
        Err(SubmitError::UnknownTool(tool)) => assert_eq!(tool, "paint"),
        other => panic!("expected UnknownTool, got {other:?}"),
    }
    assert_eq!(fixture.row_count().await, 0);
}

#[tokio::test]
async fn shutdown_leaves_jobs_working_and_a_new_runner_resumes_them() {
    let fixture = Fixture::new().await;
    let first_script = Script::new([Step::Gate]);
    let first = fixture.runner(quick(), &first_script);
    first.start().await.unwrap();
    let job = submit(&first, 1).await;
    eventually("the handler runs", async || first_script.calls().len() == 1).await;

    tokio::time::timeout(PATIENCE, first.shutdown()).await.expect("shutdown finishes");
    assert_eq!(first_script.dropped(), 1, "shutdown stops the attempt");
    let left = first.get(&job.id).await.unwrap().unwrap();
    assert_eq!((left.status, left.attempts), (JobStatus::Working, 1), "not ended, not lost");
    assert_eq!(fixture.lease_owner(&job.id).await, Some(instance(&first)), "still its job");
    assert_eq!(fixture.alive_until(&instance(&first)).await, Some(0), "released at once");
    assert!(matches!(first.submit(new_job(2)).await, Err(SubmitError::ShuttingDown)));

    // The restarted process: a new runner (new instance name) on the same store.
    let second_script = Script::new([]);
    let second = fixture.runner(quick(), &second_script);
    assert_ne!(instance(&second), instance(&first));
    second.start().await.unwrap();
    let done = ended(&second, &job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.output, Some(json!({ "echo": { "n": 1 } })));
    assert_eq!(done.attempts, 2, "the restart counts as an attempt");
    assert_eq!(second_script.calls().iter().map(|call| call.attempts).collect::<Vec<_>>(), [2]);
    assert_eq!(fixture.lease_owner(&job.id).await, None, "an ended job has no owner");
    second.shutdown().await;
    assert_eq!(fixture.alive_until(&instance(&second)).await, Some(0));
}

#[tokio::test]
async fn a_running_process_keeps_its_heartbeat_and_its_jobs() {
    let fixture = Fixture::new().await;
    let config = quick();
    let lease = i64::try_from(config.lease.as_micros()).unwrap();
    let script = Script::new([Step::Gate]);
    let runner = fixture.runner(config, &script);
    let me = instance(&runner);
    let before = Micros::now();
    runner.start().await.unwrap();
    // `start` has heartbeat before returning, so a job submitted now is never an orphan.
    let first = fixture.alive_until(&me).await.expect("start records the instance");
    assert!(first >= before.0 + lease, "alive for a lease from start: {first}");
    let job = submit(&runner, 1).await;
    assert_eq!(fixture.lease_owner(&job.id).await, Some(me.clone()));
    eventually("the handler runs", async || script.calls().len() == 1).await;

    // The heartbeat is what keeps another process (or this one's own recovery) from taking
    // over a job that is still running. Waiting until it has moved by two leases means the
    // original heartbeat would long have run out had it not been renewed.
    eventually("the heartbeat advances", async || {
        fixture.alive_until(&me).await.is_some_and(|until| until > first + 2 * lease)
    })
    .await;
    assert_eq!(fixture.instance_count().await, 1, "renewed in place, one row per process");
    assert_eq!(fixture.lease_owner(&job.id).await, Some(me.clone()), "never claimed");
    assert_eq!(script.calls().len(), 1, "never resumed while it runs");
    let running = runner.get(&job.id).await.unwrap().unwrap();
    assert_eq!((running.status, running.attempts), (JobStatus::Working, 1));

    script.release.notify_one();
    assert_eq!(ended(&runner, &job.id).await.status, JobStatus::Completed);
    runner.shutdown().await;
}

#[tokio::test]
async fn a_live_processs_jobs_are_left_alone_until_it_releases_them() {
    let fixture = Fixture::new().await;
    // Another process, alive for an hour, running a job this runner also has a handler for.
    let other = Lease {
        instance: Arc::from("other-process"),
        until: Micros::now().plus(Duration::from_secs(3600)),
    };
    fixture.store.heartbeat(&other).await.unwrap();
    let theirs = owned_by(&fixture, "other-process", 1).await;
    let store = Spy::new(&fixture, 0);
    let script = Script::new([]);
    let runner = store.runner(&script);
    runner.start().await.unwrap();

    // A claim is written before its pass returns, so after one pass the owner tells all.
    eventually("the runner has looked for orphans", async || store.claim_passes() >= 1).await;
    assert_eq!(fixture.lease_owner(&theirs.id).await.as_deref(), Some("other-process"));
    assert!(script.calls().is_empty(), "a live process's job is not run twice");

    // Once that process hands its jobs back (or its heartbeat runs out) they are taken over.
    fixture.store.release("other-process").await.unwrap();
    let done = ended(&runner, &theirs.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
    assert_eq!(script.calls().len(), 1);
    runner.shutdown().await;
}

#[tokio::test]
async fn start_fails_when_the_store_cannot_record_the_heartbeat() {
    let fixture = Fixture::new().await;
    let script = Script::new([]);
    let runner = fixture.runner(quick(), &script);
    fixture.store.close().await;
    // Serving jobs without a heartbeat would let any other process claim them mid-run.
    assert!(runner.start().await.is_err());
}

#[tokio::test]
async fn a_store_error_on_finish_is_retried() {
    let fixture = Fixture::new().await;
    let store = Spy::new(&fixture, 2);
    let script = Script::new([]);
    let runner = store.runner(&script);
    runner.start().await.unwrap();

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    // The outcome is recorded once the store is back, without running the job again.
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 1));
    assert_eq!(done.output, Some(json!({ "echo": { "n": 1 } })));
    assert_eq!(store.failures_left(), 0);
    assert_eq!(script.calls().len(), 1);
    // Two failures mean two pauses before the third try: 100 ms, then 200 ms.
    let took = script.calls()[0].at.elapsed();
    assert!(took >= Duration::from_millis(300), "recorded after {took:?}");
    assert!(script.discarded().is_empty(), "a completed job keeps its output");
    runner.shutdown().await;
}

#[tokio::test]
async fn an_outcome_the_store_refuses_is_recorded_once_it_accepts() {
    let fixture = Fixture::new().await;
    // More failures than the runner's inline tries (five): the maintenance loop must record it,
    // or the job would stay working while its (live) process no longer drives it.
    let store = Spy::new(&fixture, 7);
    let script = Script::new([]);
    let runner = store.runner(&script);
    runner.start().await.unwrap();
    let job = submit(&runner, 1).await;
    // Five inline tries back off for about 3 s before the loop takes over.
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    let done = runner.wait_for_end(&job.id, deadline).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 1));
    assert_eq!(store.failures_left(), 0);
    assert_eq!(script.calls().len(), 1, "recorded, not run again");
    assert!(script.discarded().is_empty(), "a completed job keeps its output");
    runner.shutdown().await;
}

#[tokio::test]
async fn a_recovered_job_out_of_attempts_fails_as_interrupted() {
    let fixture = Fixture::new().await;
    let config = quick();
    let job = orphan(&fixture, config.max_attempts).await;
    // Its process died two days ago: the row is stale and the new runner's heartbeat drops it.
    heartbeat_expired(&fixture, "dead-process", Duration::from_secs(2 * 24 * 3600)).await;
    let script = Script::new([]);
    let runner = fixture.runner(config, &script);
    runner.start().await.unwrap();
    assert_eq!(fixture.alive_until("dead-process").await, None);

    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, error_code(&done)), (JobStatus::Failed, "interrupted"));
    assert!(script.calls().is_empty(), "the handler is not run again");
    assert_discarded(&script, &[job.id]).await;
    runner.shutdown().await;
}

#[tokio::test]
async fn a_recovered_job_with_attempts_left_is_resumed() {
    let fixture = Fixture::new().await;
    let job = orphan(&fixture, 1).await;
    // Its process crashed a moment ago: the heartbeat has only just run out.
    heartbeat_expired(&fixture, "dead-process", Duration::from_millis(1)).await;
    let script = Script::new([]);
    let runner = fixture.runner(quick(), &script);
    runner.start().await.unwrap();

    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
    assert_eq!(script.calls().len(), 1);
    assert!(fixture.alive_until("dead-process").await.is_some(), "a recent row is kept");
    runner.shutdown().await;
}

#[tokio::test]
async fn without_resume_a_recovered_job_fails_as_interrupted() {
    let fixture = Fixture::new().await;
    let job = orphan(&fixture, 1).await;
    let script = Script::new([]);
    let config = JobsConfig { resume_interrupted: false, ..quick() };
    let runner = fixture.runner(config, &script);
    runner.start().await.unwrap();

    let done = ended(&runner, &job.id).await;
    assert_eq!((done.status, error_code(&done)), (JobStatus::Failed, "interrupted"));
    assert!(done.error.unwrap().message.contains("restarted"));
    assert!(script.calls().is_empty());
    assert_discarded(&script, &[job.id]).await;
    runner.shutdown().await;
}

#[tokio::test]
async fn finished_jobs_are_purged_after_retention() {
    let fixture = Fixture::new().await;
    let script = Script::new([]);
    let config = JobsConfig { retention: Duration::from_millis(200).into(), ..quick() };
    let runner = fixture.runner(config, &script);

    // The maintenance loop is not started yet, so nothing can be purged until it is.
    let job = submit(&runner, 1).await;
    assert_eq!(ended(&runner, &job.id).await.status, JobStatus::Completed);
    assert!(script.discarded().is_empty(), "completion alone keeps the output");

    runner.start().await.unwrap();
    eventually("the job is purged", async || runner.get(&job.id).await.unwrap().is_none()).await;
    assert_discarded(&script, std::slice::from_ref(&job.id)).await;
    runner.shutdown().await;
}

#[tokio::test]
async fn estimates_grow_with_the_queue() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate, Step::Gate]);
    let config = JobsConfig { concurrency: 1, ..quick() };
    let runner = fixture.runner(config, &script);
    let typical = u64::try_from(script.typical.as_millis()).unwrap();

    let first = submit(&runner, 1).await;
    let second = submit(&runner, 2).await;
    assert_eq!(first.eta_ms, typical, "alone in the lane: one typical run");
    assert_eq!(second.eta_ms, 2 * typical, "behind one job: two runs");
    // One release per gate, each once its job is waiting: a `Notify` keeps only one permit.
    for job in [&first, &second] {
        eventually("the job runs", async || script.calls().iter().any(|call| call.id == job.id))
            .await;
        script.release.notify_one();
        assert_eq!(ended(&runner, &job.id).await.status, JobStatus::Completed);
    }
}

/// Job `n`, recognised as a repeat by `key` within `window`; `local` when its conversation is
/// one of this process's, so the runner's memory of keys answers before the store.
fn keyed_job(n: u32, key: &str, window: Duration, local: bool) -> NewJob {
    NewJob { dedupe: Some(Dedupe { key: key.to_owned(), window, local }), ..new_job(n) }
}

/// Each dedupe test runs twice: once with keys the store is asked about, once with keys of a
/// local conversation, whose answers must be the same.
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn store() {
                super::$name(false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn local() {
                super::$name(true).await;
            }
        }
    )*};
}

both_ways!(
    a_repeated_call_within_the_window_returns_the_same_job,
    a_repeated_call_after_a_failure_or_the_window_makes_a_new_job,
    concurrent_repeated_calls_make_exactly_one_job,
);

async fn a_repeated_call_within_the_window_returns_the_same_job(local: bool) {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate]);
    let runner = fixture.runner(quick(), &script);
    let window = Duration::from_secs(60);

    let first = submit_new(&runner, keyed_job(1, "k", window, local)).await;
    assert!(!first.duplicate);
    let again = submit_new(&runner, keyed_job(2, "k", window, local)).await;
    assert_eq!((again.duplicate, &again.job.id), (true, &first.job.id), "while it works");
    assert_eq!(again.job.input, json!({ "n": 1 }), "the existing job, as stored");

    script.release.notify_one();
    let done = ended(&runner, &first.job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    let after = submit_new(&runner, keyed_job(3, "k", window, local)).await;
    assert_eq!(after, Submitted { job: done, duplicate: true }, "and once it has completed");
    assert_eq!(fixture.row_count().await, 1);
    assert_eq!(script.calls().len(), 1, "the work was done once");

    // Another key, another owner or no key at all: a new job each time.
    let other_key = submit_new(&runner, keyed_job(4, "other", window, local)).await;
    let other_owner =
        submit_new(&runner, NewJob { owner: "bob".to_owned(), ..keyed_job(5, "k", window, local) })
            .await;
    let unkeyed = submit_new(&runner, new_job(6)).await;
    for submitted in [&other_key, &other_owner, &unkeyed] {
        assert!(!submitted.duplicate, "{:?}", submitted.job.input);
        assert_eq!(ended(&runner, &submitted.job.id).await.status, JobStatus::Completed);
    }
    assert_eq!(fixture.row_count().await, 4);
}

async fn a_repeated_call_after_a_failure_or_the_window_makes_a_new_job(local: bool) {
    let fixture = Fixture::new().await;
    let script = Script::new([failure("content_policy", false, None)]);
    let runner = fixture.runner(quick(), &script);
    let window = Duration::from_millis(200);

    let failed = submit_new(&runner, keyed_job(1, "k", window, local)).await;
    assert_eq!(ended(&runner, &failed.job.id).await.status, JobStatus::Failed);
    // Asking again after a failure means trying again.
    let retried = submit_new(&runner, keyed_job(2, "k", window, local)).await;
    assert!(!retried.duplicate);
    assert_ne!(retried.job.id, failed.job.id);
    assert_eq!(ended(&runner, &retried.job.id).await.status, JobStatus::Completed);
    assert_eq!(submit_new(&runner, keyed_job(3, "k", window, local)).await.job.id, retried.job.id);

    // Past the window even a completed job is old news.
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    let later = submit_new(&runner, keyed_job(4, "k", window, local)).await;
    assert!(!later.duplicate);
    assert_ne!(later.job.id, retried.job.id);
    assert_eq!(ended(&runner, &later.job.id).await.status, JobStatus::Completed);
    assert_eq!(fixture.row_count().await, 3);
}

async fn concurrent_repeated_calls_make_exactly_one_job(local: bool) {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Gate]);
    // Fewer places than callers: repeats must not take a place in the queue either.
    let config = JobsConfig { concurrency: 1, queue: 2, ..quick() };
    let runner = fixture.runner(config, &script);
    let window = Duration::from_secs(60);

    let calls = (0..16).map(|n| {
        let runner = runner.clone();
        tokio::spawn(async move { runner.submit(keyed_job(n, "same", window, local)).await })
    });
    let results = futures::future::join_all(calls).await;
    let submitted: Vec<Submitted> =
        results.into_iter().map(|joined| joined.expect("task").expect("submit")).collect();

    let new: Vec<&Submitted> = submitted.iter().filter(|s| !s.duplicate).collect();
    assert_eq!(new.len(), 1, "one caller created the job, {} repeated it", submitted.len() - 1);
    let id = &new[0].job.id;
    assert!(submitted.iter().all(|s| &s.job.id == id), "every caller got the same job");
    assert_eq!(fixture.row_count().await, 1);

    script.release.notify_one();
    assert_eq!(ended(&runner, id).await.status, JobStatus::Completed);
    assert_eq!(script.calls().len(), 1);
}

/// A composer that names its events and sends them to one webhook, and counts its calls.
#[derive(Debug, Default)]
struct Tagged {
    calls: Mutex<Vec<(JobChange, JobId)>>,
}

const HOOK: &str = "https://hooks.example/offstage";

impl EventComposer for Tagged {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
        self.calls.lock().unwrap().push((change, job.id.clone()));
        NewEvent {
            kind: format!("tagged.{}", change.kind(job)),
            payload: json!({ "tagged": job.id, "status": job.status, "input": job.input }),
            webhooks: vec![HOOK.to_owned()],
        }
    }
}

#[tokio::test]
async fn the_builders_composer_writes_every_event() {
    let fixture = Fixture::new().await;
    let script = Script::new([Step::Succeed, Step::Gate]);
    let composer = Arc::new(Tagged::default());
    let store: Arc<dyn JobStore> = fixture.store.clone();
    let runner = JobRunner::builder(store, quick())
        .handler(TOOL, script.clone())
        .composer(composer.clone())
        .build();
    let mut events = runner.events().subscribe();

    let job = submit(&runner, 1).await;
    let done = ended(&runner, &job.id).await;
    let seen = published_until_ended(&mut events).await;
    let stored = stored_events(&fixture, &job.id).await;
    assert_eq!(
        stored.iter().map(|event| event.kind.as_str()).collect::<Vec<_>>(),
        ["tagged.job.created", "tagged.job.completed"]
    );
    assert_eq!(
        stored[1].payload,
        json!({ "tagged": job.id, "status": "completed", "input": { "n": 1 } })
    );
    assert_eq!(
        seen.iter().map(|event| &event.event).collect::<Vec<_>>(),
        stored.iter().collect::<Vec<_>>(),
        "published events carry the stored events"
    );
    assert_eq!(seen[1].job, done);
    let hooks = fixture.store.deliveries_of(&job.id).await.unwrap();
    let queued: Vec<(i64, &str)> =
        hooks.iter().map(|state| (state.event_id, state.endpoint.as_str())).collect();
    assert_eq!(queued, [(stored[0].id, HOOK), (stored[1].id, HOOK)], "its webhooks are queued");

    // A cancellation is composed by it too.
    let gated = submit(&runner, 2).await;
    eventually("the handler runs", async || script.calls().len() == 2).await;
    let outcome = runner.cancel(&gated.id, cancelled_by_user()).await.unwrap();
    assert!(matches!(outcome, CancelOutcome::Cancelled(_)), "{outcome:?}");
    let seen = published_until_ended(&mut events).await;
    let stored = stored_events(&fixture, &gated.id).await;
    assert_eq!(stored[1].kind, "tagged.job.cancelled");
    assert_eq!(
        seen.iter().map(|event| &event.event).collect::<Vec<_>>(),
        stored.iter().collect::<Vec<_>>()
    );

    let calls = composer.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            (JobChange::Created, job.id.clone()),
            (JobChange::Ended, job.id),
            (JobChange::Created, gated.id.clone()),
            (JobChange::Ended, gated.id),
        ],
        "one composition per event, nothing else"
    );
}
