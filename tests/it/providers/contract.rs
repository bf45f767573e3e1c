//! The provider contract: what every remote provider must do however its service speaks,
//! checked for every row of [`PROVIDERS`] against that provider's stand-in. A server error is
//! retryable unavailability, a hanging server times out, a refused connection is a connect
//! error, the key is never in an error, a log line or `Debug`, answers over the body cap are
//! refused, and bad settings fail to build. The same table drives the job-level contract in
//! [`super::jobs`].
//!
//! Adding a provider: one row here, and its own file (`providers/<name>.rs`) with its stand-in,
//! its request shape and the answers only it gives.

use std::{
    any::Any,
    future::Future,
    io::{Read, Write},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use offstage::providers::{
    Context, ImageProvider, ImageRequest, ProviderError, ProvidersConfig, SetupError,
};

use super::{comfyui, endpoint, gemini, openai, replicate, standin};

/// One provider as the contract sees it.
pub(crate) struct Row {
    pub name: &'static str,
    /// Distinctive, so that a leak into any error text, job view or log is easy to spot.
    pub key: &'static str,
    /// The variable a missing key names; `None` when the provider needs no key.
    pub key_variable: Option<&'static str>,
    /// Points the provider's settings at a stand-in (see [`Setup`]).
    pub configure: fn(&mut ProvidersConfig, &Setup),
    /// The provider built from `providers` with its body cap lowered to `limit` bytes.
    pub capped: fn(&ProvidersConfig, usize) -> Arc<dyn ImageProvider>,
    /// Starts the provider's stand-in answering `answers` in order, or `None` when one of them
    /// is an answer this service never gives.
    pub spawn: fn(Vec<Answer>) -> Option<Spawning>,
    /// How many tries at the image the stand-in saw (one per job attempt).
    pub attempts: fn(&Spawned) -> usize,
    /// The `typical_latency` it reports by default.
    pub typical_latency: Duration,
    /// A base URL at which it reports itself remote.
    pub remote_url: &'static str,
    pub can_edit: bool,
    /// The body cap also bounds the first answer (so a chunked answer reaches it).
    pub caps_first_answer: bool,
    /// What a connect error says before the URL, for providers that name where they tried;
    /// `None` when the message must not carry the URL.
    pub connect_names: Option<&'static str>,
    /// Words of [`Answer::Refused`]'s reason.
    pub refusal_says: &'static str,
    /// The pixel size of a `landscape` image through the job path.
    pub landscape: (u32, u32),
    /// Checks what the stand-in received for a completed `landscape` job of "a red fox".
    pub landscape_request: fn(&Spawned, &Row),
}

/// Every provider that talks HTTP to a service.
pub(crate) const PROVIDERS: &[Row] =
    &[openai::ROW, gemini::ROW, super::stability::ROW, replicate::ROW, comfyui::ROW, endpoint::ROW];

/// How a row points its provider's settings at a stand-in.
pub(crate) struct Setup {
    pub base_url: String,
    pub key: Option<&'static str>,
    /// One HTTP request's limit.
    pub request_timeout: Duration,
    /// Set for job tests, so that `eta_ms` and polls stay short.
    pub typical_latency: Option<Duration>,
}

impl Setup {
    pub(crate) fn at(row: &Row, base_url: &str) -> Setup {
        Setup {
            base_url: base_url.to_owned(),
            key: Some(row.key),
            request_timeout: Duration::from_secs(10),
            typical_latency: None,
        }
    }
}

/// An answer every service has its own way of giving; each row maps it onto its stand-in's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A real image at the size the service draws for the request.
    Image,
    /// A 5xx with this status.
    ServerError(u16),
    /// Never answers.
    Hang,
    /// A rate limit asking to wait this many seconds.
    RateLimited(u64),
    /// The key is rejected.
    Unauthorized,
    /// The account is out of credit.
    QuotaExhausted,
    /// The prompt is refused by the service's safety system.
    Refused,
    /// "An image" whose bytes are [`standin::NOT_AN_IMAGE`].
    Garbage,
}

pub(crate) type Spawning = Pin<Box<dyn Future<Output = Spawned> + Send>>;

/// A running stand-in of any provider.
pub(crate) struct Spawned {
    pub base_url: String,
    stand_in: Box<dyn Any + Send + Sync>,
}

