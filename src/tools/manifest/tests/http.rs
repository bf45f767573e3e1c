//! HTTP backend tests: the shipped manifests' real `[http]` sections run against local stand-ins
//! that speak the documented formats of Open-Meteo and the Brave Search API (their origins
//! swapped for the stand-in's), plus the failure paths: statuses, retries, timeouts, size
//! limits, secrets, header injection, private addresses and cancellation.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::*;
use crate::tools::manifest::format::parse;
use crate::tools::manifest::test_support::{call, cancel_soon, with_secrets};

const OPEN_METEO: &str = "https://api.open-meteo.com";
const BRAVE: &str = "https://api.search.brave.com";
const KEY: &str = "BSA-test-key-4f8a2c";

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    raw_query: String,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

type Reply = Arc<dyn Fn(usize) -> (Duration, Response) + Send + Sync>;

#[derive(Clone)]
struct StandIn {
    seen: Arc<Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
    reply: Reply,
}

impl StandIn {
    /// Serves `reply(attempt)` (after its delay) on a fresh local port; returns the origin.
    async fn start(
        reply: impl Fn(usize) -> (Duration, Response) + Send + Sync + 'static,
    ) -> (StandIn, String) {
        let stand_in =
            StandIn { seen: Arc::default(), hits: Arc::default(), reply: Arc::new(reply) };
        let router = Router::new().fallback(answer).with_state(stand_in.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (stand_in, origin)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("a request arrived")
    }
}

async fn answer(State(stand_in): State<StandIn>, request: Request) -> Response {
    let attempt = stand_in.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    stand_in.seen.lock().unwrap().push(Seen {
        path: parts.uri.path().to_owned(),
        raw_query: parts.uri.query().unwrap_or_default().to_owned(),
        query,
        headers: parts.headers,
        body,
    });
    let (delay, response) = (stand_in.reply)(attempt);
    tokio::time::sleep(delay).await;
    response
}

fn json_reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// The documented shape of Open-Meteo's `/v1/forecast?current=…` answer.
fn forecast() -> Value {
    json!({
        "latitude": 52.52, "longitude": 13.419998, "generationtime_ms": 0.03,
        "utc_offset_seconds": 0, "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 38.0,
        "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": "°C",
                          "wind_speed_10m": "km/h", "weather_code": "wmo code"},
        "current": {"time": "2026-05-01T12:00", "interval": 900, "temperature_2m": 12.6,
                    "wind_speed_10m": 9.7, "weather_code": 3},
    })
}

/// The documented shape of a Brave web search answer (abridged to the parts we read).
fn search_results() -> Value {
    json!({
        "type": "search",
        "query": {"original": "rust async", "more_results_available": true},
        "web": {"type": "search", "results": [
            {"title": "Asynchronous Programming in Rust", "url": "https://rust-lang.github.io/async-book/",
             "description": "Learn <strong>async</strong> Rust.", "language": "en", "family_friendly": true},
            {"title": "Tokio", "url": "https://tokio.rs/", "description": "An async runtime.",
             "language": "en", "family_friendly": true},
        ]},
    })
}

/// The documented shape of a Brave error.
fn brave_error(status: u16, code: &str, detail: &str) -> Response {
    json_reply(
        status,
        json!({
            "type": "ErrorResponse",
            "error": {"id": "c3f1", "status": status, "code": code, "detail": detail, "meta": {}},
            "time": 1_767_225_600,
        }),
    )
}

/// A shipped manifest with its API origin replaced by the stand-in's.
fn shipped(file: &str, api: &str, origin: &str, tweak: impl Fn(String) -> String) -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(file);
    let text = std::fs::read_to_string(path).unwrap().replace(api, origin);
    parse(&Path::new("tools").join(file), &tweak(text)).unwrap()
}

fn weather(origin: &str) -> Manifest {
    shipped("get_weather.toml", OPEN_METEO, origin, |text| text)
}

fn web_search(origin: &str) -> Manifest {
    shipped("web_search.toml", BRAVE, origin, |text| text)
}

