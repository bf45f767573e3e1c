//! `[jobs]`: the job runner's limits, per tool where a tool needs its own, and their checks.

use std::{collections::BTreeMap, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::HumanDuration;
use crate::settings::Invalid;

/// The job runner's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs of one tool running at once (default for every tool).
    pub concurrency: usize,
    /// Jobs of one tool waiting for a slot; beyond this callers are told to retry later.
    pub queue: usize,
    /// Longest a job may take, all attempts included.
    pub timeout: HumanDuration,
    /// Attempts per job, the first included; also bounds restarts of an interrupted job.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_max`, unless the provider says when.
    pub retry_base: HumanDuration,
    pub retry_max: HumanDuration,
    /// How long finished jobs and their images are kept.
    pub retention: HumanDuration,
    /// How long a job stays claimed by a process that stops renewing it (crash detection).
    pub lease: HumanDuration,
    /// After a crash, run interrupted jobs again (true) or mark them failed (false).
    pub resume_interrupted: bool,
    /// Per-tool overrides of `concurrency` and `queue`.
    pub tools: BTreeMap<String, LaneConfig>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            queue: 64,
            timeout: HumanDuration::from_secs(300),
            max_attempts: 3,
            retry_base: HumanDuration::from_secs(1),
            retry_max: HumanDuration::from_secs(30),
            retention: HumanDuration::from_secs(24 * 3600),
            lease: HumanDuration::from_secs(15),
            resume_interrupted: true,
            tools: BTreeMap::new(),
        }
    }
}

/// Limits of one tool's lane in the job runner.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// Jobs of this tool running at once; unset: what the tool declares, else
    /// `jobs.concurrency`.
    pub concurrency: Option<usize>,
    /// Jobs of this tool waiting for a slot; unset: `jobs.queue`.
    pub queue: Option<usize>,
}

impl JobsConfig {
    /// Limits that would stall or refuse every job.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let jobs = self;
        let invalid = |field, message: &str| Err(Invalid { field, message: message.to_owned() });
        if jobs.concurrency == 0 || jobs.tools.values().any(|lane| lane.concurrency == Some(0)) {
            return invalid("jobs.concurrency", "must be at least 1");
        }
        if jobs.max_attempts == 0 {
            return invalid("jobs.max_attempts", "must be at least 1");
        }
        if jobs.timeout.is_zero() {
            return invalid("jobs.timeout", "must be longer than 0s");
        }
        if jobs.lease < Duration::from_secs(1) {
            return invalid("jobs.lease", "must be at least 1s");
        }
        if jobs.retention.is_zero() {
            return invalid("jobs.retention", "must be longer than 0s");
        }
        Ok(())
    }

    /// Concurrency and queue of `tool`'s lane: the operator's per-tool setting, else what the
    /// tool declares, else the defaults.
    pub fn lane(&self, tool: &str, declared: Option<usize>) -> (usize, usize) {
        let lane = self.tools.get(tool);
        (
            lane.and_then(|l| l.concurrency).or(declared).unwrap_or(self.concurrency).max(1),
            lane.and_then(|l| l.queue).unwrap_or(self.queue),
        )
    }
}
