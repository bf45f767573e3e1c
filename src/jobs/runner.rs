//! The job runner: admits jobs into bounded per-tool lanes, runs them off the request path with
//! a timeout, retries and cancellation, and keeps them alive across crashes through leases.
//!
//! Invariants:
//! - `submit` never waits for work: it takes an admission permit without blocking (or reports
//!   `Busy`), writes the job, spawns it and returns.
//! - Every state change goes through the store's compare-and-set and is published once on
//!   [`JobEvents`]; a cancel racing a completion ends the job exactly one way.
//! - A job is driven by at most one process: the one holding its lease. Shutdown and crashes
//!   leave it `working`; whoever next finds the lease expired resumes it.

use std::{
    collections::HashMap,
    fmt,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast::error::RecvError};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::settings::JobsConfig;
use super::{
    Job, JobContext, JobError, JobId, JobOutput, JobStatus, Micros, Outcome,
    endings::RecentKeys,
    events::{BareEvents, EventComposer, JobChange, JobEvents},
    store::{Insert, JobStore, Lease, StoreError},
};

/// Work behind one tool. The runner knows jobs only through this trait.
#[async_trait]
pub trait JobHandler: Send + Sync + fmt::Debug + 'static {
    /// Runs one attempt and returns the job's output. Dropping the future cancels the attempt.
    async fn run(&self, job: &Job) -> Result<Value, JobFailure>;

    /// Removes whatever an attempt left behind for a job that will not (or no longer) be read.
    async fn discard(&self, _id: &JobId) {}

    /// How long one attempt usually takes; seeds the estimates given to callers.
    fn typical_duration(&self) -> Duration;

    /// Jobs of this tool running at once, when the tool declares it; the operator's
    /// `jobs.tools.<name>.concurrency` wins, then this, then `jobs.concurrency`.
    fn concurrency(&self) -> Option<usize> {
        None
    }

    /// Longest a job of this tool may take, all attempts included, when the tool declares it
    /// (otherwise `jobs.timeout`).
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// A failed attempt, described so the runner can decide to retry and the user can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure {
    pub code: String,
    /// A sentence a voice model can say.
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// What the job records about the failure (e.g. each provider attempt), kept with it.
    pub detail: Option<Value>,
}

/// What a caller asks to run.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tool: String,
    /// What the job will produce, stored with it for the views (opaque here).
    pub produces: JobOutput,
    pub owner: String,
    pub input: Value,
    pub context: JobContext,
    /// Repeated calls: a job with the same key created within the window is returned instead.
    pub dedupe: Option<Dedupe>,
}

/// How to recognise a repeated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedupe {
    /// Same tool, same normalised arguments, same conversation.
    pub key: String,
    pub window: Duration,
    /// Every job with this key is created by this process (its conversation is one of this
    /// process's sessions), so a key it has not used within the window needs no store lookup.
    pub local: bool,
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// True when an existing job was returned for a repeated call.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the {tool} queue is full; retry in {} s", retry_after.as_secs())]
    Busy { tool: String, retry_after: Duration },
    #[error("no job handler for tool {0}")]
    UnknownTool(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `cancel` found.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    Cancelled(Job),
    AlreadyEnded(Job),
    NotFound,
}

/// Handle to the runner; cheap to clone.
#[derive(Debug, Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

/// Builds a runner: one handler per tool, registered before anything runs.
#[derive(Debug)]
pub struct JobRunnerBuilder {
    store: Arc<dyn JobStore>,
    config: JobsConfig,
    lanes: HashMap<String, Arc<Lane>>,
    composer: Arc<dyn EventComposer>,
}

/// Same-key submissions are serialised (find, then insert) through one of these stripes, so two
/// identical calls arriving together still make one job; different keys rarely wait.
const DEDUPE_STRIPES: usize = 1024;