impl Spawned {
    pub(crate) fn new<S: Send + Sync + 'static>(stand_in: standin::StandIn<S>) -> Spawned {
        Spawned { base_url: stand_in.base_url.clone(), stand_in: Box::new(stand_in) }
    }

    /// The provider's own stand-in, to read what it received.
    pub(crate) fn get<S: Send + Sync + 'static>(&self) -> &standin::StandIn<S> {
        self.stand_in.downcast_ref().expect("the row's own stand-in")
    }
}

impl Row {
    /// The provider built from `setup` exactly as the server builds it.
    pub(crate) fn build_with(&self, setup: &Setup) -> Result<Arc<dyn ImageProvider>, SetupError> {
        let mut providers = ProvidersConfig::default();
        (self.configure)(&mut providers, setup);
        providers.build(self.name, &Context::default())
    }

    pub(crate) fn build(&self, base_url: &str) -> Arc<dyn ImageProvider> {
        self.build_with(&Setup::at(self, base_url)).expect("a valid provider configuration")
    }

    pub(crate) async fn spawn(&self, answers: Vec<Answer>) -> Option<Spawned> {
        Some((self.spawn)(answers)?.await)
    }

    /// Runs one square generation against a stand-in giving `answer`; `None` when this
    /// service never gives it.
    async fn generate(&self, answer: Answer) -> Option<Result<Vec<u8>, ProviderError>> {
        let stand_in = self.spawn(vec![answer]).await?;
        let result = self.build(&stand_in.base_url).generate(&request()).await;
        Some(result.map(|image| image.bytes.to_vec()))
    }

    /// The error a generation against `answer` fails with, checked not to reveal the key.
    async fn error_for(&self, answer: Answer) -> Option<ProviderError> {
        let result = self.generate(answer).await?;
        let error = result.expect_err(&format!("{}: {answer:?} should fail", self.name));
        self.assert_no_key(&error);
        Some(error)
    }

    pub(crate) fn assert_no_key(&self, error: &ProviderError) {
        let name = self.name;
        assert!(!error.to_string().contains(self.key), "{name}: Display leaks the key: {error}");
        assert!(!format!("{error:?}").contains(self.key), "{name}: Debug leaks the key");
    }
}

/// Starts the stand-in `spawn` with `answers` mapped by `reply`; `None` when one maps to none.
pub(crate) fn spawning<R, S, F>(
    answers: Vec<Answer>,
    reply: fn(Answer) -> Option<R>,
    spawn: fn(Vec<R>) -> F,
) -> Option<Spawning>
where
    R: Send + 'static,
    S: Send + Sync + 'static,
    F: Future<Output = standin::StandIn<S>> + Send + 'static,
{
    let script = answers.into_iter().map(reply).collect::<Option<Vec<_>>>()?;
    Some(Box::pin(async move { Spawned::new(spawn(script).await) }))
}

/// A row's `configure`: the settings every provider has, set from a [`Setup`], then `field`s
/// of its own.
macro_rules! configure {
    ($name:ident $(, $field:ident = $value:expr)*) => {
        fn configure(providers: &mut ProvidersConfig, setup: &Setup) {
            let settings = &mut providers.$name;
            settings.base_url.clone_from(&setup.base_url);
            settings.api_key = setup.key.map(Into::into);
            settings.request_timeout = setup.request_timeout.into();
            if let Some(latency) = setup.typical_latency {
                settings.typical_latency = latency.into();
            }
            $(settings.$field = $value;)*
        }
    };
}

/// A row's `capped`: the provider built on its own, with its body cap lowered.
macro_rules! capped {
    ($name:ident, $provider:ty) => {
        fn capped(providers: &ProvidersConfig, limit: usize) -> Arc<dyn ImageProvider> {
            let provider = <$provider as offstage::providers::ProviderSpec>::build(
                &providers.$name,
                &Context::default(),
            );
            Arc::new(provider.expect("a valid configuration").with_body_limit(limit))
        }
    };
}

/// A provider's own tests' `build` (exactly as the server builds it, from its table) and
/// `provider` (the same, for a configuration that must be valid).
macro_rules! built {
    ($name:ident, $config:ty) => {
        fn build(config: $config) -> Result<Arc<dyn ImageProvider>, SetupError> {
            let providers = ProvidersConfig { $name: config, ..ProvidersConfig::default() };
            providers.build(stringify!($name), &Context::default())
        }

        fn provider(config: $config) -> Arc<dyn ImageProvider> {
            build(config).expect("a valid provider configuration")
        }
    };
}

