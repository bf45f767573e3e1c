//! Routing decisions against scripted providers: retries, fallback, refusals, limits, records.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::images::ImageFormat;

/// A provider that answers from a script, one entry per call, and counts calls in flight.
#[derive(Debug)]
struct Scripted {
    name: &'static str,
    edits: bool,
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

#[derive(Debug)]
enum Step {
    Image,
    Fail(ProviderError),
    Sleep(Duration),
}

impl Scripted {
    fn new(name: &'static str, script: Vec<Step>) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            edits: false,
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        })
    }

    fn editing(name: &'static str, script: Vec<Step>) -> Arc<Scripted> {
        let mut provider = Arc::into_inner(Scripted::new(name, script)).unwrap();
        provider.edits = true;
        Arc::new(provider)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(&self) -> Result<GeneratedImage, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let step = self.script.lock().unwrap().pop_front().unwrap_or(Step::Image);
        let result = match step {
            Step::Image => Ok(image(self.name)),
            Step::Fail(error) => Err(error),
            Step::Sleep(wait) => {
                tokio::time::sleep(wait).await;
                Ok(image(self.name))
            }
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

fn image(provider: &str) -> GeneratedImage {
    GeneratedImage { bytes: Bytes::from_static(b"png"), model: format!("{provider}-model") }
}

#[async_trait]
impl ImageProvider for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }
    fn typical_latency(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn generate(&self, _request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        self.answer().await
    }
    fn can_edit(&self) -> bool {
        self.edits
    }
    async fn edit(&self, _request: &EditRequest) -> Result<GeneratedImage, ProviderError> {
        self.answer().await
    }
}

fn route(provider: &Arc<Scripted>, attempts: u32) -> Route {
    Route { attempts, ..Route::new(provider.clone()) }
}

fn router(routes: Vec<Route>) -> Router {
    Router::new(routes, Backoff { base: Duration::from_millis(1), max: Duration::from_millis(5) })
}

fn request() -> ImageRequest {
    ImageRequest { prompt: "a fox".to_owned(), width: 64, height: 64, seed: 0 }
}

async fn generate(router: &Router) -> Result<Routed, RouteFailure> {
    router.generate(&request(), &Partials::default()).await
}

fn outcomes(attempts: &[Attempt]) -> Vec<(String, String)> {
    attempts.iter().map(|a| (a.provider.clone(), a.outcome.clone())).collect()
}

fn pair(provider: &str, outcome: &str) -> (String, String) {
    (provider.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn transient_failures_are_retried_on_the_same_provider() {
    let unavailable = ProviderError::Unavailable { status: 503, retry_after: None };
    let first = Scripted::new("first", vec![Step::Fail(unavailable), Step::Image]);
    let second = Scripted::new("second", vec![]);
    let routed = generate(&router(vec![route(&first, 2), route(&second, 1)])).await.unwrap();
    assert_eq!(routed.provider, "first");
    assert_eq!(second.calls(), 0, "no fallback when a retry succeeds");
    assert_eq!(
        outcomes(&routed.attempts),
        [pair("first", "provider_unavailable"), pair("first", "ok")]
    );
    assert_eq!(routed.attempts[1].model.as_deref(), Some("first-model"));
}

#[tokio::test]
async fn a_provider_that_gives_up_hands_over_to_the_next() {
    let limited = || ProviderError::RateLimited { retry_after: Some(Duration::from_millis(1)) };
    let first = Scripted::new("first", vec![Step::Fail(limited()), Step::Fail(limited())]);
    let second = Scripted::new("second", vec![]);
    let routed = generate(&router(vec![route(&first, 2), route(&second, 1)])).await.unwrap();
    assert_eq!(routed.provider, "second");
    assert_eq!(first.calls(), 2, "its attempts were used up first");
    assert_eq!(
        outcomes(&routed.attempts),
        [
            pair("first", "provider_rate_limited"),
            pair("first", "provider_rate_limited"),
            pair("second", "ok")
        ]
    );
}

#[tokio::test]
async fn permanent_provider_failures_fall_back_without_retrying() {
    for error in [
        ProviderError::Unauthorized,
        ProviderError::QuotaExhausted,
        ProviderError::BadRequest("model gone".to_owned()),
        ProviderError::InvalidResponse("junk".to_owned()),
    ] {
        let code = error.code();
        let first = Scripted::new("first", vec![Step::Fail(error)]);
        let second = Scripted::new("second", vec![]);
        let routed = generate(&router(vec![route(&first, 3), route(&second, 1)])).await.unwrap();
        assert_eq!(first.calls(), 1, "{code} is not retried");
        assert_eq!(routed.provider, "second", "{code} falls back");
    }
}

#[tokio::test]
async fn a_refused_prompt_stops_the_route() {
    let refused = ProviderError::Refused { reason: "safety".to_owned() };
    let first = Scripted::new("first", vec![Step::Fail(refused)]);
    let second = Scripted::new("second", vec![]);
    let failure = generate(&router(vec![route(&first, 3), route(&second, 1)])).await.unwrap_err();
    assert!(matches!(failure.error.provider().unwrap(), ProviderError::Refused { .. }));
    assert_eq!((first.calls(), second.calls()), (1, 0), "no retry and no provider shopping");
    assert!(failure.error.provider().unwrap().speakable().contains("describing it differently"));
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_falls_back() {
    let first = Scripted::new("first", vec![Step::Sleep(Duration::from_secs(30))]);
    let second = Scripted::new("second", vec![]);
    let slow = Route { timeout: Some(Duration::from_millis(20)), ..route(&first, 1) };
    let routed = generate(&router(vec![slow, route(&second, 1)])).await.unwrap();
    assert_eq!(
        outcomes(&routed.attempts),
        [pair("first", "provider_timeout"), pair("second", "ok")]
    );
    assert!(routed.attempts[0].took_ms < 30_000);
}

#[tokio::test]
async fn when_all_fail_a_transient_reason_is_told_over_a_permanent_one() {
    let first = Scripted::new("first", vec![Step::Fail(ProviderError::Timeout)]);
    let second = Scripted::new("second", vec![Step::Fail(ProviderError::Unauthorized)]);
    let failure = generate(&router(vec![route(&first, 1), route(&second, 1)])).await.unwrap_err();
    assert!(
        matches!(failure.error.provider().unwrap(), ProviderError::Timeout),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.attempts.len(), 2);
}

#[tokio::test]
async fn concurrency_slots_bound_calls_across_jobs() {
    let provider =
        Scripted::new("only", (0..4).map(|_| Step::Sleep(Duration::from_millis(20))).collect());
    let limited = Route { slots: Some(Arc::new(Semaphore::new(1))), ..route(&provider, 1) };
    let router = router(vec![limited]);
    let results = futures::future::join_all((0..4).map(|_| generate(&router))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(provider.most_in_flight.load(Ordering::SeqCst), 1);
    let queued: u64 = results.iter().map(|r| r.as_ref().unwrap().attempts[0].queued_ms).sum();
    assert!(queued > 0, "later calls waited for the slot");
}

#[tokio::test]
async fn edits_skip_providers_that_cannot_edit() {
    let plain = Scripted::new("plain", vec![]);
    let editor = Scripted::editing("editor", vec![]);
    let router = router(vec![route(&plain, 1), route(&editor, 1)]);
    assert!(router.can_edit());
    let edit = EditRequest {
        image: Bytes::from_static(b"png"),
        format: ImageFormat::Png,
        instruction: "make it blue".to_owned(),
        width: 64,
        height: 64,
        seed: 0,
    };
    let routed = router.edit(&edit).await.unwrap();
    assert_eq!((routed.provider, plain.calls()), ("editor", 0));
    let none = router_without_editors();
    assert!(!none.can_edit());
    let failure = none.edit(&edit).await.unwrap_err();
    assert!(matches!(failure.error.provider().unwrap(), ProviderError::Unsupported(_)));
    assert!(failure.attempts.is_empty());
}

fn router_without_editors() -> Router {
    router(vec![route(&Scripted::new("plain", vec![]), 1)])
}

#[tokio::test]
async fn an_image_the_callers_check_refuses_is_that_providers_failure() {
    let first = Scripted::new("first", vec![]);
    let second = Scripted::new("second", vec![]);
    let router = router(vec![route(&first, 2), route(&second, 1)]);
    // The caller can use only the second provider's images.
    let check = |image: GeneratedImage| async move {
        match image.model.as_str() {
            "first-model" => Err(Rejected::<&str>::Unusable("truncated".to_owned())),
            _ => Ok(image.model),
        }
    };
    let routed = router.generate_checked(&request(), &Partials::default(), check).await.unwrap();
    assert_eq!(routed.value, "second-model");
    assert_eq!((routed.provider, routed.model.as_str()), ("second", "second-model"));
    // Recorded as the provider's attempt, with the model that drew it, and not retried there:
    // a broken answer is handed on like one.
    assert_eq!(
        outcomes(&routed.attempts),
        [pair("first", "provider_broken_image"), pair("second", "ok")]
    );
    assert_eq!(routed.attempts[0].model.as_deref(), Some("first-model"));
    assert_eq!(first.calls(), 1);

    // Every provider's image refused: the job hears that the images were broken.
    let refuse_all =
        |_: GeneratedImage| async { Err::<(), _>(Rejected::<&str>::Unusable("no".into())) };
    let failure =
        router.generate_checked(&request(), &Partials::default(), refuse_all).await.unwrap_err();
    let error = failure.error.provider().unwrap();
    assert!(matches!(error, ProviderError::BrokenImage(_)), "{error:?}");
    assert!(error.speakable().contains("broken image"));
    assert_eq!(failure.attempts.len(), 2);
}

#[tokio::test]
async fn a_check_that_aborts_stops_the_route_with_its_reason() {
    let first = Scripted::new("first", vec![]);
    let second = Scripted::new("second", vec![]);
    let router = router(vec![route(&first, 1), route(&second, 1)]);
    let abort = |_: GeneratedImage| async { Err::<(), _>(Rejected::Abort("disk full")) };
    let failure =
        router.generate_checked(&request(), &Partials::default(), abort).await.unwrap_err();
    assert!(matches!(failure.error, RouteError::Aborted("disk full")));
    assert_eq!(outcomes(&failure.attempts), [pair("first", "ok")], "the call itself worked");
    assert_eq!(second.calls(), 0, "our own failure is not shopped around");
}
