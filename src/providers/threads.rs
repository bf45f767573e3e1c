//! The threads provider calls run on: a small tokio runtime of their own at the lowest CPU
//! priority, so that downloading a provider's answer (megabytes per image, read and copied in
//! the kernel) never holds a request thread off a core.
//!
//! Only the call runs there. Its time limit, retries and everything the job does with the
//! answer stay with the caller, so a starved provider thread still times out on schedule.

use std::{fmt, future::Future, sync::Arc};

use tokio::runtime::{Handle, Runtime};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

use super::ProviderError;

#[derive(Debug, Clone)]
pub struct ProviderThreads {
    handle: Handle,
    _runtime: Arc<Owned>,
}

impl ProviderThreads {
    /// Starts one async thread named `offstage-provider` (blocking work a provider spawns gets
    /// threads of the same name and priority). One is plenty: provider calls wait on the
    /// network, and their CPU work (parsing) goes to the image pool.
    pub fn start() -> std::io::Result<ProviderThreads> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("offstage-provider")
            .on_thread_start(crate::priority::lower_current_thread)
            .enable_all()
            .build()?;
        Ok(ProviderThreads {
            handle: runtime.handle().clone(),
            _runtime: Arc::new(Owned(Some(runtime))),
        })
    }

    /// Runs `call` on the provider threads. Dropping the returned future aborts the call there.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let task = AbortOnDropHandle::new(self.handle.spawn(call.in_current_span()));
        task.await.unwrap_or_else(|error| {
            Err(ProviderError::InvalidResponse(format!("the provider call failed: {error}")))
        })
    }
}

/// Shuts the runtime down without waiting when the last handle goes: a server may stop from
/// inside another runtime, where a blocking shutdown is not allowed.
struct Owned(Option<Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for Owned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runtime")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn calls_run_on_the_provider_threads_and_their_errors_come_back() {
        let threads = ProviderThreads::start().unwrap();
        let name = threads
            .run(async { Ok(std::thread::current().name().map(str::to_owned)) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("offstage-provider"));
        let failed: Result<(), _> = threads.run(async { Err(ProviderError::Timeout) }).await;
        assert!(matches!(failed, Err(ProviderError::Timeout)), "{failed:?}");
        let panicked: Result<(), _> = threads.run(async { panic!("provider bug") }).await;
        assert!(matches!(panicked, Err(ProviderError::InvalidResponse(_))), "{panicked:?}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn provider_threads_run_under_sched_idle() {
        use crate::priority::{SCHED_IDLE, scheduling_policy};
        let threads = ProviderThreads::start().unwrap();
        assert_eq!(threads.run(async { Ok(scheduling_policy()) }).await.unwrap(), SCHED_IDLE);
        let blocking = threads
            .run(async { Ok(tokio::task::spawn_blocking(scheduling_policy).await.unwrap()) })
            .await
            .unwrap();
        assert_eq!(blocking, SCHED_IDLE, "blocking work a provider spawns runs there too");
    }

    #[tokio::test]
    async fn dropping_the_call_aborts_it_on_the_provider_threads() {
        let threads = ProviderThreads::start().unwrap();
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let call = threads.run(async move {
            let _alive = sender;
            std::future::pending::<Result<(), ProviderError>>().await
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), call).await.is_err());
        // The aborted task drops its future, and with it the sender.
        let ended = tokio::time::timeout(Duration::from_secs(5), receiver).await;
        assert!(matches!(ended, Ok(Err(_))), "the call must be aborted, not left running");
    }

    #[tokio::test]
    async fn the_threads_can_be_dropped_inside_a_runtime() {
        let threads = ProviderThreads::start().unwrap();
        threads.run(async { Ok(()) }).await.unwrap();
        drop(threads);
    }
}
