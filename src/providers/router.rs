//! Routing: the ordered providers a job tries, each under its own limits, and the record of
//! every attempt.
//!
//! Retries of provider failures live here, not in the job runner: a transient failure
//! (429 with Retry-After, 5xx, timeouts, connect errors) is tried again on the same provider
//! up to its `attempts`; a provider that gives up, or fails for a reason another provider
//! would not share (bad key, no credit, unsupported, a broken answer), hands the job to the
//! next one. A refused prompt stops the route at once: the prompt is the problem, and shopping
//! it around other providers' content rules is not ours to do.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{
    EditRequest, GeneratedImage, ImageProvider, ImageRequest, Partials, ProviderError,
    ProvidersConfig, route::RouteStep, spec::Context, spec::SetupError, threads::ProviderThreads,
};

/// One provider in the route, with its limits.
#[derive(Debug)]
pub struct Route {
    pub provider: Arc<dyn ImageProvider>,
    /// Longest one attempt may take.
    pub timeout: Option<Duration>,
    /// Requests in flight to this provider, across all jobs.
    pub slots: Option<Arc<Semaphore>>,
    /// Attempts per job on this provider (≥ 1).
    pub attempts: u32,
}

impl Route {
    pub fn new(provider: Arc<dyn ImageProvider>) -> Route {
        Route { provider, timeout: None, slots: None, attempts: 1 }
    }
}

/// Delays between attempts on one provider: exponential from `base`, capped at `max`, or
/// what the provider asked for (also capped, so a hostile `Retry-After` cannot park a job).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    fn delay(self, attempt: u32, asked: Option<Duration>) -> Duration {
        if let Some(asked) = asked {
            return asked.min(self.max);
        }
        let doubled = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        doubled.min(self.max).mul_f64(rand::random_range(0.8..1.2))
    }
}

/// One call to one provider, as the job records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub provider: String,
    /// The model that answered, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `ok`, or the failure's code (`provider_rate_limited`, `content_refused`, …).
    pub outcome: String,
    /// Milliseconds from the start of routing to the start of this call (slot wait included).
    pub at_ms: u64,
    /// Milliseconds spent waiting for one of the provider's concurrency slots.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued_ms: u64,
    /// Milliseconds the call took.
    pub took_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a route produced and how: the accepted image (or what the caller's check made of
/// it), who drew it, and every call made on the way.
#[derive(Debug)]
pub struct Routed<T = GeneratedImage> {
    pub value: T,
    pub provider: &'static str,
    pub model: String,
    pub attempts: Vec<Attempt>,
}

/// Every provider gave up, one refused the prompt, or the caller's check stopped the route.
#[derive(Debug)]
pub struct RouteFailure<A = Infallible> {
    /// The failure to tell the user about (see [`Router`] for which one).
    pub error: RouteError<A>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug)]
pub enum RouteError<A> {
    Provider(ProviderError),
    /// The caller's check gave up on the whole route (its own storage failed, say).
    Aborted(A),
}

impl<A> RouteError<A> {
    /// The provider failure the route ended with, unless the caller's check aborted it.
    pub fn provider(&self) -> Option<&ProviderError> {
        match self {
            RouteError::Provider(error) => Some(error),
            RouteError::Aborted(_) => None,
        }
    }
}

/// What the caller's check of a provider's image found wrong.
#[derive(Debug)]
pub enum Rejected<A> {
    /// The image is unusable (truncated, not an image, too big): the provider's failure,
    /// recorded as its attempt and handed to the next provider like a broken answer.
    Unusable(String),
    /// Not the provider's doing: the route stops with this.
    Abort(A),
}

/// The ordered providers, tried as the module documentation describes.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    backoff: Backoff,
    /// Where provider calls run; without them (tests, embedding), on the caller's task.
    threads: Option<ProviderThreads>,
}

enum Operation<'a> {
    Generate(&'a ImageRequest, &'a Partials),
    Edit(&'a EditRequest),
}