fn context(secrets: &[(&str, &str)]) -> ExecContext {
    let mut ctx = with_secrets(secrets);
    // The stand-ins listen on loopback.
    ctx.allow_private = true;
    ctx
}

/// How a keyed `web_search` for "x" at `origin` failed.
async fn search_fails(origin: &str) -> BackendError {
    let context = context(&[("BRAVE_SEARCH_API_KEY", KEY)]);
    call(&web_search(origin), json!({"query": "x"}), &context).await.unwrap_err()
}

fn berlin() -> Value {
    json!({"latitude": 52.52, "longitude": 13.41, "place": "Berlin"})
}

#[tokio::test]
async fn weather_maps_the_documented_response() {
    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, forecast()))).await;
    let manifest = weather(&origin);
    let result = call(&manifest, berlin(), &context(&[])).await.unwrap();
    assert_eq!(
        result,
        json!({"temperature": 12.6, "wind_speed": 9.7, "weather_code": 3, "time": "2026-05-01T12:00"})
    );
    let seen = stand_in.last();
    assert_eq!(seen.path, "/v1/forecast");
    let query: Vec<(&str, &str)> =
        seen.query.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    assert_eq!(
        query,
        [
            ("current", "temperature_2m,wind_speed_10m,weather_code"),
            ("latitude", "52.52"),
            ("longitude", "13.41"),
            ("temperature_unit", "celsius"),
            ("wind_speed_unit", "kmh"),
        ]
    );
    let Value::Object(args) = berlin() else { unreachable!() };
    let args = manifest.check_arguments(&args).unwrap();
    assert_eq!(
        manifest.say_finished(&args, &result).unwrap().as_deref(),
        Some(
            "In Berlin it is 13 degrees Celsius and overcast, with wind at 10 kilometres per hour."
        )
    );
}

#[tokio::test]
async fn web_search_sends_the_key_and_returns_the_results() {
    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, search_results()))).await;
    let manifest = web_search(&origin);
    let args = json!({"query": "rust async"});
    let result =
        call(&manifest, args.clone(), &context(&[("BRAVE_SEARCH_API_KEY", KEY)])).await.unwrap();
    assert_eq!(result, search_results()["web"]["results"]);
    let seen = stand_in.last();
    assert_eq!(seen.path, "/res/v1/web/search");
    assert_eq!(seen.query["q"], "rust async");
    assert_eq!(seen.query["count"], "5");
    assert_eq!(seen.headers["x-subscription-token"], KEY);
    assert_eq!(seen.headers[header::ACCEPT], "application/json");
    let Value::Object(args) = args else { unreachable!() };
    assert_eq!(
        manifest.say_finished(&args, &result).unwrap().as_deref(),
        Some("The top result is Asynchronous Programming in Rust: Learn async Rust.")
    );
    assert_eq!(
        manifest.say_started(&args).unwrap().as_deref(),
        Some("Searching the web for rust async.")
    );
}

#[tokio::test]
async fn client_errors_are_reported_and_not_retried() {
    let (stand_in, origin) = StandIn::start(|_| {
        (Duration::ZERO, brave_error(422, "VALIDATION", "Unable to validate request parameter(s)."))
    })
    .await;
    let error = search_fails(&origin).await;
    assert_eq!(
        error,
        BackendError {
            code: "http_status",
            message: "127.0.0.1 answered 422 Unprocessable Entity: Unable to validate request \
                      parameter(s)."
                .to_owned(),
            retryable: false,
            retry_after: None,
        }
    );
    assert_eq!(stand_in.hits(), 1, "web_search allows retries, but never for a 4xx");
}

#[tokio::test]
async fn a_rejected_key_never_appears_in_the_error() {
    let (_stand_in, origin) = StandIn::start(|_| {
        let detail = format!("The provided subscription token {KEY} is invalid.");
        (Duration::ZERO, brave_error(401, "SUBSCRIPTION_TOKEN_INVALID", &detail))
    })
    .await;
    let error = search_fails(&origin).await;
    assert_eq!(
        error.message,
        "127.0.0.1 answered 401 Unauthorized: The provided subscription token *** is invalid."
    );
}

