//! Who hears that the tool list changed: every legacy session (on its GET stream) and every
//! 2026 `subscriptions/listen` stream that asked for `toolsListChanged`. One task watches the
//! registry and fans each change out; a slow or gone client never delays the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{Peer, RoleServer, service::SubscriptionSink};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub(crate) struct ToolListeners {
    /// Legacy sessions, by session key; closed ones are dropped at the next change.
    sessions: Mutex<HashMap<String, Peer<RoleServer>>>,
    /// Open listen streams that accepted `toolsListChanged`, by listen key.
    streams: Mutex<HashMap<Arc<str>, SubscriptionSink>>,
}

impl ToolListeners {
    pub(crate) fn add_session(&self, key: String, peer: Peer<RoleServer>) {
        self.sessions.lock().expect("sessions lock poisoned").insert(key, peer);
    }

    pub(crate) fn add_stream(&self, key: Arc<str>, sink: SubscriptionSink) {
        self.streams.lock().expect("streams lock poisoned").insert(key, sink);
    }

    pub(crate) fn remove_stream(&self, key: &str) {
        self.streams.lock().expect("streams lock poisoned").remove(key);
    }

    /// Sends `notifications/tools/list_changed` to everyone listening after each change.
    pub(crate) fn spawn(
        self: Arc<Self>,
        mut changes: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                self.notify_all();
            }
        });
    }

    fn notify_all(&self) {
        let sessions: Vec<Peer<RoleServer>> = {
            let mut sessions = self.sessions.lock().expect("sessions lock poisoned");
            sessions.retain(|_, peer| !peer.is_transport_closed());
            sessions.values().cloned().collect()
        };
        let streams: Vec<SubscriptionSink> =
            self.streams.lock().expect("streams lock poisoned").values().cloned().collect();
        tracing::info!(sessions = sessions.len(), streams = streams.len(), "tool list changed");
        for peer in sessions {
            tokio::spawn(async move {
                if let Err(error) = peer.notify_tool_list_changed().await {
                    tracing::debug!(%error, "could not tell a session the tool list changed");
                }
            });
        }
        for sink in streams {
            tokio::spawn(async move {
                if let Err(error) = sink.notify_tool_list_changed().await {
                    tracing::debug!(%error, "could not tell a stream the tool list changed");
                }
            });
        }
    }
}