impl Router {
    /// `routes` must not be empty.
    pub fn new(routes: Vec<Route>, backoff: Backoff) -> Router {
        assert!(!routes.is_empty(), "a router needs at least one provider");
        Router { routes, backoff, threads: None }
    }

    /// Makes every provider call run on `threads`, off the caller's runtime.
    #[must_use]
    pub fn running_on(self, threads: ProviderThreads) -> Router {
        Router { threads: Some(threads), ..self }
    }

    /// A router over a single provider tried once: for tests and embedding.
    pub fn single(provider: Arc<dyn ImageProvider>) -> Router {
        Router::new(
            vec![Route::new(provider)],
            Backoff { base: Duration::ZERO, max: Duration::ZERO },
        )
    }

    /// Builds every provider of the route with its limits.
    pub fn build(
        route: &[RouteStep],
        providers: &ProvidersConfig,
        backoff: Backoff,
        context: &Context,
    ) -> Result<Router, SetupError> {
        let routes = route
            .iter()
            .map(|step| {
                Ok(Route {
                    provider: providers.build(step.provider, context)?,
                    timeout: step.timeout,
                    slots: step.concurrency.map(|slots| Arc::new(Semaphore::new(slots))),
                    attempts: step.attempts,
                })
            })
            .collect::<Result<Vec<_>, SetupError>>()?;
        Ok(Router::new(routes, backoff))
    }

