//! What one caller may hold open, counted where requests arrive: legacy MCP sessions (per
//! token and in total, and a deadline for their handshake) and long-lived streams (`GET
//! /v1/events`, `subscriptions/listen`). Past a cap a new one is refused with a clear error
//! (429 per token, 503 in total); what is already open is never cut.
//!
//! rmcp's session manager keeps the sessions; this keeps a book of who opened each (the
//! `Mcp-Session-Id` of an `initialize` answer) and whether it finished its handshake
//! (`notifications/initialized`), and a sweeper closes sessions that did not in time and
//! forgets those rmcp has let go (idle expiry, DELETE).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use rmcp::transport::streamable_http_server::{
    SessionId, SessionManager, session::local::LocalSessionManager,
};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::{config::LimitsConfig, tools::Caller};

const SESSION_HEADER: &str = "mcp-session-id";
/// How often sessions that missed their handshake are closed.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How often the book is checked against the sessions rmcp still has.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct Caps {
    limits: LimitsConfig,
    sessions: Mutex<Book>,
    streams: Mutex<HashMap<(Stream, String), usize>>,
}

/// The kinds of long-lived stream that are counted per owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Stream {
    Events,
    Listen,
}

#[derive(Debug, Default)]
struct Book {
    by_id: HashMap<String, Session>,
    per_owner: HashMap<String, usize>,
}

#[derive(Debug)]
struct Session {
    owner: String,
    opened: Instant,
    initialized: bool,
}

impl Book {
    fn insert(&mut self, id: String, owner: String) {
        *self.per_owner.entry(owner.clone()).or_default() += 1;
        let session = Session { owner, opened: Instant::now(), initialized: false };
        if let Some(replaced) = self.by_id.insert(id, session) {
            self.forget_owner(&replaced.owner);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(session) = self.by_id.remove(id) {
            self.forget_owner(&session.owner);
        }
    }

    fn forget_owner(&mut self, owner: &str) {
        if let Some(count) = self.per_owner.get_mut(owner) {
            *count -= 1;
            if *count == 0 {
                self.per_owner.remove(owner);
            }
        }
    }
}

impl Caps {
    pub(super) fn new(limits: LimitsConfig) -> Caps {
        Caps { limits, sessions: Mutex::default(), streams: Mutex::default() }
    }

    /// Legacy sessions open now, in total and for `owner`.
    fn session_counts(&self, owner: &str) -> (usize, usize) {
        let book = self.sessions.lock().expect("session book lock");
        (book.by_id.len(), book.per_owner.get(owner).copied().unwrap_or(0))
    }

    /// Takes a place for one more stream of `kind` for `owner`, or says why not.
    fn open_stream(self: &Arc<Self>, kind: Stream, owner: &str) -> Option<StreamGuard> {
        let cap = match kind {
            Stream::Events => self.limits.event_streams_per_token,
            Stream::Listen => self.limits.listen_streams_per_token,
        };
        let mut streams = self.streams.lock().expect("stream count lock");
        let count = streams.entry((kind, owner.to_owned())).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(StreamGuard { caps: self.clone(), key: (kind, owner.to_owned()) })
    }

    /// Streams of `kind` `owner` holds open now.
    #[cfg(test)]
    fn streams_of(&self, kind: Stream, owner: &str) -> usize {
        let streams = self.streams.lock().expect("stream count lock");
        streams.get(&(kind, owner.to_owned())).copied().unwrap_or(0)
    }

    /// Closes sessions that missed their handshake deadline and forgets those rmcp has let go,
    /// until `shutdown`.
    pub(super) fn spawn_sweeper(
        self: &Arc<Self>,
        manager: Arc<LocalSessionManager>,
        shutdown: CancellationToken,
    ) {
        let caps = self.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            let mut last_reconcile = Instant::now();
            loop {
                tokio::select! {
                    _ = sweep.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                for id in caps.late_handshakes() {
                    let id: SessionId = id.into();
                    if let Err(error) = manager.close_session(&id).await {
                        tracing::debug!(%error, "closing a session that missed its handshake");
                    }
                    caps.sessions.lock().expect("session book lock").remove(&id);
                    tracing::info!(session = %id, "closed a session that never finished its handshake");
                }
                if last_reconcile.elapsed() >= RECONCILE_EVERY {
                    last_reconcile = Instant::now();
                    let ids: Vec<String> = {
                        let book = caps.sessions.lock().expect("session book lock");
                        book.by_id.keys().cloned().collect()
                    };
                    for id in ids {
                        let key: SessionId = id.clone().into();
                        if !manager.has_session(&key).await.unwrap_or(true) {
                            caps.sessions.lock().expect("session book lock").remove(&id);
                        }
                    }
                }
            }
        });
    }

