//! `GET /v1/events`: the host app's Server-Sent Events stream of job changes, filtered by
//! conversation and/or job, for the caller's token only.
//!
//! Every event carries its durable id (`id:`); a client that reconnects with `Last-Event-ID`
//! (or `?after=`) first gets exactly the events it missed, read from the store, then the live
//! ones — nothing lost, nothing repeated, across reconnects and server restarts. Without either,
//! the stream starts live. Comment lines keep idle streams open through proxies.
//!
//! One task renders each live event to its SSE text once ([`Streams`]) and fills any gap in
//! the live ids from the store; every open stream only filters and forwards, so a thousand
//! subscribers cost a thousand writes, not a thousand JSON serialisations or store reads.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Extension,
    extract::{Query, State, rejection::QueryRejection},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::{
    jobs::{
        JobId,
        events::{JobEvents, StoredEvent, parse_event_id},
        store::{EventFilter, JobStore},
    },
    push::event_json,
    tools::{Caller, Services},
};

/// Events read from the store per query while catching up.
const PAGE: usize = 500;
/// Events buffered per stream before the sender waits for the client.
const BUFFER: usize = 256;
/// Rendered live events kept for streams that are momentarily behind.
const LIVE_CAPACITY: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    conversation: Option<String>,
    job: Option<String>,
    after: Option<i64>,
}

/// One event, rendered once for every stream.
#[derive(Debug)]
pub(super) struct Rendered {
    id: i64,
    owner: String,
    conversation: Option<String>,
    job_id: JobId,
    kind: String,
    data: String,
}

impl Rendered {
    fn of(event: &StoredEvent) -> Rendered {
        Rendered {
            id: event.id,
            owner: event.owner.clone(),
            conversation: event.conversation.clone(),
            job_id: event.job_id.clone(),
            kind: event.kind.clone(),
            data: event_json(event).to_string(),
        }
    }
}

/// What open streams hear from the renderer.
#[derive(Debug, Clone)]
enum Live {
    Event(Arc<Rendered>),
    /// The renderer could not account for every event: read the store.
    Missed,
}

/// The shared renderer of live events, and the shutdown that ends every stream.
#[derive(Debug, Clone)]
pub(super) struct Streams {
    live: broadcast::Sender<Live>,
    shutdown: CancellationToken,
}

impl Streams {
    /// Starts the renderer; it stops with `shutdown`.
    pub(super) fn spawn(
        events: &JobEvents,
        store: Arc<dyn JobStore>,
        shutdown: CancellationToken,
    ) -> Streams {
        let live = broadcast::channel(LIVE_CAPACITY).0;
        let renderer = Renderer { store, sender: live.clone(), last: None };
        tokio::spawn(renderer.run(events.subscribe(), shutdown.clone()));
        Streams { live, shutdown }
    }
}

/// Turns job events into one gapless, ordered sequence of rendered events.
///
/// Job events arrive in id order almost always (`JobEvents` reorders briefly); when an id skips
/// ahead anyway, the renderer reads the missing ones from the store — once, for every stream —
/// and a straggler that comes later is dropped as already sent.
struct Renderer {
    store: Arc<dyn JobStore>,
    sender: broadcast::Sender<Live>,
    /// The last id sent.
    last: Option<i64>,
}

impl Renderer {
    async fn run(
        mut self,
        mut source: broadcast::Receiver<Arc<crate::jobs::events::JobEvent>>,
        stop: CancellationToken,
    ) {
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = source.recv() => received,
            };
            match received {
                Ok(event) => self.forward(&event.event).await,
                Err(RecvError::Lagged(_)) => {
                    // Whatever was skipped is in the store; streams re-read it themselves.
                    self.last = None;
                    let _ = self.sender.send(Live::Missed);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn forward(&mut self, event: &StoredEvent) {
        match self.last {
            Some(last) if event.id <= last => return,
            Some(last) if event.id > last + 1 && !self.fill(last, event.id).await => {
                let _ = self.sender.send(Live::Missed);
            }
            _ => {}
        }
        self.last = Some(event.id);
        // Rendering only matters to someone listening.
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Live::Event(Arc::new(Rendered::of(event))));
        }
    }

