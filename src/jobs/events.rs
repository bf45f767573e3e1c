//! Job events: every committed state change, stored durably with a monotonically increasing id
//! and fanned out in process, in id order.
//!
//! The store writes an event in the same transaction as the change it describes; what the
//! event says (its payload, which webhooks receive it) is decided by an [`EventComposer`], so
//! this module knows nothing about SSE, webhooks or realtime APIs. The in-process channel is
//! bounded: a listener that falls behind is told how many events it missed and re-reads the
//! store (by event id) for what it needs.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Job, JobId, JobStatus, Micros, endings::Endings, recent::Recent};

/// Room for bursts: a slow listener only loses events after this many unread ones.
const CAPACITY: usize = 16 * 1024;

/// An event id as a client sends it back (`Last-Event-ID`, `?after=`): decimal digits only,
/// around optional whitespace, within `i64`. Anything else is not an id we handed out.
pub fn parse_event_id(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Which change an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    /// The job was accepted and is `working`. Nobody can be subscribed to it yet, but host-app
    /// streams want to see it.
    Created,
    /// A working job reported progress (e.g. a partial image); it is still `working`.
    Progress,
    /// The job reached its terminal status.
    Ended,
}

impl JobChange {
    /// The change an event type reports (see [`JobChange::kind`]).
    pub fn of_kind(kind: &str) -> Option<JobChange> {
        match kind {
            "job.created" => Some(JobChange::Created),
            "job.progress" => Some(JobChange::Progress),
            "job.completed" | "job.failed" | "job.cancelled" => Some(JobChange::Ended),
            _ => None,
        }
    }

    /// The event type for a job after this change: `job.created`, `job.progress`,
    /// `job.completed`, `job.failed` or `job.cancelled`.
    pub fn kind(self, job: &Job) -> &'static str {
        match (self, job.status) {
            (JobChange::Created, _) | (JobChange::Ended, JobStatus::Working) => "job.created",
            (JobChange::Progress, _) => "job.progress",
            (JobChange::Ended, JobStatus::Completed) => "job.completed",
            (JobChange::Ended, JobStatus::Failed) => "job.failed",
            (JobChange::Ended, JobStatus::Cancelled) => "job.cancelled",
        }
    }
}

/// An event about to be written: what to say, and which webhook endpoints must receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub payload: Value,
    /// Endpoint URLs; the store queues one delivery per endpoint in the same transaction.
    pub webhooks: Vec<String>,
}

/// An event as stored: its id orders it among all events, forever.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub job_id: JobId,
    pub owner: String,
    pub conversation: Option<String>,
    pub kind: String,
    pub payload: Value,
    pub created_at: Micros,
}

/// Decides the content of the event for each change.
pub trait EventComposer: Send + Sync + fmt::Debug + 'static {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent;
}

/// The minimal composer: the job's id and status, no webhooks. For tests and embedding.
#[derive(Debug, Default, Clone, Copy)]
pub struct BareEvents;

impl EventComposer for BareEvents {
    fn compose(&self, change: JobChange, job: &Job) -> NewEvent {
        NewEvent {
            kind: change.kind(job).to_owned(),
            payload: json!({ "job_id": job.id, "status": job.status }),
            webhooks: Vec::new(),
        }
    }
}

/// One committed change, as listeners receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub change: JobChange,
    /// The job exactly as the change left it.
    pub job: Job,
    pub event: StoredEvent,
}

/// How long a publication waits for an earlier event id before giving up on it (its committer
/// died between commit and publish, or another process wrote it). Listeners that see the gap
/// re-read the store, which has every committed event.
const GAP_PATIENCE: Duration = Duration::from_millis(50);

/// The in-process fan-out of committed changes, in event id order.
///
/// Each committer publishes its own event after its transaction commits, so two committers can
/// publish in the opposite order of their ids (group commit answers a whole batch at once).
/// Listeners that resume by id need order; here early arrivals wait, briefly, for the ids
/// before them, so listeners almost never have to go back to the store.
#[derive(Debug, Clone)]
pub struct JobEvents {
    sender: broadcast::Sender<Arc<JobEvent>>,
    order: Arc<Mutex<Reorder>>,
    /// Told of every ending as it is published, before any listener hears of it.
    endings: Arc<Endings>,
    /// Every published job, when the store is one only this process writes.
    recent: Option<Arc<Recent>>,
}

