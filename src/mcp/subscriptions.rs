//! Who wants to hear about which job, and the task that tells them.
//!
//! Two kinds of listeners receive `notifications/resources/updated`: legacy sessions that called
//! `resources/subscribe` (delivered on their GET stream) and 2026-07-28 `subscriptions/listen`
//! streams. One notifier task reads job events and looks subscribers up by job id, so an event
//! costs work proportional to the job's own subscribers, not to every open stream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{Peer, RoleServer, model::ResourceUpdatedNotificationParam, service::SubscriptionSink};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    jobs::{Job, JobId, events::JobChange, runner::JobRunner},
    tools::Links,
};

/// Where one subscriber receives notifications.
#[derive(Debug, Clone)]
enum Target {
    /// A legacy session: removed once its job ends, since an ended job never changes again.
    Session(Peer<RoleServer>),
    /// A listen stream: removed when the stream ends.
    Listen(SubscriptionSink),
}

#[derive(Debug, Clone)]
struct Subscriber {
    /// The session id, or a unique key per listen stream; makes subscribing idempotent.
    key: Arc<str>,
    target: Target,
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    by_job: Mutex<HashMap<JobId, Vec<Subscriber>>>,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Vec<Subscriber>>> {
        self.by_job.lock().expect("subscription map lock poisoned")
    }

    fn add(&self, id: JobId, subscriber: Subscriber) {
        let mut map = self.lock();
        let subscribers = map.entry(id).or_default();
        if !subscribers.iter().any(|existing| existing.key == subscriber.key) {
            subscribers.push(subscriber);
        }
    }

    pub fn add_session(&self, id: JobId, session: &str, peer: Peer<RoleServer>) {
        self.add(id, Subscriber { key: session.into(), target: Target::Session(peer) });
    }

    pub fn add_listen(&self, id: JobId, key: &Arc<str>, sink: SubscriptionSink) {
        self.add(id, Subscriber { key: key.clone(), target: Target::Listen(sink) });
    }

    /// Removes one subscriber (by session or listen key) from one job.
    pub fn remove(&self, id: &JobId, key: &str) {
        let mut map = self.lock();
        if let Some(subscribers) = map.get_mut(id) {
            subscribers.retain(|subscriber| &*subscriber.key != key);
            if subscribers.is_empty() {
                map.remove(id);
            }
        }
    }

    /// Tells every subscriber of `job` that its resource changed.
    pub fn notify(&self, job: &Job) {
        let targets: Vec<Target> = {
            let mut map = self.lock();
            let Some(subscribers) = map.get_mut(&job.id) else { return };
            subscribers.retain(|subscriber| match &subscriber.target {
                Target::Session(peer) => !peer.is_transport_closed(),
                Target::Listen(_) => true,
            });
            let targets = subscribers.iter().map(|s| s.target.clone()).collect();
            if job.status.is_terminal() {
                subscribers.retain(|subscriber| matches!(subscriber.target, Target::Listen(_)));
            }
            if subscribers.is_empty() {
                map.remove(&job.id);
            }
            targets
        };
        let uri = Links::resource_uri(&job.id);
        for target in targets {
            send(target, uri.clone());
        }
    }

    /// Sends one notification to one target, now, without blocking the caller.
    pub fn notify_one_session(peer: Peer<RoleServer>, id: &JobId) {
        send(Target::Session(peer), Links::resource_uri(id));
    }

    /// Sends one notification on a listen stream, without blocking the caller.
    pub fn notify_one_listen(sink: SubscriptionSink, id: &JobId) {
        send(Target::Listen(sink), Links::resource_uri(id));
    }

    /// Runs the fan-out until shutdown: every job event reaches that job's subscribers.
    pub fn spawn_notifier(self: &Arc<Self>, runner: &JobRunner, shutdown: CancellationToken) {
        let subscriptions = self.clone();
        let runner = runner.clone();
        let mut events = runner.events().subscribe();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = events.recv() => event,
                };
                match event {
                    // A job cannot change for its subscribers before it exists; only its end
                    // is news. (Creation events can reach us after a fast subscriber registered.)
                    Ok(event) if event.change == JobChange::Ended => {
                        subscriptions.notify(&event.job)
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "notifier fell behind; re-reading watched jobs");
                        subscriptions.resync(&runner).await;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// After missed events: re-reads every watched job and notifies about those that ended.
    async fn resync(&self, runner: &JobRunner) {
        let ids: Vec<JobId> = self.lock().keys().cloned().collect();
        for id in ids {
            if let Ok(Some(job)) = runner.get(&id).await
                && job.status.is_terminal()
            {
                self.notify(&job);
            }
        }
    }
}

fn send(target: Target, uri: String) {
    tokio::spawn(async move {
        let sent = match target {
            Target::Session(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .map_err(|error| error.to_string()),
            Target::Listen(sink) => {
                sink.notify_resource_updated(uri).await.map_err(|error| error.to_string())
            }
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "could not deliver resources/updated");
        }
    });
}