struct Inner {
    store: Arc<dyn JobStore>,
    events: JobEvents,
    composer: Arc<dyn EventComposer>,
    dedupe_stripes: Vec<tokio::sync::Mutex<()>>,
    /// Keys of local conversations used within the window.
    recent_keys: RecentKeys,
    /// One lane per tool; replaced whole when a tool is registered again (hot reload). A job
    /// keeps the lane it was admitted to until it ends.
    lanes: std::sync::RwLock<HashMap<String, Arc<Lane>>>,
    /// Jobs this process is driving, with the token that stops them when a caller cancels.
    running: Mutex<HashMap<JobId, CancellationToken>>,
    /// Outcomes the store refused; retried by the maintenance loop until written.
    unrecorded: Mutex<Vec<(Job, Outcome)>>,
    /// Names this process in leases; random so a restarted process never inherits them.
    instance: Arc<str>,
    config: JobsConfig,
    /// Stops every job without ending it, so that the next process resumes it.
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRunner").field("instance", &self.instance).finish_non_exhaustive()
    }
}

/// One tool's share of the runner.
#[derive(Debug)]
struct Lane {
    handler: Arc<dyn JobHandler>,
    concurrency: usize,
    /// Longest a job may take, all attempts included.
    timeout: Duration,
    /// Running jobs; a job waits here for its turn once admitted.
    slots: Arc<Semaphore>,
    /// Running plus waiting jobs; exhausted means the caller hears "busy".
    admission: Arc<Semaphore>,
    capacity: usize,
    /// Recent attempt durations (exponential moving average), for estimates.
    mean_ms: AtomicU64,
}

impl Lane {
    fn new(handler: Arc<dyn JobHandler>, config: &JobsConfig, tool: &str) -> Lane {
        let (concurrency, queue) = config.lane(tool, handler.concurrency());
        let mean_ms = u64::try_from(handler.typical_duration().as_millis()).unwrap_or(u64::MAX);
        Lane {
            timeout: handler.timeout().unwrap_or(*config.timeout),
            handler,
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            admission: Arc::new(Semaphore::new(concurrency + queue)),
            capacity: concurrency + queue,
            mean_ms: AtomicU64::new(mean_ms.max(1)),
        }
    }

    /// A new handler in this lane's place. Same sizes: the running and waiting jobs keep
    /// counting against the new lane, so a reload never doubles a tool's concurrency.
    fn replaced_by(&self, next: Lane) -> Lane {
        if (next.concurrency, next.capacity) != (self.concurrency, self.capacity) {
            return next;
        }
        Lane {
            slots: self.slots.clone(),
            admission: self.admission.clone(),
            mean_ms: AtomicU64::new(self.mean_ms.load(Ordering::Relaxed)),
            ..next
        }
    }

    fn mean(&self) -> Duration {
        Duration::from_millis(self.mean_ms.load(Ordering::Relaxed))
    }

    fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let mean = self.mean_ms.load(Ordering::Relaxed);
        // A racy update only blurs an estimate, so relaxed load-then-store is enough.
        self.mean_ms.store((mean * 4 + took) / 5, Ordering::Relaxed);
    }

    /// Time until this job (already admitted) is likely done: its wave in the queue times the mean.
    fn eta(&self) -> Duration {
        let admitted = self.capacity - self.admission.available_permits();
        let waves = admitted.max(1).div_ceil(self.concurrency);
        self.mean() * u32::try_from(waves).unwrap_or(u32::MAX)
    }

    /// When a full queue will likely have room again: one slot's worth of work.
    fn retry_after(&self) -> Duration {
        let per_slot = self.mean() / u32::try_from(self.concurrency).unwrap_or(1).max(1);
        Duration::from_secs(per_slot.as_secs_f64().ceil().max(1.0) as u64)
    }
}

fn stripe_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    usize::try_from(hasher.finish() % DEDUPE_STRIPES as u64).unwrap_or(0)
}

impl JobRunnerBuilder {
    pub fn handler(mut self, tool: &str, handler: Arc<dyn JobHandler>) -> Self {
        self.lanes.insert(tool.to_owned(), Arc::new(Lane::new(handler, &self.config, tool)));
        self
    }

    /// Decides what each job event says and who receives it (default: [`BareEvents`]).
    pub fn composer(mut self, composer: Arc<dyn EventComposer>) -> Self {
        self.composer = composer;
        self
    }

