//! The jobs whose latest change this process published, as committed: what `JobRunner::get`
//! answers from memory when the store is one only this process writes (SQLite), so that a
//! status read costs no database round trip. A shared store (PostgreSQL) never uses it: there
//! another instance may change a job, and a read must see that change at once.
//!
//! Why it is exact on a store only this process writes: every change a view shows (status,
//! progress, output, error, times) is committed with an event, and published after its commit
//! with its event id, which follows commit order; an entry is only replaced by a newer id. The
//! one change without an event, an attempt starting, is applied as the runner records it
//! (attempts only grow, `started_at` is set once); the lease is never read from here. Purged jobs are forgotten as they are purged. A job that
//! is not here is read from the store, so forgetting (the table is bounded) is always safe.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use super::{Job, JobId, events::JobEvent};

/// Jobs remembered at most; the oldest remembered goes first.
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Recent(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    /// Each job with the id of the latest event it is as of.
    jobs: HashMap<JobId, (i64, Job)>,
    /// Ids in the order they were first remembered, for eviction. May name jobs already
    /// forgotten; those are skipped.
    order: VecDeque<JobId>,
}

impl Recent {
    /// Remembers the job as `event` left it, unless a later event about it is remembered.
    pub(super) fn published(&self, event: &Arc<JobEvent>) {
        let mut table = self.0.lock().expect("recent jobs lock poisoned");
        let id = &event.job.id;
        match table.jobs.get_mut(id) {
            Some((known, _)) if *known >= event.event.id => {}
            Some(known) => *known = (event.event.id, event.job.clone()),
            None => {
                while table.jobs.len() >= CAPACITY {
                    let Some(oldest) = table.order.pop_front() else { break };
                    table.jobs.remove(&oldest);
                }
                table.jobs.insert(id.clone(), (event.event.id, event.job.clone()));
                table.order.push_back(id.clone());
            }
        }
    }

    /// An attempt of `job` started, as the store returned it: the one change with no event.
    pub(super) fn attempted(&self, job: &Job) {
        let mut table = self.0.lock().expect("recent jobs lock poisoned");
        if let Some((_, known)) = table.jobs.get_mut(&job.id) {
            known.attempts = known.attempts.max(job.attempts);
            known.started_at = known.started_at.or(job.started_at);
        }
    }

    /// The job as its latest published change left it, if remembered.
    pub(super) fn get(&self, id: &JobId) -> Option<Job> {
        let table = self.0.lock().expect("recent jobs lock poisoned");
        table.jobs.get(id).map(|(_, job)| job.clone())
    }

    /// Forgets jobs that no longer exist (purged).
    pub(super) fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a JobId>) {
        let mut table = self.0.lock().expect("recent jobs lock poisoned");
        for id in ids {
            table.jobs.remove(id);
        }
        if table.order.len() > 2 * CAPACITY {
            let Table { jobs, order } = &mut *table;
            order.retain(|id| jobs.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{
        JobStatus,
        events::{JobChange, StoredEvent},
    };

    fn event(job: &Job, id: i64) -> Arc<JobEvent> {
        let event = StoredEvent {
            id,
            job_id: job.id.clone(),
            owner: job.owner.clone(),
            conversation: None,
            kind: "job.test".to_owned(),
            payload: serde_json::json!({}),
            created_at: job.updated_at,
        };
        Arc::new(JobEvent { change: JobChange::Progress, job: job.clone(), event })
    }

    #[test]
    fn a_later_event_wins_whatever_order_they_are_published_in() {
        let recent = Recent::default();
        let working = Job::working("t", 1);
        let ended = Job { status: JobStatus::Completed, ..working.clone() };
        recent.published(&event(&ended, 7));
        recent.published(&event(&working, 6));
        assert_eq!(recent.get(&working.id).unwrap().status, JobStatus::Completed);
        recent.attempted(&Job { attempts: 1, ..working.clone() });
        assert_eq!(recent.get(&working.id).unwrap().attempts, 1);
        recent.forget([&working.id]);
        assert_eq!(recent.get(&working.id), None, "purged jobs are read from the store");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let recent = Recent::default();
        let jobs: Vec<Job> = (0..CAPACITY as i64 + 1).map(|n| Job::working("t", n)).collect();
        for (n, job) in jobs.iter().enumerate() {
            recent.published(&event(job, n as i64));
        }
        assert_eq!(recent.get(&jobs[0].id), None);
        assert!(recent.get(&jobs[1].id).is_some());
        assert!(recent.get(&jobs[CAPACITY].id).is_some());
    }
}
