//! Job events: every state change the runner commits, fanned out in process.
//!
//! An event carries the job exactly as the store returned it after the change, so listeners
//! never need a second read. The channel is bounded; a listener that falls behind is told how
//! many events it missed and must re-read the store for the jobs it cares about.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::Job;

/// Room for bursts: a slow listener only loses events after this many unread ones.
const CAPACITY: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct JobEvents {
    sender: broadcast::Sender<Arc<Job>>,
}

impl Default for JobEvents {
    fn default() -> Self {
        JobEvents { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl JobEvents {
    /// Publishes a committed change. Having no listener is normal and not an error.
    pub fn publish(&self, job: Job) {
        let _ = self.sender.send(Arc::new(job));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.sender.subscribe()
    }
}
