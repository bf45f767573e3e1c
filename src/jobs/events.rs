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

/// Which change an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    /// The job was accepted and is `working`. Nobody can be subscribed to it yet, but host-app
    /// streams want to see it.
    Created,
    /// The job reached its terminal status.
    Ended,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub change: JobChange,
    pub job: Job,
}

#[derive(Debug, Clone)]
pub struct JobEvents {
    sender: broadcast::Sender<Arc<JobEvent>>,
}

impl Default for JobEvents {
    fn default() -> Self {
        JobEvents { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl JobEvents {
    /// Publishes a committed change. Having no listener is normal and not an error.
    pub fn publish(&self, change: JobChange, job: Job) {
        let _ = self.sender.send(Arc::new(JobEvent { change, job }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobEvent>> {
        self.sender.subscribe()
    }
}