pub(super) use {built, capped, configure};

/// A row's `attempts` for a stand-in that answers every request from its script.
pub(crate) fn scripted_attempts<R: Clone + Send + Sync + 'static>(stand_in: &Spawned) -> usize {
    stand_in.get::<standin::Scripted<R>>().hits()
}

pub(crate) fn request() -> ImageRequest {
    ImageRequest { prompt: "a lighthouse at dusk".to_owned(), width: 1024, height: 1024, seed: 7 }
}

#[tokio::test]
async fn server_errors_are_retryable_unavailability() {
    for row in PROVIDERS {
        let statuses = [500, 502, 503, 504];
        let answers = statuses.iter().map(|&status| Answer::ServerError(status)).collect();
        let stand_in = row.spawn(answers).await.expect("every service has server errors");
        let provider = row.build(&stand_in.base_url);
        for expected in statuses {
            let error = provider.generate(&request()).await.expect_err("a server error");
            row.assert_no_key(&error);
            assert!(
                matches!(error, ProviderError::Unavailable { status, .. } if status == expected),
                "{}: {error:?}",
                row.name
            );
            assert!(error.is_retryable());
        }
    }
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    for row in PROVIDERS {
        let stand_in = row.spawn(vec![Answer::Hang]).await.unwrap();
        let setup = Setup {
            request_timeout: Duration::from_millis(300),
            ..Setup::at(row, &stand_in.base_url)
        };
        let started = Instant::now();
        let error = row.build_with(&setup).unwrap().generate(&request()).await.unwrap_err();
        assert!(matches!(error, ProviderError::Timeout), "{}: {error:?}", row.name);
        assert!(error.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    for row in PROVIDERS {
        let (url, port) = standin::refused_url();
        let error = row.build(&url).generate(&request()).await.expect_err("nothing listens");
        row.assert_no_key(&error);
        let ProviderError::Connect(message) = &error else {
            panic!("{}: expected a connect error, got {error:?}", row.name)
        };
        assert!(error.is_retryable());
        match row.connect_names {
            Some(prefix) => {
                let said = format!("{prefix}http://127.0.0.1:{port}");
                assert!(message.contains(&said), "{}: {message}", row.name);
            }
            None => assert!(!error.to_string().contains("127.0.0.1"), "no URL in: {error}"),
        }
    }
}

#[tokio::test]
async fn a_rejected_key_is_unauthorized() {
    for row in PROVIDERS {
        let error = row.error_for(Answer::Unauthorized).await.unwrap();
        assert!(matches!(error, ProviderError::Unauthorized), "{}: {error:?}", row.name);
        assert!(!error.is_retryable());
        assert!(error.speakable().contains("credentials"), "{}", error.speakable());
    }
}

#[tokio::test]
async fn a_rate_limit_is_retryable_after_the_requested_wait() {
    for row in PROVIDERS {
        let Some(error) = row.error_for(Answer::RateLimited(7)).await else { continue };
        assert!(matches!(error, ProviderError::RateLimited { .. }), "{}: {error:?}", row.name);
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)), "{}", row.name);
    }
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retryable() {
    for row in PROVIDERS {
        let Some(error) = row.error_for(Answer::QuotaExhausted).await else { continue };
        assert!(matches!(error, ProviderError::QuotaExhausted), "{}: {error:?}", row.name);
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn a_refused_prompt_is_a_refusal_saying_why() {
    for row in PROVIDERS {
        let Some(error) = row.error_for(Answer::Refused).await else { continue };
        let ProviderError::Refused { reason } = &error else {
            panic!("{}: expected a refusal, got {error:?}", row.name)
        };
        assert!(reason.contains(row.refusal_says), "{}: {reason}", row.name);
        assert!(!error.is_retryable());
        assert_eq!(error.code(), "content_refused");
        assert!(error.speakable().contains("describing it differently"), "{}", error.speakable());
    }
}

#[tokio::test]
async fn undecodable_image_bytes_are_passed_on_for_the_runner_to_judge() {
    for row in PROVIDERS {
        let Some(result) = row.generate(Answer::Garbage).await else { continue };
        let bytes = result.unwrap_or_else(|error| panic!("{}: {error:?}", row.name));
        assert_eq!(
            bytes,
            standin::NOT_AN_IMAGE,
            "{}: the provider does not judge images",
            row.name
        );
    }
}

#[tokio::test]
async fn an_announced_body_over_the_cap_is_an_invalid_response() {
    for row in PROVIDERS {
        let stand_in = row.spawn(vec![Answer::Image]).await.unwrap();
        let mut providers = ProvidersConfig::default();
        (row.configure)(&mut providers, &Setup::at(row, &stand_in.base_url));
        let error = (row.capped)(&providers, 1024).generate(&request()).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::InvalidResponse(m) if m.contains("exceeds 1024 bytes")),
            "{}: {error:?}",
            row.name
        );
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_an_invalid_response() {
    for row in PROVIDERS.iter().filter(|row| row.caps_first_answer) {
        // No Content-Length: only counting the bytes as they arrive can enforce the cap.
        let base_url = spawn_chunked_server(1024 * 1024);
        let mut providers = ProvidersConfig::default();
        (row.configure)(&mut providers, &Setup::at(row, &base_url));
        let error = (row.capped)(&providers, 64 * 1024).generate(&request()).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::InvalidResponse(message) if message.contains("exceeds")),
            "{}: {error:?}",
            row.name
        );
    }
}