    pub fn build(self) -> JobRunner {
        let instance =
            format!("{}-{}", std::process::id(), ulid::Ulid::generate()).to_ascii_lowercase();
        // Only this process writes such a store, so every change of a job passes through it.
        let events = if self.store.wakeups().is_none() {
            JobEvents::remembering_jobs()
        } else {
            JobEvents::default()
        };
        JobRunner {
            inner: Arc::new(Inner {
                store: self.store,
                events,
                composer: self.composer,
                dedupe_stripes: (0..DEDUPE_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
                recent_keys: RecentKeys::default(),
                lanes: std::sync::RwLock::new(self.lanes),
                running: Mutex::new(HashMap::new()),
                unrecorded: Mutex::new(Vec::new()),
                instance: instance.into(),
                config: self.config,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }
}

impl JobRunner {
    pub fn builder(store: Arc<dyn JobStore>, config: JobsConfig) -> JobRunnerBuilder {
        JobRunnerBuilder { store, config, lanes: HashMap::new(), composer: Arc::new(BareEvents) }
    }

    /// Runs `tool`'s jobs with `handler` from now on (a new tool, or a reloaded one). Jobs
    /// already admitted finish with the handler they were admitted to.
    pub fn register(&self, tool: &str, handler: Arc<dyn JobHandler>) {
        let next = Lane::new(handler, &self.inner.config, tool);
        let mut lanes = self.inner.lanes.write().expect("lanes lock poisoned");
        let next = match lanes.get(tool) {
            Some(current) => current.replaced_by(next),
            None => next,
        };
        lanes.insert(tool.to_owned(), Arc::new(next));
    }

    /// Stops admitting `tool`'s jobs; running ones finish, later ones fail as unknown.
    pub fn unregister(&self, tool: &str) {
        self.inner.lanes.write().expect("lanes lock poisoned").remove(tool);
    }

    pub fn events(&self) -> &JobEvents {
        &self.inner.events
    }

    /// How long ended jobs are kept.
    pub fn retention(&self) -> Duration {
        *self.inner.config.retention
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// Records this process as alive, then starts the maintenance loop: heartbeats, resuming
    /// interrupted jobs, retention. Call before submitting jobs.
    pub async fn start(&self) -> Result<(), StoreError> {
        self.inner.store.heartbeat(&self.inner.lease(Micros::now())).await?;
        let last_event = self.inner.store.last_event_id().await?;
        self.inner.events.expect_after(last_event);
        if let Some(wakeups) = self.inner.store.wakeups() {
            let (store, events) = (self.inner.store.clone(), self.inner.events.clone());
            let shutdown = self.inner.shutdown.clone();
            let follow = super::follow::follow(store, events, wakeups, last_event, shutdown);
            self.inner.tracker.spawn(follow);
        }
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move { inner.maintain().await });
        Ok(())
    }

    /// Admits, persists and spawns a job, or returns the existing job for a repeated call.
    /// Never waits for a slot.
    pub async fn submit(&self, new: NewJob) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let lane =
            inner.lane(&new.tool).ok_or_else(|| SubmitError::UnknownTool(new.tool.clone()))?;
        let _same_key = match &new.dedupe {
            Some(dedupe) => {
                let stripe = &inner.dedupe_stripes[stripe_of(&dedupe.key)];
                let guard = stripe.lock().await;
                let now = Micros::now();
                // Under the stripe's lock, so a repeat arriving meanwhile waits for this insert
                // and then finds it in the store.
                let first_use =
                    dedupe.local && inner.recent_keys.first_use(&dedupe.key, dedupe.window, now);
                if !first_use
                    && let Some(job) = inner
                        .store
                        .find_duplicate(&new.owner, &dedupe.key, now.minus(dedupe.window))
                        .await?
                {
                    return Ok(Submitted { job, duplicate: true });
                }
                Some(guard)
            }
            None => None,
        };
        let permit = lane.admission.clone().try_acquire_owned().map_err(|_| SubmitError::Busy {
            tool: new.tool.clone(),
            retry_after: lane.retry_after(),
        })?;
        let now = Micros::now();
        let job = Job {
            id: JobId::generate(),
            tool: new.tool,
            produces: new.produces,
            owner: new.owner,
            input: new.input,
            status: JobStatus::Working,
            output: None,
            progress: None,
            error: None,
            attempts: 0,
            eta_ms: u64::try_from(lane.eta().as_millis()).unwrap_or(u64::MAX),
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            context: new.context,
        };
        let event = inner.composer.compose(JobChange::Created, &job);
        let dedupe_key = new.dedupe.as_ref().map(|dedupe| dedupe.key.as_str());
        let stored = inner
            .store
            .insert(Insert { dedupe_key, ..Insert::new(&job, &inner.instance, event) })
            .await?;
        inner.events.publish(JobChange::Created, job.clone(), stored);
        inner.spawn(job.clone(), Some(permit));
        Ok(Submitted { job, duplicate: false })
    }

    /// The job as committed: from [`super::recent`] when this process wrote its latest change
    /// to a store only it writes, else from the store.
    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        if let Some(job) = self.inner.events.recent().and_then(|recent| recent.get(id)) {
            return Ok(Some(job));
        }
        self.inner.store.get(id).await
    }

    /// Ends a working job as cancelled and stops its work. Ownership is the caller's check.
    pub async fn cancel(&self, id: &JobId, reason: JobError) -> Result<CancelOutcome, StoreError> {
        let inner = &self.inner;
        let cancelled = Outcome::Cancelled(reason);
        let ended = inner.store.finish(id, &cancelled, Micros::now(), &*inner.composer).await?;
        let Some((job, event)) = ended else {
            return Ok(match inner.store.get(id).await? {
                Some(job) => CancelOutcome::AlreadyEnded(job),
                None => CancelOutcome::NotFound,
            });
        };
        let token = inner.running.lock().expect("running map lock poisoned").get(id).cloned();
        if let Some(token) = token {
            token.cancel();
        }
        inner.events.publish(JobChange::Ended, job.clone(), event);
        Ok(CancelOutcome::Cancelled(job))
    }

    /// Records a working job's progress (its tool decides the shape) and tells every listener.
    /// Returns false when the job is no longer working.
    pub async fn progress(&self, id: &JobId, progress: &Value) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let recorded = inner.store.progress(id, progress, Micros::now(), &*inner.composer).await?;
        let Some((job, event)) = recorded else { return Ok(false) };
        inner.events.publish(JobChange::Progress, job, event);
        Ok(true)
    }

    /// Waits until the job has ended or `deadline` passes, returning its latest state.
    pub async fn wait_for_end(
        &self,
        id: &JobId,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Job>, StoreError> {
        // Subscribe before reading so a change between the two cannot be missed.
        let mut changes = self.inner.events.subscribe();
        let mut latest = self.inner.store.get(id).await?;
        loop {
            match &latest {
                Some(job) if !job.status.is_terminal() => {}
                _ => return Ok(latest),
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_elapsed) => return Ok(latest),
                Ok(Ok(event)) if event.job.id == *id => latest = Some(event.job.clone()),
                Ok(Ok(_)) => {}
                Ok(Err(RecvError::Lagged(_))) => latest = self.inner.store.get(id).await?,
                Ok(Err(RecvError::Closed)) => return Ok(latest),
            }
        }
    }

    /// Stops every job without ending it and hands their leases back for the next process.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.cancel();
        inner.tracker.close();
        inner.tracker.wait().await;
        if let Err(error) = inner.store.release(&inner.instance).await {
            tracing::warn!(%error, "could not release the lease; jobs resume once it expires");
        }
    }
}

