//! The image pool: a few threads at the lowest CPU priority that do every decode, resize and
//! encode, so image work never runs on the async workers that answer requests and never
//! starves them of a core.
//!
//! Admission is bounded: at most `queue` tasks wait or run at once; later callers wait for a
//! slot asynchronously, holding no thread. A task whose caller has gone (a cancelled job, a
//! closed request) before it starts is skipped.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{Semaphore, oneshot};

/// Why a task did not produce its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the image pool could not start: {0}")]
    Start(String),
    #[error("the image task panicked")]
    Panicked,
    #[error("the image pool is shut down")]
    Closed,
}

#[derive(Debug, Clone)]
pub struct ImagePool {
    threads: Arc<rayon::ThreadPool>,
    admitted: Arc<Semaphore>,
    finished: Arc<AtomicU64>,
}

impl ImagePool {
    /// Starts `workers` threads named `offstage-image-N`.
    pub fn new(workers: usize, queue: usize) -> Result<ImagePool, PoolError> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|index| format!("offstage-image-{index}"))
            .start_handler(|_| crate::priority::lower_current_thread())
            .build()
            .map_err(|error| PoolError::Start(error.to_string()))?;
        Ok(ImagePool {
            threads: Arc::new(threads),
            admitted: Arc::new(Semaphore::new(queue.max(1))),
            finished: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs `work` on the pool once a slot is free and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            Arc::clone(&self.admitted).acquire_owned().await.map_err(|_| PoolError::Closed)?;
        let (sender, receiver) = oneshot::channel();
        let finished = Arc::clone(&self.finished);
        self.threads.spawn(move || {
            let _permit = permit;
            if sender.is_closed() {
                return;
            }
            // A panicking codec must cost one image, not the pool thread's task.
            let result = std::panic::catch_unwind(AssertUnwindSafe(work));
            finished.fetch_add(1, Ordering::Relaxed);
            let _ = sender.send(result);
        });
        match receiver.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_panic)) => Err(PoolError::Panicked),
            Err(_dropped) => Err(PoolError::Closed),
        }
    }

    /// Tasks run to the end since start (skipped ones are not counted).
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_runs_on_named_pool_threads() {
        let pool = ImagePool::new(1, 4).unwrap();
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert_eq!(name.as_deref(), Some("offstage-image-0"));
        assert_eq!(pool.finished(), 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_under_sched_idle() {
        use crate::priority::{SCHED_IDLE, scheduling_policy};
        let pool = ImagePool::new(1, 4).unwrap();
        assert_eq!(pool.run(scheduling_policy).await.unwrap(), SCHED_IDLE);
        assert_ne!(scheduling_policy(), SCHED_IDLE, "the caller's thread is untouched");
    }

    #[tokio::test]
    async fn a_panic_costs_one_task_not_the_pool() {
        let pool = ImagePool::new(1, 4).unwrap();
        let failed = pool.run(|| -> u32 { panic!("codec bug") }).await;
        assert_eq!(failed, Err(PoolError::Panicked));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn admission_is_bounded_and_abandoned_tasks_are_skipped() {
        let pool = ImagePool::new(1, 2).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || hold.recv().is_ok()).await }
        });
        // Wait until the blocker holds the only thread.
        while pool.admitted.available_permits() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ran = Arc::new(AtomicU64::new(0));
        let queued = {
            let ran = Arc::clone(&ran);
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || ran.fetch_add(1, Ordering::SeqCst)).await })
        };
        while pool.admitted.available_permits() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The queue is full: a third caller waits for a slot instead of queueing.
        let third = tokio::time::timeout(Duration::from_millis(100), pool.run(|| ())).await;
        assert!(third.is_err(), "a third task was admitted past the bound");
        // The queued caller gives up; its task must not run.
        queued.abort();
        let _ = queued.await;
        release.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok(true));
        assert_eq!(pool.run(|| ()).await, Ok(()));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned task ran");
        assert_eq!(pool.finished(), 2);
    }
}