#[tokio::test]
async fn reports_its_name_latency_and_remoteness_and_hides_the_key() {
    for row in PROVIDERS {
        let provider = row.build(row.remote_url);
        assert_eq!(provider.name(), row.name);
        assert_eq!(provider.typical_latency(), row.typical_latency, "{}", row.name);
        assert!(provider.is_remote(), "{}", row.name);
        assert_eq!(provider.can_edit(), row.can_edit, "{}", row.name);
        let shown = format!("{provider:?}");
        assert!(!shown.contains(row.key), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn bad_keys_and_base_urls_fail_to_build() {
    for row in PROVIDERS {
        let setup = |base_url: &str, key| Setup { key, ..Setup::at(row, base_url) };
        if let Some(variable) = row.key_variable {
            for key in [None, Some("  ")] {
                let Err(error) = row.build_with(&setup("http://x", key)) else {
                    panic!("{}: built without a key", row.name)
                };
                assert!(matches!(error, SetupError::MissingKey { .. }), "{error:?}");
                assert!(error.to_string().contains(variable), "{error}");
            }
        }
        let error = row.build_with(&setup("http://x", Some("key\nwith a newline"))).unwrap_err();
        assert!(matches!(error, SetupError::Invalid { field: "api_key", .. }), "{error:?}");
        for base_url in [
            "ftp://api.openai.com",
            "api.openai.com",
            "http://",
            "ftp://example.com",
            "generativelanguage.googleapis.com",
            "api.stability.ai",
            "api.replicate.com",
            "ftp://gpu.lan",
            "127.0.0.1:8188",
            "http://gpu.lan/?x=1",
        ] {
            let result = row.build_with(&Setup::at(row, base_url));
            assert!(
                matches!(result, Err(SetupError::Invalid { field: "base_url", .. })),
                "{}: {base_url}: {result:?}",
                row.name
            );
        }
    }
}

#[tokio::test]
async fn dropping_the_stand_in_stops_it() {
    for row in PROVIDERS {
        let stand_in = row.spawn(vec![Answer::Image]).await.unwrap();
        let provider = row.build(&stand_in.base_url);
        drop(stand_in);
        // The server task ends at its next poll, so give it a few moments to let go of the port.
        let mut stopped = false;
        for _ in 0..50 {
            if let Err(ProviderError::Connect(_)) = provider.generate(&request()).await {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "{}: the stand-in still answers after being dropped", row.name);
    }
}

/// A server that answers one request with a 200 whose chunked body of `total` bytes of JSON
/// whitespace never ends in a document, so that only the size cap can stop the reader. It uses
/// blocking sockets on a thread of its own, to need nothing from tokio beyond what the crate has.
fn spawn_chunked_server(total: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else { return };
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let chunk = vec![b' '; 16 * 1024];
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        // The client hangs up once it has seen enough; a failed write ends the answer early.
        let answered = socket.write_all(head.as_bytes()).is_ok()
            && (0..total.div_ceil(chunk.len())).all(|_| socket.write_all(&frame).is_ok());
        if answered {
            let _ = socket.write_all(b"0\r\n\r\n");
        }
    });
    format!("http://{address}")
}