impl Inner {
    fn lease(&self, now: Micros) -> Lease {
        Lease { instance: self.instance.clone(), until: now.plus(*self.config.lease) }
    }

    fn spawn(self: &Arc<Self>, job: Job, permit: Option<OwnedSemaphorePermit>) {
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .expect("running map lock poisoned")
            .insert(job.id.clone(), cancel.clone());
        let inner = self.clone();
        self.tracker.spawn(async move {
            let _admission = permit;
            let id = job.id.clone();
            inner.drive(job, cancel).await;
            inner.running.lock().expect("running map lock poisoned").remove(&id);
        });
    }

    fn lane(&self, tool: &str) -> Option<Arc<Lane>> {
        self.lanes.read().expect("lanes lock poisoned").get(tool).cloned()
    }

    async fn drive(&self, job: Job, cancel: CancellationToken) {
        let Some(lane) = self.lane(&job.tool) else {
            let error = JobError {
                detail: None,
                code: "unknown_tool".to_owned(),
                message: format!("The tool {} is no longer available.", job.tool),
            };
            return self.commit(&job, Outcome::Failed(error)).await;
        };
        // Waiting for a slot is not part of the job's time budget: a deep queue must not time
        // jobs out before they start.
        let slot = tokio::select! {
            biased;
            // Left working on purpose: the lease hands it to the next process.
            () = self.shutdown.cancelled() => return,
            // `cancel` already wrote the outcome; what earlier attempts left will never be read.
            () = cancel.cancelled() => return lane.handler.discard(&job.id).await,
            slot = lane.slots.acquire() => slot,
        };
        let Ok(_slot) = slot else { return };
        let outcome = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return,
            // The attempt is dropped by now, so nothing it wrote can outlive this clean-up.
            () = cancel.cancelled() => return lane.handler.discard(&job.id).await,
            ended = tokio::time::timeout(lane.timeout, self.attempts(&job, &lane)) => {
                match ended {
                    Ok(Some(outcome)) => outcome,
                    Ok(None) => return,
                    Err(_elapsed) => Outcome::Failed(JobError { detail: None,
                        code: "timeout".to_owned(),
                        message: format!(
                            "This took longer than {} and was stopped; please try again.",
                            humantime::format_duration(lane.timeout)
                        ),
                    }),
                }
            }
        };
        self.commit(&job, outcome).await;
    }

    /// Runs attempts until one succeeds, fails for good, or the job stops being `working`.
    async fn attempts(&self, job: &Job, lane: &Lane) -> Option<Outcome> {
        let started = Instant::now();
        loop {
            let current = match self.store.start_attempt(&job.id, Micros::now()).await {
                Ok(Some(current)) => {
                    if let Some(recent) = self.events.recent() {
                        recent.attempted(&current);
                    }
                    current
                }
                Ok(None) => return None,
                // The job is ours and still working: keep trying within its time budget rather
                // than leave it working with nobody driving it.
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, "could not record attempt; retrying");
                    tokio::time::sleep(self.config.retry_base.0.max(Duration::from_millis(100)))
                        .await;
                    continue;
                }
            };
            if current.attempts > self.config.max_attempts {
                return Some(Outcome::Failed(JobError {
                    detail: None,
                    code: "interrupted".to_owned(),
                    message: "This was interrupted too many times and was stopped; please try \
                              again."
                        .to_owned(),
                }));
            }
            let attempt_started = Instant::now();
            let result = AssertUnwindSafe(lane.handler.run(&current)).catch_unwind().await;
            let failure = match result {
                Ok(Ok(output)) => {
                    lane.record(attempt_started.elapsed());
                    return Some(Outcome::Completed(output));
                }
                Ok(Err(failure)) => failure,
                Err(_panic) => {
                    tracing::error!(job = %job.id, tool = %job.tool, "job handler panicked");
                    JobFailure {
                        detail: None,
                        code: "internal".to_owned(),
                        message: "Something went wrong on our side; please try again.".to_owned(),
                        retryable: false,
                        retry_after: None,
                    }
                }
            };
            let delay = self.backoff(current.attempts, failure.retry_after);
            let out_of_time = started.elapsed() + delay >= *self.config.timeout;
            if !failure.retryable || current.attempts >= self.config.max_attempts || out_of_time {
                tracing::info!(job = %job.id, code = %failure.code, attempts = current.attempts, "job failed");
                return Some(Outcome::Failed(JobError {
                    code: failure.code,
                    message: failure.message,
                    detail: failure.detail,
                }));
            }
            tracing::info!(job = %job.id, code = %failure.code, ?delay, "attempt failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with ±20% jitter, or exactly what the provider asked for.
    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked;
        }
        let exponent = attempts.saturating_sub(1).min(16);
        let base = self.config.retry_base.saturating_mul(1 << exponent).min(*self.config.retry_max);
        base.mul_f64(rand::random_range(0.8..1.2))
    }

    /// Records a job's outcome, retrying briefly; if the store still refuses, the outcome waits
    /// in `unrecorded` and the maintenance loop keeps trying, so the job never stays working
    /// with nobody driving it.
    async fn commit(&self, job: &Job, outcome: Outcome) {
        let mut delay = Duration::from_millis(100);
        for _ in 0..5 {
            match self.record(job, &outcome).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(job = %job.id, %error, "retrying job outcome"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        tracing::error!(job = %job.id, "could not record job outcome; will keep trying");
        self.unrecorded.lock().expect("unrecorded lock poisoned").push((job.clone(), outcome));
    }

    /// One try at writing an outcome. Whoever loses the compare-and-set (or fails) cleans up
    /// what its attempt left behind; a completed winner keeps it.
    async fn record(&self, job: &Job, outcome: &Outcome) -> Result<(), StoreError> {
        let completed = matches!(outcome, Outcome::Completed(_));
        let ended = self.store.finish(&job.id, outcome, Micros::now(), &*self.composer).await?;
        if let Some((ended, event)) = ended {
            self.events.publish(JobChange::Ended, ended, event);
            if completed {
                return Ok(());
            }
        }
        if let Some(lane) = self.lane(&job.tool) {
            lane.handler.discard(&job.id).await;
        }
        Ok(())
    }

    /// Retries outcomes the store refused earlier.
    async fn record_unrecorded(&self) {
        let waiting =
            std::mem::take(&mut *self.unrecorded.lock().expect("unrecorded lock poisoned"));
        for (job, outcome) in waiting {
            if let Err(error) = self.record(&job, &outcome).await {
                tracing::warn!(job = %job.id, %error, "job outcome still not recorded");
                self.unrecorded.lock().expect("unrecorded lock poisoned").push((job, outcome));
            }
        }
    }

    async fn maintain(self: Arc<Self>) {
        let tick = (*self.config.lease / 3).max(Duration::from_millis(100));
        let purge_every = (*self.config.retention / 10)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut last_purge: Option<Instant> = None;
        loop {
            self.renew().await;
            self.record_unrecorded().await;
            self.recover().await;
            if last_purge.is_none_or(|at| at.elapsed() >= purge_every) {
                self.purge().await;
                last_purge = Some(Instant::now());
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    async fn renew(&self) {
        if let Err(error) = self.store.heartbeat(&self.lease(Micros::now())).await {
            tracing::warn!(%error, "could not renew the lease");
        }
    }

    /// Takes over jobs whose process died (or shut down) and runs or fails them.
    async fn recover(self: &Arc<Self>) {
        let now = Micros::now();
        let claimed = match self.store.claim_orphans(&self.lease(now), now, 256).await {
            Ok(claimed) => claimed,
            Err(error) => return tracing::warn!(%error, "could not look for interrupted jobs"),
        };
        for job in claimed {
            if self.config.resume_interrupted {
                tracing::info!(job = %job.id, tool = %job.tool, attempts = job.attempts, "resuming interrupted job");
                self.spawn(job, None);
            } else {
                let error = JobError {
                    detail: None,
                    code: "interrupted".to_owned(),
                    message: "The server restarted while this was running; please ask again."
                        .to_owned(),
                };
                self.commit(&job, Outcome::Failed(error)).await;
            }
        }
    }

    async fn purge(&self) {
        let cutoff = Micros::now().minus(*self.config.retention);
        let purged = match self.store.purge_finished_before(cutoff, 512).await {
            Ok(purged) => purged,
            Err(error) => return tracing::warn!(%error, "could not purge old jobs"),
        };
        if let Some(recent) = self.events.recent() {
            recent.forget(purged.iter().map(|job| &job.id));
        }
        for job in &purged {
            if let Some(lane) = self.lane(&job.tool) {
                lane.handler.discard(&job.id).await;
            }
        }
        if !purged.is_empty() {
            tracing::info!(count = purged.len(), "purged jobs past retention");
        }
    }
}

#[cfg(test)]
mod tests;