#[derive(Debug, Default)]
struct Reorder {
    /// The id expected next; `None` until the first publication or [`JobEvents::expect_after`].
    next: Option<i64>,
    /// Events that arrived before an earlier id.
    waiting: BTreeMap<i64, Arc<JobEvent>>,
    /// Whether a timer will flush `waiting` if the gap is never filled.
    timer: bool,
    /// Ids below `next` never delivered: gaps given up on. One of them arriving late is
    /// delivered; any other id below `next` was delivered already (a shared store's follower
    /// and the local committer both publish each event) and is dropped.
    skipped: BTreeMap<i64, i64>,
}

/// Gaps remembered at most: a straggler older than that many gaps is very unlikely, and then
/// only listeners that re-read the store (every stream does) see it.
const MAX_SKIPPED: usize = 1024;

impl Reorder {
    /// Remembers `start..end` as never delivered.
    fn skip(&mut self, start: i64, end: i64) {
        if start < end {
            self.skipped.insert(start, end);
            if self.skipped.len() > MAX_SKIPPED {
                self.skipped.pop_first();
            }
        }
    }

    /// Whether `id` lies in a gap given up on; it no longer does afterwards.
    fn take_skipped(&mut self, id: i64) -> bool {
        let Some((&start, &end)) = self.skipped.range(..=id).next_back() else { return false };
        if id >= end {
            return false;
        }
        self.skipped.remove(&start);
        self.skip(start, id);
        self.skip(id + 1, end);
        true
    }
}

impl Default for JobEvents {
    fn default() -> Self {
        JobEvents {
            sender: broadcast::channel(CAPACITY).0,
            order: Arc::default(),
            endings: Arc::default(),
            recent: None,
        }
    }
}

impl JobEvents {
    /// Fan-out that also remembers each published job ([`Recent`]): for a store only this
    /// process writes, where every change of a job passes through here.
    pub(super) fn remembering_jobs() -> JobEvents {
        JobEvents { recent: Some(Arc::default()), ..JobEvents::default() }
    }

    /// The jobs as their latest published change left them, when remembered at all.
    pub(super) fn recent(&self) -> Option<&Recent> {
        self.recent.as_deref()
    }

    /// Publishes a committed change. Having no listener is normal and not an error.
    pub fn publish(&self, change: JobChange, job: Job, event: StoredEvent) {
        if change == JobChange::Ended
            && let Some(conversation) = &job.context.conversation
        {
            self.endings.ended(&job.owner, conversation);
        }
        let event = Arc::new(JobEvent { change, job, event });
        // Before any listener hears of it, so whoever learns of a change reads it.
        if let Some(recent) = &self.recent {
            recent.published(&event);
        }
        let mut order = self.order.lock().expect("event order lock poisoned");
        let id = event.event.id;
        let next = match order.next {
            Some(next) => next,
            None => {
                // Nobody said where ids start: anything older is a straggler, not a repeat.
                order.skip(i64::MIN, id);
                *order.next.insert(id)
            }
        };
        if id < next {
            if order.take_skipped(id) {
                // Later than its patience allowed: out of order, but never withheld.
                let _ = self.sender.send(event);
            }
            return;
        }
        order.waiting.entry(id).or_insert(event);
        self.release(&mut order);
        self.arm_timer(&mut order);
    }

    /// Events are committed with ids after `id`: the next one published is `id + 1`.
    pub fn expect_after(&self, id: i64) {
        let mut order = self.order.lock().expect("event order lock poisoned");
        if order.next.is_none() {
            order.next = Some(id + 1);
        }
    }