#[tokio::test]
async fn a_missing_secret_is_named_before_any_request() {
    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, search_results()))).await;
    let error = call(&web_search(&origin), json!({"query": "x"}), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "missing_secret");
    assert_eq!(error.message, "web_search needs the environment variable BRAVE_SEARCH_API_KEY.");
    assert!(!error.retryable);
    assert_eq!(stand_in.hits(), 0);
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_servers_delay() {
    let (stand_in, origin) = StandIn::start(|attempt| match attempt {
        0 => (
            Duration::ZERO,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                axum::Json(json!({"error": true, "reason": "Too many requests"})),
            )
                .into_response(),
        ),
        _ => (Duration::ZERO, json_reply(200, forecast())),
    })
    .await;
    let started = Instant::now();
    let result = call(&weather(&origin), berlin(), &context(&[])).await.unwrap();
    assert_eq!(result["temperature"], 12.6);
    assert_eq!(stand_in.hits(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_call() {
    let (stand_in, origin) = StandIn::start(|_| {
        let reply = (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], "slow down");
        (Duration::ZERO, reply.into_response())
    })
    .await;
    let started = Instant::now();
    let error = call(&weather(&origin), berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "http_status");
    assert_eq!(error.message, "127.0.0.1 answered 429 Too Many Requests: slow down.");
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(Duration::from_secs(60)));
    assert_eq!(stand_in.hits(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (stand_in, origin) = StandIn::start(|attempt| match attempt {
        0 => (Duration::ZERO, json_reply(503, json!({"error": true, "reason": "Maintenance"}))),
        _ => (Duration::ZERO, json_reply(200, forecast())),
    })
    .await;
    assert!(call(&weather(&origin), berlin(), &context(&[])).await.is_ok());
    assert_eq!(stand_in.hits(), 2);

    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, brave_error(500, "INTERNAL", "Something broke.")))
            .await;
    let error = search_fails(&origin).await;
    assert_eq!(error.message, "127.0.0.1 answered 500 Internal Server Error: Something broke.");
    assert!(error.retryable);
    assert_eq!(stand_in.hits(), 3, "web_search allows two retries");
}

#[tokio::test]
async fn slow_services_time_out_promptly() {
    let (_stand_in, origin) =
        StandIn::start(|_| (Duration::from_secs(5), json_reply(200, forecast()))).await;
    let manifest = shipped("get_weather.toml", OPEN_METEO, &origin, |text| {
        text.replace("timeout = \"2500ms\"", "timeout = \"300ms\"")
    });
    let started = Instant::now();
    let error = call(&manifest, berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "timeout");
    assert_eq!(error.message, "127.0.0.1 did not answer within 300ms.");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    // Declared too large: refused from the headers.
    let (_stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, vec![b' '; 100_000].into_response())).await;
    let error = call(&weather(&origin), berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        ("too_large", "The answer from 127.0.0.1 is larger than 64 KiB.")
    );

    // Streamed without a length: refused once the limit is passed.
    let (_stand_in, origin) = StandIn::start(|_| {
        let chunks = (0..10).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b' '; 16 * 1024])));
        (Duration::ZERO, Body::from_stream(futures::stream::iter(chunks)).into_response())
    })
    .await;
    let error = call(&weather(&origin), berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "too_large");
    assert!(!error.retryable);
}