    /// Sends the stored events strictly between `after` and `before`; false if it could not.
    async fn fill(&self, after: i64, before: i64) -> bool {
        let mut cursor = after;
        loop {
            match self.store.events_between(cursor, before, PAGE).await {
                Ok(page) => {
                    for event in &page {
                        cursor = event.id;
                        let _ = self.sender.send(Live::Event(Arc::new(Rendered::of(event))));
                    }
                    if page.len() < PAGE {
                        return true;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "event renderer could not read the store");
                    return false;
                }
            }
        }
    }
}

pub(super) async fn events(
    State(services): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(streams): Extension<Streams>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let job = match query.job.as_deref() {
        Some(id) => Some(
            JobId::parse(id)
                .ok_or_else(|| ApiError::BadQuery(format!("job `{id}` is not a job id")))?,
        ),
        None => None,
    };
    let filter = EventFilter { conversation: query.conversation.or(caller.conversation), job };
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().ok().and_then(parse_event_id).ok_or_else(|| {
            ApiError::BadHeader("Last-Event-ID must be an event id (a number)".to_owned())
        })?),
        None => query.after,
    };
    let store = services.runner.store().clone();
    // Subscribe before reading the store, so nothing committed in between is missed.
    let live = streams.live.subscribe();
    let cursor = match resume {
        Some(after) => after,
        None => store.last_event_id().await.map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let (sender, receiver) = mpsc::channel(BUFFER);
    let feed = Feed { store, owner: caller.owner, filter, cursor, horizon: cursor, sender };
    tokio::spawn(feed.run(live, resume.is_some(), streams.shutdown));
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(*services.push.keep_alive)))
}

/// One client's stream: catch up from the store, then follow live events.
struct Feed {
    store: Arc<dyn JobStore>,
    owner: String,
    filter: EventFilter,
    /// The id of the last event sent; only later ones go out.
    cursor: i64,
    /// Every event (of any owner) up to this id has been handled. The renderer sends ids in
    /// order without gaps; should one appear anyway (the store could not be read), this stream
    /// goes back to the store, which has everything below a committed id.
    horizon: i64,
    sender: mpsc::Sender<Event>,
}

impl Feed {
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Live>,
        resuming: bool,
        shutdown: CancellationToken,
    ) {
        // A live-only stream starts at the newest id; everything after it comes live.
        if resuming && self.catch_up().await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.sender.closed() => return,
                received = live.recv() => received,
            };
            let sent = match received {
                Ok(Live::Event(event)) => self.follow(&event).await,
                // Fell behind the live channel: the store has everything, in order.
                Ok(Live::Missed) | Err(RecvError::Lagged(_)) => self.catch_up().await,
                Err(RecvError::Closed) => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// Handles one live event. Its id is committed, and so is every id below it: SQLite
    /// assigns ids inside serialised write transactions.
    async fn follow(&mut self, event: &Rendered) -> Result<(), ()> {
        if event.id <= self.horizon {
            return Ok(());
        }
        if event.id == self.horizon + 1 {
            self.horizon = event.id;
            return self.send(event).await;
        }
        let result = self.catch_up().await;
        self.horizon = self.horizon.max(event.id);
        result
    }

    /// Sends every stored event after the cursor. `Err` once the client is gone.
    async fn catch_up(&mut self) -> Result<(), ()> {
        loop {
            let page =
                match self.store.events_after(&self.owner, self.cursor, &self.filter, PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(%error, "event stream could not read the store");
                        return Err(());
                    }
                };
            for event in &page {
                self.send(&Rendered::of(event)).await?;
            }
            if page.len() < PAGE {
                self.horizon = self.horizon.max(self.cursor);
                return Ok(());
            }
        }
    }

    async fn send(&mut self, event: &Rendered) -> Result<(), ()> {
        let wanted = event.id > self.cursor
            && event.owner == self.owner
            && self
                .filter
                .conversation
                .as_ref()
                .is_none_or(|c| event.conversation.as_ref() == Some(c))
            && self.filter.job.as_ref().is_none_or(|job| *job == event.job_id);
        if !wanted {
            return Ok(());
        }
        let message = Event::default()
            .id(event.id.to_string())
            .event(event.kind.as_str())
            .data(event.data.as_str());
        self.cursor = event.id;
        self.sender.send(message).await.map_err(|_| ())
    }
}