    fn late_handshakes(&self) -> Vec<String> {
        let deadline = self.limits.session_init_timeout;
        let book = self.sessions.lock().expect("session book lock");
        book.by_id
            .iter()
            .filter(|(_, session)| !session.initialized && session.opened.elapsed() > *deadline)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// One open stream's place; given back when the stream ends.
#[derive(Debug)]
struct StreamGuard {
    caps: Arc<Caps>,
    key: (Stream, String),
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.caps.streams.lock().expect("stream count lock");
        if let Some(count) = streams.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

/// The MCP route's session accounting: caps new legacy sessions, books who opened them,
/// notes finished handshakes, forgets ended sessions, and counts listen streams.
pub(super) async fn mcp(State(caps): State<Arc<Caps>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or_else(Caller::local);
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    match (request.method().clone(), session) {
        (Method::DELETE, Some(id)) => {
            let response = next.run(request).await;
            caps.sessions.lock().expect("session book lock").remove(&id);
            response
        }
        (Method::POST, Some(id)) => {
            let handshaking = {
                let book = caps.sessions.lock().expect("session book lock");
                book.by_id.get(&id).is_some_and(|session| !session.initialized)
            };
            let (request, finished) = if handshaking {
                let (parts, body) = request.into_parts();
                // Bodies are already buffered and bounded (`body.rs`).
                let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
                let finished = method_of(&bytes) == Some("notifications/initialized");
                (Request::from_parts(parts, Body::from(bytes)), finished)
            } else {
                (request, false)
            };
            let response = next.run(request).await;
            if finished && response.status().is_success() {
                let mut book = caps.sessions.lock().expect("session book lock");
                if let Some(session) = book.by_id.get_mut(&id) {
                    session.initialized = true;
                }
            }
            response
        }
        (Method::POST, None) if is_listen(&request) => {
            let Some(guard) = caps.open_stream(Stream::Listen, &caller.owner) else {
                let limit = caps.limits.listen_streams_per_token;
                return too_many(format!("this token already holds {limit} listen streams"));
            };
            let response = next.run(request).await;
            held_while_streaming(response, guard)
        }
        // 2026-07-28 requests name their method in a header and open no session.
        (Method::POST, None) if request.headers().contains_key("mcp-method") => {
            next.run(request).await
        }
        (Method::POST, None) => {
            let (parts, body) = request.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let opens_session = method_of(&bytes) == Some("initialize");
            let request = Request::from_parts(parts, Body::from(bytes));
            if !opens_session {
                return next.run(request).await;
            }
            let (total, mine) = caps.session_counts(&caller.owner);
            if total >= caps.limits.sessions {
                let message = format!(
                    "Service Unavailable: the server holds its limit of {} sessions; try again \
                     later",
                    caps.limits.sessions
                );
                return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
            }
            if mine >= caps.limits.sessions_per_token {
                let limit = caps.limits.sessions_per_token;
                return too_many(format!(
                    "this token already holds {limit} sessions; close some (DELETE) first"
                ));
            }
            let response = next.run(request).await;
            if let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                caps.sessions
                    .lock()
                    .expect("session book lock")
                    .insert(id.to_owned(), caller.owner);
            }
            response
        }
        _ => next.run(request).await,
    }
}

/// `GET /v1/events`: at most `limits.event_streams_per_token` streams per owner.
pub(super) async fn events(
    State(caps): State<Arc<Caps>>,
    request: Request,
    next: Next,
) -> Response {
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or_else(Caller::local);
    let Some(guard) = caps.open_stream(Stream::Events, &caller.owner) else {
        let limit = caps.limits.event_streams_per_token;
        return ApiError::TooMany(format!(
            "this token already holds {limit} event streams; close one or raise \
             limits.event_streams_per_token"
        ))
        .into_response();
    };
    let response = next.run(request).await;
    held_while_streaming(response, guard)
}

fn is_listen(request: &Request) -> bool {
    request.headers().get("mcp-method").is_some_and(|method| method == "subscriptions/listen")
}

/// The stream's place is given back when its body ends or is dropped (the client left).
fn held_while_streaming(response: Response, guard: StreamGuard) -> Response {
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |frame| {
        let _held = &guard;
        frame
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// A 429 the JSON-RPC error layer turns into `{"jsonrpc", "error": …}`.
fn too_many(message: String) -> Response {
    let mut response =
        (StatusCode::TOO_MANY_REQUESTS, format!("Too Many Requests: {message}")).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The JSON-RPC method of a (single-message) body, when it has one.
fn method_of(body: &[u8]) -> Option<&str> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: Option<&'a str>,
    }
    serde_json::from_slice::<Message<'_>>(body).ok()?.method
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_places_are_given_back_when_streams_end() {
        let limits = LimitsConfig { event_streams_per_token: 2, ..LimitsConfig::default() };
        let caps = Arc::new(Caps::new(limits));
        let first = caps.open_stream(Stream::Events, "alice").unwrap();
        let second = caps.open_stream(Stream::Events, "alice").unwrap();
        assert!(caps.open_stream(Stream::Events, "alice").is_none(), "alice is at her cap");
        assert!(caps.open_stream(Stream::Events, "bob").is_some(), "bob has his own");
        assert!(caps.open_stream(Stream::Listen, "alice").is_some(), "listen is counted apart");
        drop(first);
        assert_eq!(caps.streams_of(Stream::Events, "alice"), 1);
        assert!(caps.open_stream(Stream::Events, "alice").is_some());
        drop(second);
    }

    #[test]
    fn the_book_counts_sessions_per_owner() {
        let caps = Caps::new(LimitsConfig::default());
        let mut book = caps.sessions.lock().unwrap();
        book.insert("a".into(), "alice".into());
        book.insert("b".into(), "alice".into());
        book.insert("c".into(), "bob".into());
        book.remove("a");
        book.remove("missing");
        drop(book);
        assert_eq!(caps.session_counts("alice"), (2, 1));
        assert_eq!(caps.session_counts("bob"), (2, 1));
    }
}