#[tokio::test]
async fn header_injection_is_refused() {
    let (stand_in, origin) = StandIn::start(|_| (Duration::ZERO, json_reply(200, json!({})))).await;
    let text = format!(
        "name = \"echo\"\ndescription = \"d\"\n[params.note]\ntype = \"string\"\n[http]\n\
         url = \"{origin}/echo\"\nheaders = {{ X-Note = \"{{{{ note }}}}\" }}\n"
    );
    let manifest = parse(Path::new("tools/echo.toml"), &text).unwrap();
    let error =
        call(&manifest, json!({"note": "fine\r\nX-Admin: yes"}), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "bad_request");
    assert_eq!(error.message, "Refused: the X-Note header would contain a line break.");
    assert_eq!(stand_in.hits(), 0);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, forecast()))).await;
    let mut ctx = context(&[]);
    ctx.allow_private = false;
    let error = call(&weather(&origin), berlin(), &ctx).await.unwrap_err();
    assert_eq!(error.code, "blocked_address");
    assert_eq!(error.message, "I may not call 127.0.0.1: it is a private or local address.");
    assert_eq!(stand_in.hits(), 0);
}

#[tokio::test]
async fn responses_must_hold_what_the_manifest_points_at() {
    let (_stand_in, origin) = StandIn::start(|_| (Duration::ZERO, "sunny".into_response())).await;
    let error = call(&weather(&origin), berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        ("bad_response", "The answer from 127.0.0.1 is not JSON.")
    );

    let (_stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, json!({"current": {"time": "t"}}))))
            .await;
    let error = call(&weather(&origin), berlin(), &context(&[])).await.unwrap_err();
    assert_eq!(error.message, "The answer from 127.0.0.1 has no /current/temperature_2m.");

    // Without a pointer, text is the result.
    let (_stand_in, origin) = StandIn::start(|_| (Duration::ZERO, "sunny\n".into_response())).await;
    let text = format!("name = \"plain\"\ndescription = \"d\"\n[http]\nurl = \"{origin}/x\"\n");
    let plain = parse(Path::new("tools/plain.toml"), &text).unwrap();
    assert_eq!(call(&plain, json!({}), &context(&[])).await.unwrap(), json!("sunny"));
}

#[tokio::test]
async fn cancellation_aborts_the_request() {
    let (_stand_in, origin) =
        StandIn::start(|_| (Duration::from_secs(5), json_reply(200, forecast()))).await;
    let ctx = context(&[]);
    cancel_soon(&ctx);
    let started = Instant::now();
    let error = call(&weather(&origin), berlin(), &ctx).await.unwrap_err();
    assert_eq!(error.code, "cancelled");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn bodies_and_queries_keep_types_and_leave_absent_values_out() {
    let (stand_in, origin) =
        StandIn::start(|_| (Duration::ZERO, json_reply(200, json!({"ok": true})))).await;
    let text = format!(
        "name = \"lookup\"\ndescription = \"d\"\n\
         [params.query]\ntype = \"string\"\nrequired = true\n\
         [params.limit]\ntype = \"integer\"\ndefault = 3\n\
         [params.lang]\ntype = \"string\"\n\
         [http]\nmethod = \"POST\"\nurl = \"{origin}/search\"\n\
         query = {{ lang = \"{{{{ lang }}}}\", tag = [\"a b\", \"{{{{ query }}}}\"], n = 2 }}\n\
         headers = {{ Authorization = \"Bearer {{{{ secret.LOOKUP_KEY }}}}\" }}\n\
         body = {{ q = \"{{{{ query }}}}\", limit = \"{{{{ limit }}}}\", filters = {{ lang = \"{{{{ lang }}}}\" }}, safe = true }}\n\
         result = \"/ok\"\n"
    );
    let manifest = parse(Path::new("tools/lookup.toml"), &text).unwrap();
    let result = call(&manifest, json!({"query": "tea"}), &context(&[("LOOKUP_KEY", "k-123456")]))
        .await
        .unwrap();
    assert_eq!(result, json!(true));
    let seen = stand_in.last();
    assert_eq!(seen.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(seen.headers[header::AUTHORIZATION], "Bearer k-123456");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body, json!({"q": "tea", "limit": 3, "filters": {}, "safe": true}));
    // The absent `lang` is left out of the query too; a list repeats its key.
    assert_eq!(seen.raw_query, "tag=a+b&tag=tea&n=2");
}
