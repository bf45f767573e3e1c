//! The job store contract, run on both stores (each test once on SQLite, once on a fresh
//! PostgreSQL database): field round trips, the compare-and-set state changes, job ownership
//! and instance heartbeats (heartbeat, release, orphan claims), retention purges, durability,
//! group commit and concurrent writers. The event log, duplicate detection and announcements
//! are tested in `event_log.rs`, the webhook outbox in `deliveries.rs`. What only the shared
//! store has (several instances on one database) is in `postgres/tests.rs`.

mod deliveries;
mod event_log;

use std::{ops::Deref, path::PathBuf, sync::Arc};

use serde_json::json;
use tempfile::TempDir;

use super::{
    Job, JobContext, JobError, JobId, JobOutput, JobStatus, Micros, Outcome,
    events::{BareEvents, EventComposer, JobChange, NewEvent, StoredEvent},
    postgres::PgJobStore,
    sqlite::SqliteJobStore,
    store::{EventFilter, Insert, JobStore, Lease, PurgedJob, StoreError},
    testdb::TestDb,
};

/// Runs each named test (an `async fn(Harness)`) once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Harness::open(super::Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(store) = super::Harness::open(super::Backend::Postgres).await {
                    super::$name(store).await;
                }
            }
        }
    )*};
}
use contract;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test, reachable through the trait (`Deref`), plus what tests need beyond it:
/// reading and editing rows directly, and opening the same data again as a new process would.
#[derive(Debug, Clone)]
struct Harness {
    store: Opened,
    /// Keeps the directory or database alive as long as any store opened on it.
    place: Arc<Place>,
}

#[derive(Debug, Clone)]
enum Opened {
    Sqlite(SqliteJobStore),
    Postgres(PgJobStore),
}

#[derive(Debug)]
enum Place {
    Dir(TempDir),
    Database(TestDb),
}

impl Place {
    fn file(&self) -> PathBuf {
        match self {
            Place::Dir(dir) => dir.path().join("offstage.db"),
            Place::Database(_) => unreachable!("a database has no file"),
        }
    }
}

impl Deref for Harness {
    type Target = dyn JobStore;

    fn deref(&self) -> &Self::Target {
        match &self.store {
            Opened::Sqlite(store) => store,
            Opened::Postgres(store) => store,
        }
    }
}

impl Harness {
    /// A fresh store; `None` when the test has no PostgreSQL to run on (see `testdb.rs`).
    async fn open(backend: Backend) -> Option<Harness> {
        let place = match backend {
            Backend::Sqlite => Place::Dir(tempfile::tempdir().expect("temp dir")),
            Backend::Postgres => Place::Database(TestDb::create().await?),
        };
        Some(Harness::on(Arc::new(place)).await)
    }

    async fn on(place: Arc<Place>) -> Harness {
        let store = match place.as_ref() {
            Place::Dir(_) => {
                Opened::Sqlite(SqliteJobStore::open(&place.file()).await.expect("open"))
            }
            Place::Database(db) => Opened::Postgres(PgJobStore::open(&db.url).await.expect("open")),
        };
        Harness { store, place }
    }

    /// Another store on the same data, as the next process (or another instance) opens it.
    async fn reopen(&self) -> Harness {
        Harness::on(self.place.clone()).await
    }

    async fn close(&self) {
        match &self.store {
            Opened::Sqlite(store) => store.close().await,
            Opened::Postgres(store) => store.close().await,
        }
    }

    /// Runs a statement (binds `$1`, `$2`… in order) on the store's database.
    async fn execute(&self, sql: &'static str, binds: &[&str]) {
        match &self.store {
            Opened::Sqlite(store) => {
                let query = binds.iter().fold(sqlx::query(sql), |query, bind| query.bind(*bind));
                query.execute(&store.writer).await.expect(sql);
            }
            Opened::Postgres(store) => {
                let query = binds.iter().fold(sqlx::query(sql), |query, bind| query.bind(*bind));
                query.execute(&store.pool).await.expect(sql);
            }
        }
    }

