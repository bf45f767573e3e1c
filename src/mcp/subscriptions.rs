//! Who wants to hear about which job, and the task that tells them.
//!
//! Three kinds of listeners: legacy sessions that called `resources/subscribe` (told on their
//! GET stream), 2026-07-28 `subscriptions/listen` streams watching job resources (both get
//! `notifications/resources/updated`), and listen streams watching task ids (they get
//! `notifications/tasks`, carrying the task as `tasks/get` would). One notifier task reads job
//! events and looks subscribers up by job id, so an event costs work proportional to the job's
//! own subscribers, not to every open stream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    Peer, RoleServer,
    model::{
        NotificationMetaObject, RequestId, ResourceUpdatedNotificationParam, ServerNotification,
        TaskStatusNotification, TaskStatusNotificationParams,
    },
    service::SubscriptionSink,
};
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
    /// A listen stream watching the job as a task; `subscription` is the listen request's id.
    Task { peer: Peer<RoleServer>, subscription: RequestId },
}

/// A notification ready to go out.
enum Outgoing {
    Session(Peer<RoleServer>, String),
    Listen(SubscriptionSink, String),
    Task(Peer<RoleServer>, ServerNotification),
}

#[derive(Debug, Clone)]
struct Subscriber {
    /// The session id, or a unique key per listen stream; makes subscribing idempotent.
    key: Arc<str>,
    target: Target,
}

#[derive(Debug)]
pub(crate) struct Subscriptions {
    by_job: Mutex<HashMap<JobId, Vec<Subscriber>>>,
    /// What task notifications need to describe a job.
    links: Links,
    task_ttl: Duration,
}

impl Subscriptions {
    pub(crate) fn new(links: Links, task_ttl: Duration) -> Subscriptions {
        Subscriptions { by_job: Mutex::new(HashMap::new()), links, task_ttl }
    }

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

    pub(crate) fn add_session(&self, id: JobId, session: &str, peer: Peer<RoleServer>) {
        self.add(id, Subscriber { key: session.into(), target: Target::Session(peer) });
    }

    pub(crate) fn add_listen(&self, id: JobId, key: &Arc<str>, sink: SubscriptionSink) {
        self.add(id, Subscriber { key: key.clone(), target: Target::Listen(sink) });
    }

    pub(crate) fn add_task(
        &self,
        id: JobId,
        key: &Arc<str>,
        peer: Peer<RoleServer>,
        subscription: RequestId,
    ) {
        let key: Arc<str> = format!("{key}:task").into();
        self.add(id, Subscriber { key, target: Target::Task { peer, subscription } });
    }

    /// Removes one subscriber (by session or listen key) from one job.
    pub(crate) fn remove(&self, id: &JobId, key: &str) {
        let mut map = self.lock();
        if let Some(subscribers) = map.get_mut(id) {
            subscribers.retain(|subscriber| &*subscriber.key != key);
            if subscribers.is_empty() {
                map.remove(id);
            }
        }
    }

    /// Tells every subscriber of `job` that its resource changed.
    pub(crate) fn notify(&self, job: &Job) {
        let targets: Vec<Target> = {
            let mut map = self.lock();
            let Some(subscribers) = map.get_mut(&job.id) else { return };
            subscribers.retain(|subscriber| match &subscriber.target {
                Target::Session(peer) | Target::Task { peer, .. } => !peer.is_transport_closed(),
                Target::Listen(_) => true,
            });
            let targets = subscribers.iter().map(|s| s.target.clone()).collect();
            if job.status.is_terminal() {
                subscribers.retain(|subscriber| !matches!(subscriber.target, Target::Session(_)));
            }
            if subscribers.is_empty() {
                map.remove(&job.id);
            }
            targets
        };
        for target in targets {
            self.send(target, job);
        }
    }

    /// Tells a legacy session about an ended job now (it subscribed too late for the event).
    pub(crate) fn notify_one_session(&self, peer: Peer<RoleServer>, job: &Job) {
        self.send(Target::Session(peer), job);
    }

    /// Tells a listen stream about an ended job now.
    pub(crate) fn notify_one_listen(&self, sink: SubscriptionSink, job: &Job) {
        self.send(Target::Listen(sink), job);
    }

    /// Tells a listen stream watching tasks about an ended job now.
    pub(crate) fn notify_one_task(
        &self,
        peer: Peer<RoleServer>,
        subscription: RequestId,
        job: &Job,
    ) {
        self.send(Target::Task { peer, subscription }, job);
    }

    /// Sends one notification to one target, without blocking the caller.
    fn send(&self, target: Target, job: &Job) {
        let uri = Links::resource_uri(&job.id);
        let outgoing = match target {
            Target::Session(peer) => Outgoing::Session(peer, uri),
            Target::Listen(sink) => Outgoing::Listen(sink, uri),
            Target::Task { peer, subscription } => {
                let view = crate::tools::JobView::of(job, &self.links);
                let task = super::tasks::detailed(job, &view, self.task_ttl);
                // rmcp's subscription sink refuses task notifications (3.11), so the
                // subscription id it would add is stamped here, as the spec requires.
                let mut meta = NotificationMetaObject::new();
                meta.set_subscription_id(subscription);
                let params = TaskStatusNotificationParams::new(task).with_meta(meta);
                let notification = TaskStatusNotification::new(params);
                Outgoing::Task(peer, ServerNotification::TaskStatusNotification(notification))
            }
        };
        tokio::spawn(async move {
            let sent = match outgoing {
                Outgoing::Session(peer, uri) => peer
                    .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                    .await
                    .map_err(|error| error.to_string()),
                Outgoing::Listen(sink, uri) => {
                    sink.notify_resource_updated(uri).await.map_err(|error| error.to_string())
                }
                Outgoing::Task(peer, notification) => {
                    peer.send_notification(notification).await.map_err(|error| error.to_string())
                }
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "could not deliver a job notification");
            }
        });
    }

    /// Runs the fan-out until shutdown: every job event reaches that job's subscribers.
    pub(crate) fn spawn_notifier(
        self: &Arc<Self>,
        runner: &JobRunner,
        shutdown: CancellationToken,
    ) {
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
                    // A job cannot change for its subscribers before it exists; its progress
                    // and its end are news. (Creation events can reach us after a fast
                    // subscriber registered.)
                    Ok(event) if event.change != JobChange::Created => {
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
