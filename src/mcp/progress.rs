//! Progress notifications for one open request, behind the tools' [`ProgressSink`].

use async_trait::async_trait;
use rmcp::{
    Peer, RoleServer,
    model::{ProgressNotificationParam, ProgressToken},
};

use crate::tools::ProgressSink;

/// Sends `notifications/progress` for the request that carried `token`. rmcp routes them to
/// that request's own response stream (2026-07-28) or the session (legacy).
#[derive(Debug)]
pub(super) struct PeerProgress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

impl PeerProgress {
    pub(super) fn new(peer: Peer<RoleServer>, token: ProgressToken) -> PeerProgress {
        PeerProgress { peer, token }
    }
}

#[async_trait]
impl ProgressSink for PeerProgress {
    async fn progress(&self, progress: f64, total: Option<f64>, message: String) {
        let mut param =
            ProgressNotificationParam::new(self.token.clone(), progress).with_message(message);
        param.total = total;
        if let Err(error) = self.peer.notify_progress(param).await {
            tracing::debug!(%error, "could not send progress");
        }
    }
}