    /// The one value a query returns, read as text (`NULL` as `None`).
    async fn text(&self, sql: &'static str, binds: &[&str]) -> Option<String> {
        match &self.store {
            Opened::Sqlite(store) => {
                let query =
                    binds.iter().fold(sqlx::query_scalar(sql), |query, bind| query.bind(*bind));
                query.fetch_one(&store.reader).await.expect(sql)
            }
            Opened::Postgres(store) => {
                let query =
                    binds.iter().fold(sqlx::query_scalar(sql), |query, bind| query.bind(*bind));
                query.fetch_one(&store.pool).await.expect(sql)
            }
        }
    }

    /// A query's `(text, integer)` rows.
    async fn pairs(&self, sql: &'static str) -> Vec<(String, i64)> {
        match &self.store {
            Opened::Sqlite(store) => sqlx::query_as(sql).fetch_all(&store.reader).await.expect(sql),
            Opened::Postgres(store) => sqlx::query_as(sql).fetch_all(&store.pool).await.expect(sql),
        }
    }

    /// `SELECT COUNT(*) FROM <table>`.
    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.store {
            Opened::Sqlite(store) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&store.reader).await
            }
            Opened::Postgres(store) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&store.pool).await
            }
        }
        .expect("count")
    }

    fn is_postgres(&self) -> bool {
        matches!(self.store, Opened::Postgres(_))
    }
}

/// A day in microseconds: instance rows this much older than a new heartbeat are deleted.
const DAY: i64 = 24 * 3600 * 1_000_000;

fn lease(instance: &str, until: i64) -> Lease {
    Lease { instance: Arc::from(instance), until: Micros(until) }
}

/// A new `working` job as the runner would insert it, created at `created_at`.
fn job(tool: &str, created_at: i64) -> Job {
    Job {
        owner: "owner-a".to_owned(),
        input: json!({ "prompt": "a fox", "n": 1 }),
        eta_ms: 1_000,
        ..Job::working(tool, created_at)
    }
}

/// Inserts a job owned by `instance`.
async fn insert(store: &Harness, tool: &str, created_at: i64, instance: &str) -> Job {
    let job = job(tool, created_at);
    put(store, &job, instance).await.expect("insert");
    job
}

/// Inserts `job` as the runner does, with its bare creation event and no dedupe key.
async fn put(store: &Harness, job: &Job, instance: &str) -> Result<StoredEvent, StoreError> {
    store.insert(Insert::new(job, instance, BareEvents.compose(JobChange::Created, job))).await
}

/// Ends a job with its bare event, returning the job only: what most tests look at.
async fn finish(
    store: &Harness,
    id: &JobId,
    outcome: &Outcome,
    now: Micros,
) -> Result<Option<Job>, StoreError> {
    let ended = store.finish(id, outcome, now, &BareEvents).await?;
    Ok(ended.map(|(job, _event)| job))
}

/// A new `working` job of `owner` in `conversation` (if any), created at `created_at`.
fn job_of(owner: &str, conversation: Option<&str>, created_at: i64) -> Job {
    let mut job = job("t", created_at);
    job.owner = owner.to_owned();
    job.context.conversation = conversation.map(str::to_owned);
    job
}

fn error(code: &str) -> JobError {
    JobError { detail: None, code: code.to_owned(), message: format!("{code} happened.") }
}

/// The job's `lease_owner`, which the trait never returns: read straight from the table.
async fn lease_owner(store: &Harness, id: &JobId) -> Option<String> {
    store.text("SELECT lease_owner FROM jobs WHERE id = $1", &[id.as_str()]).await
}

/// Every `(id, alive_until)` row of `instances`, sorted by id.
async fn instances(store: &Harness) -> Vec<(String, i64)> {
    store.pairs("SELECT id, alive_until FROM instances ORDER BY id").await
}

/// Sets a working job's owner to NULL, which no trait method does but a hand-edited or
/// future-migrated database may hold.
async fn clear_owner(store: &Harness, id: &JobId) {
    store.execute("UPDATE jobs SET lease_owner = NULL WHERE id = $1", &[id.as_str()]).await;
}