    /// What the published endings say about each conversation.
    pub fn endings(&self) -> &Endings {
        &self.endings
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobEvent>> {
        self.sender.subscribe()
    }

    /// Sends every waiting event whose turn has come.
    fn release(&self, order: &mut Reorder) {
        while let Some(entry) = order.waiting.first_entry() {
            if Some(*entry.key()) != order.next {
                break;
            }
            let event = entry.remove();
            order.next = Some(event.event.id + 1);
            let _ = self.sender.send(event);
        }
    }

    /// The gap did not fill in time: send what waits, in order, and move past the gap.
    fn give_up_waiting(&self) {
        let mut order = self.order.lock().expect("event order lock poisoned");
        order.timer = false;
        if let Some((&first, _)) = order.waiting.first_key_value() {
            if let Some(next) = order.next {
                order.skip(next, first);
            }
            order.next = Some(first);
            self.release(&mut order);
        }
        self.arm_timer(&mut order);
    }

    /// Makes sure events still waiting are sent after [`GAP_PATIENCE`] at the latest.
    fn arm_timer(&self, order: &mut Reorder) {
        if order.waiting.is_empty() || order.timer {
            return;
        }
        order.timer = true;
        let events = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GAP_PATIENCE).await;
            events.give_up_waiting();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64) -> (JobChange, Job, StoredEvent) {
        let job = Job::working("t", id);
        let event = StoredEvent {
            id,
            job_id: job.id.clone(),
            owner: job.owner.clone(),
            conversation: None,
            kind: "job.created".to_owned(),
            payload: json!({}),
            created_at: Micros(id),
        };
        (JobChange::Created, job, event)
    }

    fn publish(events: &JobEvents, id: i64) {
        let (change, job, event) = change(id);
        events.publish(change, job, event);
    }

    fn drain(receiver: &mut broadcast::Receiver<Arc<JobEvent>>) -> Vec<i64> {
        std::iter::from_fn(|| receiver.try_recv().ok()).map(|event| event.event.id).collect()
    }

    #[tokio::test]
    async fn events_published_out_of_order_are_delivered_in_id_order() {
        let events = JobEvents::default();
        events.expect_after(10);
        let mut receiver = events.subscribe();
        publish(&events, 13);
        publish(&events, 12);
        assert_eq!(drain(&mut receiver), Vec::<i64>::new(), "13 and 12 wait for 11");
        publish(&events, 11);
        assert_eq!(drain(&mut receiver), vec![11, 12, 13]);
        publish(&events, 14);
        assert_eq!(drain(&mut receiver), vec![14]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_never_fills_holds_events_back_only_briefly() {
        let events = JobEvents::default();
        events.expect_after(0);
        let mut receiver = events.subscribe();
        publish(&events, 1);
        publish(&events, 3); // 2 is never published (its committer died).
        publish(&events, 5); // nor is 4.
        assert_eq!(drain(&mut receiver), vec![1]);
        tokio::time::sleep(GAP_PATIENCE + Duration::from_millis(1)).await;
        assert_eq!(drain(&mut receiver), vec![3], "past the first gap; the second waits again");
        tokio::time::sleep(GAP_PATIENCE + Duration::from_millis(1)).await;
        assert_eq!(drain(&mut receiver), vec![5]);
        // A straggler is still delivered, never withheld; listeners know to skip or re-read.
        publish(&events, 2);
        publish(&events, 6);
        assert_eq!(drain(&mut receiver), vec![2, 6]);
        // Once only: a second copy of a straggler is a repeat.
        publish(&events, 2);
        publish(&events, 4);
        publish(&events, 4);
        assert_eq!(drain(&mut receiver), vec![4]);
    }

    #[tokio::test]
    async fn an_event_published_twice_is_delivered_once() {
        // A shared store's follower reads back what this process wrote, and may even get there
        // first: whichever copy comes second is dropped, in and out of order.
        let events = JobEvents::default();
        events.expect_after(0);
        let mut receiver = events.subscribe();
        publish(&events, 1);
        publish(&events, 1);
        publish(&events, 3);
        publish(&events, 3);
        publish(&events, 2);
        publish(&events, 2);
        publish(&events, 3);
        assert_eq!(drain(&mut receiver), vec![1, 2, 3]);
    }

    #[test]
    fn event_ids_are_plain_decimal_numbers() {
        assert_eq!(parse_event_id(" 42 "), Some(42));
        assert_eq!(parse_event_id("0"), Some(0));
        for bad in ["", " ", "-1", "+5", "4 2", "0x10", "9223372036854775808", "42abc"] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }
}