    /// The first provider's name, which callers see as "the" provider.
    pub fn primary(&self) -> &'static str {
        self.routes[0].provider.name()
    }

    /// The first provider's typical latency: what a job usually takes.
    pub fn typical_latency(&self) -> Duration {
        self.routes[0].provider.typical_latency()
    }

    /// True when any provider in the route leaves the machine (MCP `openWorldHint`).
    pub fn is_remote(&self) -> bool {
        self.routes.iter().any(|route| route.provider.is_remote())
    }

    /// True when any provider in the route can edit images.
    pub fn can_edit(&self) -> bool {
        self.routes.iter().any(|route| route.provider.can_edit())
    }

    /// Typical latency of the first provider that can edit.
    pub fn typical_edit_latency(&self) -> Duration {
        self.routes
            .iter()
            .find(|route| route.provider.can_edit())
            .map_or_else(|| self.typical_latency(), |route| route.provider.typical_latency())
    }

    /// Draws one image along the route. Dropping the future cancels the call in flight.
    pub async fn generate(
        &self,
        request: &ImageRequest,
        partials: &Partials,
    ) -> Result<Routed, RouteFailure> {
        self.generate_checked(request, partials, accept_any).await
    }

    /// Draws one image, counting a provider's answer as a success only once `check` accepts
    /// it: the route sees what the caller sees, so an image the caller cannot use moves on to
    /// the next provider.
    pub async fn generate_checked<T, A, F, Fut>(
        &self,
        request: &ImageRequest,
        partials: &Partials,
        check: F,
    ) -> Result<Routed<T>, RouteFailure<A>>
    where
        F: Fn(GeneratedImage) -> Fut,
        Fut: Future<Output = Result<T, Rejected<A>>>,
    {
        self.run(Operation::Generate(request, partials), check).await
    }

    /// Edits one image along the route, skipping providers that cannot edit.
    pub async fn edit(&self, request: &EditRequest) -> Result<Routed, RouteFailure> {
        self.edit_checked(request, accept_any).await
    }

    /// [`Router::edit`] with the caller's check, as [`Router::generate_checked`].
    pub async fn edit_checked<T, A, F, Fut>(
        &self,
        request: &EditRequest,
        check: F,
    ) -> Result<Routed<T>, RouteFailure<A>>
    where
        F: Fn(GeneratedImage) -> Fut,
        Fut: Future<Output = Result<T, Rejected<A>>>,
    {
        self.run(Operation::Edit(request), check).await
    }

    async fn run<T, A, F, Fut>(
        &self,
        operation: Operation<'_>,
        check: F,
    ) -> Result<Routed<T>, RouteFailure<A>>
    where
        F: Fn(GeneratedImage) -> Fut,
        Fut: Future<Output = Result<T, Rejected<A>>>,
    {
        let began = Instant::now();
        let mut attempts = Vec::new();
        let mut last: Option<ProviderError> = None;
        let mut transient: Option<ProviderError> = None;
        let editing = matches!(operation, Operation::Edit(_));
        for route in &self.routes {
            if editing && !route.provider.can_edit() {
                continue;
            }
            for attempt in 1..=route.attempts {
                let queued = Instant::now();
                let _slot = match &route.slots {
                    Some(slots) => {
                        Some(slots.acquire().await.expect("route semaphores never close"))
                    }
                    None => None,
                };
                let at = Instant::now();
                let result = call(route, &operation, self.threads.as_ref()).await;
                let mut record = Attempt {
                    provider: route.provider.name().to_owned(),
                    model: None,
                    outcome: "ok".to_owned(),
                    at_ms: millis(queued.duration_since(began)),
                    queued_ms: millis(at.duration_since(queued)),
                    took_ms: millis(at.elapsed()),
                };
                let provider = route.provider.name();
                let error = match result {
                    Ok(image) => {
                        let model = image.model.clone();
                        record.model = Some(model.clone());
                        match check(image).await {
                            Ok(value) => {
                                attempts.push(record);
                                return Ok(Routed { value, provider, model, attempts });
                            }
                            Err(Rejected::Unusable(why)) => ProviderError::BrokenImage(why),
                            Err(Rejected::Abort(abort)) => {
                                attempts.push(record);
                                return Err(RouteFailure {
                                    error: RouteError::Aborted(abort),
                                    attempts,
                                });
                            }
                        }
                    }
                    Err(error) => error,
                };
                record.outcome = error.code().to_owned();
                attempts.push(record);
                tracing::warn!(provider, attempt, %error, "provider failed");
                if matches!(error, ProviderError::Refused { .. }) {
                    return Err(RouteFailure { error: RouteError::Provider(error), attempts });
                }
                let again = error.is_retryable() && attempt < route.attempts;
                let delay = self.backoff.delay(attempt, error.retry_after());
                if error.is_retryable() {
                    transient = Some(error.clone());
                }
                last = Some(error);
                if !again {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
        // A transient failure anywhere means trying again later may work, which is the more
        // useful thing to tell the user than a later provider's permanent reason.
        let error = transient.or(last).unwrap_or(ProviderError::Unsupported("edit images"));
        Err(RouteFailure { error: RouteError::Provider(error), attempts })
    }
}

/// The check of callers that take any image as it comes.
async fn accept_any(image: GeneratedImage) -> Result<GeneratedImage, Rejected<Infallible>> {
    Ok(image)
}

async fn call(
    route: &Route,
    operation: &Operation<'_>,
    threads: Option<&ProviderThreads>,
) -> Result<GeneratedImage, ProviderError> {
    let provider = Arc::clone(&route.provider);
    let work = match operation {
        Operation::Generate(request, partials) => {
            let (request, partials) = ((*request).clone(), (*partials).clone());
            async move { provider.generate_with_partials(&request, &partials).await }.boxed()
        }
        Operation::Edit(request) => {
            let request = (*request).clone();
            async move { provider.edit(&request).await }.boxed()
        }
    };
    let work = async {
        match threads {
            Some(threads) => threads.run(work).await,
            None => work.await,
        }
    };
    // The limit is kept here, on the caller's runtime: it fires even when the provider threads
    // get no CPU, and dropping `work` aborts the call there.
    match route.timeout {
        Some(limit) => {
            tokio::time::timeout(limit, work).await.unwrap_or(Err(ProviderError::Timeout))
        }
        None => work.await,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