async fn row_count(store: &Harness) -> i64 {
    store.count("jobs").await
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs.iter().map(|job| job.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<JobId>) -> Vec<JobId> {
    ids.sort();
    ids
}

fn owned(instance: &str) -> Option<String> {
    Some(instance.to_owned())
}

async fn insert_then_get_round_trips_every_field(store: Harness) {
    // Every column gets a distinctive value, including JSON that text storage could mangle
    // (unicode, nesting, a float, null) and a recovered job's non-zero attempt count.
    let job = Job {
        id: JobId::generate(),
        tool: "generate_image".to_owned(),
        produces: JobOutput::Image,
        owner: "sha256:owner-7f3a".to_owned(),
        input: json!({
            "prompt": "un renard « roux » 🦊",
            "size": { "w": 1024, "h": 768 },
            "ratio": 0.5,
            "tags": ["a", null, true],
        }),
        status: JobStatus::Working,
        output: None,
        progress: None,
        error: None,
        attempts: 2,
        eta_ms: 25_400,
        created_at: Micros(1_700_000_000_123_456),
        updated_at: Micros(1_700_000_000_123_457),
        started_at: None,
        finished_at: None,
        context: JobContext {
            conversation: Some("conv « 7 »".to_owned()),
            delivery: Some("when_idle".to_owned()),
            call_id: Some("call_9Xz".to_owned()),
        },
    };
    put(&store, &job, "instance-a").await.unwrap();

    assert_eq!(store.get(&job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(lease_owner(&store, &job.id).await, owned("instance-a"));
    // Inserting names the owner; only a heartbeat says that the owner is alive.
    assert_eq!(instances(&store).await, []);
    assert_eq!(store.get(&JobId::generate()).await.unwrap(), None, "unknown ids are absent");

    // The output only exists once finished; it must come back exactly as given too.
    let output =
        json!({ "image": { "width": 1024, "format": "png" }, "bytes": 12_345, "note": "✓" });
    let finished_at = Micros(1_700_000_009_000_000);
    let ended = finish(&store, &job.id, &Outcome::Completed(output.clone()), finished_at)
        .await
        .unwrap()
        .expect("a working job finishes");
    let expected = Job {
        status: JobStatus::Completed,
        output: Some(output),
        progress: None,
        updated_at: finished_at,
        finished_at: Some(finished_at),
        ..job.clone()
    };
    assert_eq!(ended, expected);
    assert_eq!(store.get(&job.id).await.unwrap(), Some(expected));
}

async fn failed_and_cancelled_outcomes_keep_their_error(store: Harness) {
    for (outcome, expected) in [
        (Outcome::Failed(error("provider_down")), error("provider_down")),
        (Outcome::Cancelled(error("cancelled")), error("cancelled")),
    ] {
        let job = insert(&store, "t", 10, "a").await;
        let ended = finish(&store, &job.id, &outcome, Micros(50)).await.unwrap().unwrap();
        assert_eq!(ended.status, outcome.status());
        assert_eq!(ended.error, Some(expected));
        assert_eq!(ended.output, None);
        assert_eq!(store.get(&job.id).await.unwrap(), Some(ended));
    }
}

async fn start_attempt_counts_attempts_and_stamps_only_the_first_start(store: Harness) {
    let job = insert(&store, "t", 10, "a").await;

    let first = store.start_attempt(&job.id, Micros(20)).await.unwrap().unwrap();
    assert_eq!(
        (first.attempts, first.started_at, first.updated_at),
        (1, Some(Micros(20)), Micros(20))
    );

    // A retry counts, moves `updated_at`, but the job started when it first started.
    let second = store.start_attempt(&job.id, Micros(30)).await.unwrap().unwrap();
    assert_eq!(
        (second.attempts, second.started_at, second.updated_at),
        (2, Some(Micros(20)), Micros(30))
    );
    assert_eq!(store.get(&job.id).await.unwrap(), Some(second));
    assert_eq!(lease_owner(&store, &job.id).await, owned("a"), "attempts keep the owner");

    // Once ended, no attempt may start: the runner reads `None` as "stop".
    finish(&store, &job.id, &Outcome::Cancelled(error("cancelled")), Micros(40)).await.unwrap();
    assert_eq!(store.start_attempt(&job.id, Micros(50)).await.unwrap(), None);
    let ended = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!((ended.attempts, ended.updated_at), (2, Micros(40)), "an ended job is untouched");

    assert_eq!(store.start_attempt(&JobId::generate(), Micros(60)).await.unwrap(), None);
}

async fn finish_is_compare_and_set_completion_then_cancel(store: Harness) {
    let job = insert(&store, "t", 10, "a").await;
    let output = json!({ "ok": true });

    let completed =
        finish(&store, &job.id, &Outcome::Completed(output.clone()), Micros(20)).await.unwrap();
    assert_eq!(completed.as_ref().map(|job| job.status), Some(JobStatus::Completed));

    // The cancel lost the race: it must report so and change nothing.
    let cancel = finish(&store, &job.id, &Outcome::Cancelled(error("cancelled")), Micros(30)).await;
    assert_eq!(cancel.unwrap(), None);
    let stored = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(stored, completed.unwrap());
    assert_eq!((stored.output, stored.error), (Some(output), None));
    assert_eq!(stored.finished_at, Some(Micros(20)));
}

async fn finish_is_compare_and_set_cancel_then_completion(store: Harness) {
    let job = insert(&store, "t", 10, "a").await;

    let cancelled =
        finish(&store, &job.id, &Outcome::Cancelled(error("cancelled")), Micros(20)).await.unwrap();
    assert_eq!(cancelled.as_ref().map(|job| job.status), Some(JobStatus::Cancelled));

    // A handler finishing after the cancel must not resurrect the job as completed.
    let late = finish(&store, &job.id, &Outcome::Completed(json!({ "late": 1 })), Micros(30)).await;
    assert_eq!(late.unwrap(), None);
    let late = finish(&store, &job.id, &Outcome::Failed(error("late")), Micros(31)).await;
    assert_eq!(late.unwrap(), None);
    let stored = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(stored, cancelled.unwrap());
    assert_eq!(stored.output, None);
    assert_eq!(stored.error, Some(error("cancelled")));
    assert_eq!(
        finish(&store, &JobId::generate(), &Outcome::Failed(error("x")), Micros(1)).await.unwrap(),
        None
    );
}

async fn ended_jobs_lose_their_owner_and_are_never_claimed(store: Harness) {
    for outcome in [
        Outcome::Completed(json!(1)),
        Outcome::Failed(error("x")),
        Outcome::Cancelled(error("cancelled")),
    ] {
        let job = insert(&store, "t", 10, "a").await;
        finish(&store, &job.id, &outcome, Micros(20)).await.unwrap().unwrap();
        assert_eq!(lease_owner(&store, &job.id).await, None, "{:?}", outcome.status());
    }

    // "a" never heartbeat, so its working jobs would be orphans: ended ones never are.
    let claimed = store.claim_orphans(&lease("b", i64::MAX), Micros(i64::MAX - 1), 10).await;
    assert_eq!(claimed.unwrap(), vec![], "an ended job is never resumed");
}

async fn heartbeat_creates_then_renews_one_row_per_instance(store: Harness) {
    let job = insert(&store, "t", 1, "a").await;

    store.heartbeat(&lease("a", 1_000)).await.unwrap();
    assert_eq!(instances(&store).await, [("a".to_owned(), 1_000)]);

    // Renewing moves the same row, however often: one row per process, not per heartbeat.
    store.heartbeat(&lease("a", 2_000)).await.unwrap();
    store.heartbeat(&lease("a", 3_000)).await.unwrap();
    assert_eq!(instances(&store).await, [("a".to_owned(), 3_000)]);

    store.heartbeat(&lease("b", 2_500)).await.unwrap();
    store.heartbeat(&lease("a", 4_000)).await.unwrap();
    assert_eq!(instances(&store).await, [("a".to_owned(), 4_000), ("b".to_owned(), 2_500)]);

    // Heartbeats never touch jobs: what a process owns changes only by insert, claim or end.
    assert_eq!(lease_owner(&store, &job.id).await, owned("a"));
    assert_eq!(store.get(&job.id).await.unwrap(), Some(job));
}

async fn a_heartbeat_deletes_instances_stale_for_more_than_a_day(store: Harness) {
    let now = 10 * DAY;
    // Each heartbeat deletes rows more than a day older than itself: the released row
    // (alive until 0) goes at once, the others wait for the heartbeat of `me`.
    store.heartbeat(&lease("released", now)).await.unwrap();
    store.release("released").await.unwrap();
    store.heartbeat(&lease("stale", now - DAY - 1)).await.unwrap();
    store.heartbeat(&lease("a-day-old", now - DAY)).await.unwrap();
    store.heartbeat(&lease("recent", now - 1)).await.unwrap();
    let stale_job = insert(&store, "t", 1, "stale").await;

    store.heartbeat(&lease("me", now)).await.unwrap();
    assert_eq!(
        instances(&store).await,
        [
            ("a-day-old".to_owned(), now - DAY),
            ("me".to_owned(), now),
            ("recent".to_owned(), now - 1)
        ],
        "rows more than a day older than the heartbeat are gone, exactly a day old is kept"
    );

    // The dead process's job is not lost with its row: it is an orphan like any other.
    assert_eq!(lease_owner(&store, &stale_job.id).await, owned("stale"));
    let claimed = store.claim_orphans(&lease("me", now), Micros(now), 10).await.unwrap();
    assert_eq!(claimed, vec![stale_job]);
}

async fn claim_orphans_takes_only_working_jobs_whose_owner_is_not_alive(store: Harness) {
    let now = 1_000;
    store.heartbeat(&lease("dead", now - 1)).await.unwrap();
    store.heartbeat(&lease("alive", 5_000)).await.unwrap();
    // Alive until exactly `now` still counts as alive: only `alive_until < now` is orphaned.
    store.heartbeat(&lease("edge", now)).await.unwrap();
    // The claimer heartbeats first, as the runner does, so its claims are not orphans again.
    store.heartbeat(&lease("rescuer", 9_000)).await.unwrap();

    // Created out of order so that the claim order (oldest first) is visible.
    let dead_new = insert(&store, "t", 30, "dead").await;
    let dead_old = insert(&store, "t", 10, "dead").await;
    let unknown_owner = insert(&store, "t", 20, "never-heartbeat").await;
    let no_owner = insert(&store, "t", 25, "cleared").await;
    clear_owner(&store, &no_owner.id).await;
    let live = insert(&store, "t", 5, "alive").await;
    let at_the_limit = insert(&store, "t", 6, "edge").await;
    let ended = insert(&store, "t", 1, "dead").await;
    finish(&store, &ended.id, &Outcome::Failed(error("x")), Micros(200)).await.unwrap().unwrap();

    let rescuer = lease("rescuer", 9_000);
    let first = store.claim_orphans(&rescuer, Micros(now), 1).await.unwrap();
    assert_eq!(first, vec![dead_old.clone()], "limit 1 takes the oldest job, whole");

    let next = store.claim_orphans(&rescuer, Micros(now), 2).await.unwrap();
    assert_eq!(
        ids(&next),
        sorted(vec![unknown_owner.id.clone(), no_owner.id.clone()]),
        "an owner without a row, or no owner at all, is as dead as an expired one"
    );
    let rest = store.claim_orphans(&rescuer, Micros(now), 10).await.unwrap();
    assert_eq!(ids(&rest), vec![dead_new.id.clone()]);

    for id in [&dead_old.id, &unknown_owner.id, &no_owner.id, &dead_new.id] {
        assert_eq!(lease_owner(&store, id).await, owned("rescuer"));
    }
    // Neither a live owner (nor one alive until exactly now) nor an ended job was touched.
    assert_eq!(lease_owner(&store, &live.id).await, owned("alive"));
    assert_eq!(lease_owner(&store, &at_the_limit.id).await, owned("edge"));
    assert_eq!(lease_owner(&store, &ended.id).await, None);
    assert_eq!(store.get(&ended.id).await.unwrap().unwrap().status, JobStatus::Failed);
    // Claiming changes ownership only: no instance row is created, moved or deleted.
    assert_eq!(
        instances(&store).await,
        [
            ("alive".to_owned(), 5_000),
            ("dead".to_owned(), now - 1),
            ("edge".to_owned(), now),
            ("rescuer".to_owned(), 9_000),
        ]
    );

    // The new owner is alive, so nothing is left to claim now...
    assert_eq!(store.claim_orphans(&lease("other", 9_500), Micros(now), 10).await.unwrap(), vec![]);
    // ...and a microsecond later the instance that was alive until `now` has died.
    let later = store.claim_orphans(&lease("other", 9_500), Micros(now + 1), 10).await.unwrap();
    assert_eq!(later, vec![at_the_limit.clone()]);
    assert_eq!(lease_owner(&store, &at_the_limit.id).await, owned("other"));
    assert_eq!(lease_owner(&store, &live.id).await, owned("alive"));
}

async fn claim_orphans_does_not_heartbeat_for_the_claimer(store: Harness) {
    // Why the runner heartbeats before it claims: a claimer without a live row owns orphans.
    let job = insert(&store, "t", 1, "dead").await;

    let claimed = store.claim_orphans(&lease("careless", 9_000), Micros(100), 10).await.unwrap();
    assert_eq!(claimed, vec![job.clone()]);
    assert_eq!(lease_owner(&store, &job.id).await, owned("careless"));
    assert_eq!(instances(&store).await, [], "the lease's `until` is not recorded");

    let again = store.claim_orphans(&lease("next", 9_000), Micros(100), 10).await.unwrap();
    assert_eq!(again, vec![job.clone()]);
    assert_eq!(lease_owner(&store, &job.id).await, owned("next"));
}

async fn claim_orphans_never_takes_the_claimers_own_jobs(store: Harness) {
    // A process whose heartbeat lapsed is still running its jobs; claiming them back would run
    // them twice. Other processes may take them; it may not.
    store.heartbeat(&lease("me", 50)).await.unwrap();
    let job = insert(&store, "t", 1, "me").await;
    assert_eq!(store.claim_orphans(&lease("me", 9_000), Micros(100), 10).await.unwrap(), vec![]);
    assert_eq!(lease_owner(&store, &job.id).await, owned("me"));
    let taken = store.claim_orphans(&lease("other", 9_000), Micros(100), 10).await.unwrap();
    assert_eq!(ids(&taken), vec![job.id.clone()]);
}

async fn release_makes_a_live_instances_jobs_claimable_at_once(store: Harness) {
    let now = Micros::now();
    let far = now.plus(std::time::Duration::from_secs(3600)).0;
    store.heartbeat(&lease("me", far)).await.unwrap();
    store.heartbeat(&lease("them", far)).await.unwrap();
    store.heartbeat(&lease("next", far)).await.unwrap();
    let mine = insert(&store, "t", 1, "me").await;
    let mine_ended = insert(&store, "t", 2, "me").await;
    finish(&store, &mine_ended.id, &Outcome::Completed(json!(1)), Micros(10)).await.unwrap();
    let theirs = insert(&store, "t", 3, "them").await;
    assert_eq!(store.claim_orphans(&lease("next", far), now, 10).await.unwrap(), vec![]);

    store.release("me").await.unwrap();
    assert_eq!(
        instances(&store).await,
        [("me".to_owned(), 0), ("next".to_owned(), far), ("them".to_owned(), far)]
    );
    // Releasing an instance that never heartbeat is harmless and records nothing.
    store.release("stranger").await.unwrap();
    assert_eq!(instances(&store).await.len(), 3);

    let claimed = store.claim_orphans(&lease("next", far), now, 10).await.unwrap();
    assert_eq!(claimed, vec![mine.clone()]);
    assert_eq!(lease_owner(&store, &mine.id).await, owned("next"));
    assert_eq!(lease_owner(&store, &theirs.id).await, owned("them"));
    assert_eq!(store.get(&mine_ended.id).await.unwrap().unwrap().status, JobStatus::Completed);
}

async fn purge_deletes_only_jobs_that_ended_before_the_cutoff(store: Harness) {
    let mut old = Vec::new();
    for (tool, outcome, finished) in [
        ("a", Outcome::Completed(json!(1)), 100),
        ("b", Outcome::Failed(error("x")), 200),
        ("c", Outcome::Cancelled(error("cancelled")), 300),
    ] {
        let job = insert(&store, tool, 1, "i").await;
        finish(&store, &job.id, &outcome, Micros(finished)).await.unwrap().unwrap();
        old.push((job.id, tool.to_owned()));
    }
    let recent = insert(&store, "d", 1, "i").await;
    finish(&store, &recent.id, &Outcome::Completed(json!(2)), Micros(1_000)).await.unwrap();
    let at_cutoff = insert(&store, "e", 1, "i").await;
    finish(&store, &at_cutoff.id, &Outcome::Completed(json!(3)), Micros(500)).await.unwrap();
    // A working job is never purged, however old, even with an owner that is not alive.
    let working = insert(&store, "f", 0, "i").await;

    let first = store.purge_finished_before(Micros(500), 2).await.unwrap();
    assert_eq!(first.len(), 2, "the limit bounds one purge");
    let rest = store.purge_finished_before(Micros(500), 10).await.unwrap();
    let mut purged: Vec<(JobId, String)> =
        first.into_iter().chain(rest).map(|job| (job.id, job.tool)).collect();
    purged.sort();
    old.sort();
    assert_eq!(purged, old, "every old ended job, with its tool");

    for (id, _) in &old {
        assert_eq!(store.get(id).await.unwrap(), None);
    }
    for kept in [&recent, &at_cutoff, &working] {
        assert!(store.get(&kept.id).await.unwrap().is_some(), "{} was kept", kept.tool);
    }
    assert_eq!(store.purge_finished_before(Micros(500), 10).await.unwrap(), vec![]);
    assert_eq!(row_count(&store).await, 3);
}

async fn jobs_survive_closing_and_reopening_the_store(store: Harness) {
    store.heartbeat(&lease("before-restart", 2_000)).await.unwrap();
    let working = insert(&store, "t", 1, "before-restart").await;
    let started = store.start_attempt(&working.id, Micros(5)).await.unwrap().unwrap();
    let done = insert(&store, "t", 2, "before-restart").await;
    let done =
        finish(&store, &done.id, &Outcome::Completed(json!({ "kept": true })), Micros(9)).await;
    let done = done.unwrap().unwrap();
    store.close().await;

    // Reopening runs the migrations again over the existing schema, which must be a no-op.
    let reopened = store.reopen().await;
    assert_eq!(reopened.get(&working.id).await.unwrap(), Some(started.clone()));
    assert_eq!(reopened.get(&done.id).await.unwrap(), Some(done));
    // The owner and its heartbeat persisted too, which is what lets the next process tell
    // when to resume the job: not while the old one may still be alive, at once after.
    assert_eq!(lease_owner(&reopened, &working.id).await, owned("before-restart"));
    assert_eq!(instances(&reopened).await, [("before-restart".to_owned(), 2_000)]);
    reopened.heartbeat(&lease("after", 9_000)).await.unwrap();
    assert_eq!(
        reopened.claim_orphans(&lease("after", 9_000), Micros(2_000), 10).await.unwrap(),
        vec![]
    );
    let resumed = reopened.claim_orphans(&lease("after", 9_000), Micros(2_001), 10).await.unwrap();
    assert_eq!(resumed, vec![started]);
    assert_eq!(lease_owner(&reopened, &working.id).await, owned("after"));
    reopened.close().await;
}

async fn committed_writes_are_visible_to_another_store_on_the_same_data(store: Harness) {
    // What a second process sees: a write that returned is on disk, no close needed.
    let first = store;
    let job = insert(&first, "t", 1, "one").await;
    let second = first.reopen().await;
    assert_eq!(second.get(&job.id).await.unwrap(), Some(job.clone()));
    // A heartbeat is seen by the other process's claim, and so is a release.
    first.heartbeat(&lease("one", 1_000)).await.unwrap();
    assert_eq!(second.claim_orphans(&lease("two", 9_000), Micros(500), 10).await.unwrap(), vec![]);
    first.release("one").await.unwrap();
    let claimed = second.claim_orphans(&lease("two", 9_000), Micros(500), 10).await.unwrap();
    assert_eq!(claimed, vec![job.clone()]);
    assert_eq!(lease_owner(&first, &job.id).await, owned("two"));

    let ended = finish(&second, &job.id, &Outcome::Completed(json!(1)), Micros(3)).await.unwrap();
    assert_eq!(first.get(&job.id).await.unwrap(), ended);
    // The compare-and-set holds across connections as well.
    assert_eq!(
        finish(&first, &job.id, &Outcome::Failed(error("x")), Micros(4)).await.unwrap(),
        None
    );
}

async fn corrupt_rows_are_reported_not_misread(store: Harness) {
    let job = insert(&store, "t", 1, "i").await;
    store.execute("UPDATE jobs SET input = '{not json' WHERE id = $1", &[job.id.as_str()]).await;
    match store.get(&job.id).await {
        Err(StoreError::Corrupt { id, reason }) => {
            assert_eq!(id, job.id.as_str());
            assert!(reason.starts_with("input"), "{reason}");
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
}

async fn concurrent_inserts_all_succeed(store: Harness) {
    // Concurrent inserts are queued and written together; each caller still gets its answer,
    // and each row keeps its own values (here its owner) inside a multi-row statement.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            let job = job("t", n);
            let instance = format!("i{}", n % 4);
            put(&store, &job, &instance).await.map(|_event| (job, instance))
        });
    }
    let mut inserted = Vec::new();
    while let Some(result) = tasks.join_next().await {
        inserted.push(result.expect("task").expect("insert"));
    }
    assert_eq!(inserted.len(), 200);
    assert_eq!(row_count(&store).await, 200);
    for (job, instance) in &inserted {
        assert_eq!(store.get(&job.id).await.unwrap().as_ref(), Some(job));
        assert_eq!(lease_owner(&store, &job.id).await.as_ref(), Some(instance));
    }
}

async fn a_rejected_insert_fails_alone(store: Harness) {
    // Inserts may be written together; a row the database refuses (here a duplicate id) must
    // fail only its own caller, whatever else was queued with it.
    let existing = insert(&store, "t", 0, "i").await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=50 {
        let store = store.clone();
        let (job, instance) = if n == 25 {
            (Job { tool: "dup".to_owned(), ..existing.clone() }, "intruder")
        } else {
            (job("t", n), "i")
        };
        tasks.spawn(async move { (job.tool.clone(), put(&store, &job, instance).await) });
    }
    let mut failed = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (tool, inserted) = result.expect("task");
        if let Err(error) = inserted {
            assert!(matches!(error, StoreError::Database(_)), "{error:?}");
            failed.push(tool);
        }
    }
    assert_eq!(failed, ["dup"], "only the duplicate fails");
    assert_eq!(row_count(&store).await, 50);
    assert_eq!(
        store.get(&existing.id).await.unwrap(),
        Some(existing.clone()),
        "the original is intact"
    );
    assert_eq!(lease_owner(&store, &existing.id).await, owned("i"), "and keeps its owner");
}

contract! {
    insert_then_get_round_trips_every_field,
    failed_and_cancelled_outcomes_keep_their_error,
    start_attempt_counts_attempts_and_stamps_only_the_first_start,
    finish_is_compare_and_set_completion_then_cancel,
    finish_is_compare_and_set_cancel_then_completion,
    ended_jobs_lose_their_owner_and_are_never_claimed,
    heartbeat_creates_then_renews_one_row_per_instance,
    a_heartbeat_deletes_instances_stale_for_more_than_a_day,
    claim_orphans_takes_only_working_jobs_whose_owner_is_not_alive,
    claim_orphans_does_not_heartbeat_for_the_claimer,
    claim_orphans_never_takes_the_claimers_own_jobs,
    release_makes_a_live_instances_jobs_claimable_at_once,
    purge_deletes_only_jobs_that_ended_before_the_cutoff,
    jobs_survive_closing_and_reopening_the_store,
    committed_writes_are_visible_to_another_store_on_the_same_data,
    corrupt_rows_are_reported_not_misread,
    concurrent_inserts_all_succeed,
    a_rejected_insert_fails_alone,
}
