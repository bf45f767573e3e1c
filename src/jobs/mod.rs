//! Jobs: the durable unit of background work, its states and its public face.
//!
//! A job is a tool name plus JSON input, owned by one caller. [`runner::JobRunner`] moves it
//! through its states and [`store::JobStore`] is the single source of truth every view reads.
//! This module knows nothing about images, MCP or HTTP: handlers registered per tool do the work.

mod batch;
#[cfg(test)]
mod contract;
pub mod endings;
pub mod events;
mod follow;
mod migrations;
pub mod postgres;
mod recent;
mod row;
pub mod runner;
pub mod settings;
pub mod sqlite;
mod statements;
pub mod store;
#[cfg(test)]
mod testdb;

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An unguessable job identifier: 16 lowercase Crockford base32 characters, 80 random bits.
///
/// Job ids double as capabilities in image URLs, so they must never be sequential. Models copy
/// them into `job_status` calls and read them in every result, so they are short: about 10
/// o200k tokens, where the 26-character ULIDs of earlier versions cost about 17. Those still
/// parse, so jobs stored before keep their ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

/// Crockford's base32 alphabet (no i, l, o, u), lower case.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_LEN: usize = 16;
const ULID_LEN: usize = 26;

impl JobId {
    pub fn generate() -> JobId {
        // rand's thread generator is a CSPRNG; 80 bits, five per character.
        let bits = rand::random::<u128>() >> (128 - 5 * ID_LEN);
        let id = (0..ID_LEN)
            .rev()
            .map(|digit| char::from(ID_ALPHABET[((bits >> (5 * digit)) & 31) as usize]))
            .collect();
        JobId(id)
    }

    /// Accepts exactly the shapes [`JobId::generate`] produces now and did before (ULIDs),
    /// case-insensitively.
    pub fn parse(value: &str) -> Option<JobId> {
        let value = value.trim().to_ascii_lowercase();
        let valid = match value.len() {
            ID_LEN => value.bytes().all(|byte| ID_ALPHABET.contains(&byte)),
            ULID_LEN => ulid::Ulid::from_string(&value).is_ok(),
            _ => false,
        };
        valid.then_some(JobId(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// MCP's task vocabulary, so the same words mean the same thing in every view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Working)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Working => "working",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<JobStatus> {
        match value {
            "working" => Some(JobStatus::Working),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }
}

/// What a job's output is, recorded with the job when it is created, so every view (the job
/// JSON, the image route, announcements) knows how to show it without knowing which tool made
/// it. The runner stores it and never reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JobOutput {
    /// An image, served at the job's image URL; the output holds its facts.
    Image,
    /// JSON, shown as the job's `result`.
    #[default]
    Json,
}

impl JobOutput {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutput::Image => "image",
            JobOutput::Json => "json",
        }
    }

    pub fn parse(value: &str) -> Option<JobOutput> {
        match value {
            "image" => Some(JobOutput::Image),
            "json" => Some(JobOutput::Json),
            _ => None,
        }
    }
}

/// Why a job failed or was cancelled: a stable code and a sentence a voice model can say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    /// Structured facts about the failure for operators (e.g. provider attempts); not spoken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// Microseconds since the Unix epoch: precise enough to measure push latency, sortable in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    pub fn now() -> Micros {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Micros(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }

    pub fn plus(self, duration: Duration) -> Micros {
        let delta = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Micros(self.0.saturating_add(delta))
    }

    pub fn minus(self, duration: Duration) -> Micros {
        let delta = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Micros(self.0.saturating_sub(delta))
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-23T19:19:44.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let time = UNIX_EPOCH + Duration::from_micros(u64::try_from(self.0).unwrap_or(0));
        humantime::format_rfc3339_micros(time).to_string()
    }
}

/// One job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// The tool whose handler runs this job.
    pub tool: String,
    /// What it produces, as its tool declared when the job was created.
    pub produces: JobOutput,
    /// Who created it; only they may read, cancel or be notified about it.
    pub owner: String,
    pub input: Value,
    pub status: JobStatus,
    /// The handler's result once `completed`.
    pub output: Option<Value>,
    /// The latest progress a working job reported, in its tool's terms (opaque here).
    pub progress: Option<Value>,
    /// Set when `failed` or `cancelled`.
    pub error: Option<JobError>,
    /// Attempts started so far, restarts after a crash included.
    pub attempts: u32,
    /// The estimate given to the caller when the job was created.
    pub eta_ms: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub context: JobContext,
}

#[cfg(test)]
impl Job {
    /// A new `working` job of `tool` created at `created_at` (owner `o`, no input): what
    /// tests start from, changing the fields they care about.
    pub(crate) fn working(tool: &str, created_at: i64) -> Job {
        Job {
            id: JobId::generate(),
            tool: tool.to_owned(),
            produces: JobOutput::Json,
            owner: "o".to_owned(),
            input: Value::Object(serde_json::Map::new()),
            status: JobStatus::Working,
            output: None,
            progress: None,
            error: None,
            attempts: 0,
            eta_ms: 0,
            created_at: Micros(created_at),
            updated_at: Micros(created_at),
            started_at: None,
            finished_at: None,
            context: JobContext::default(),
        }
    }
}

/// Where a job came from, so its result can find its way back. Opaque to the runner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    /// The conversation (or MCP session) that started it.
    pub conversation: Option<String>,
    /// How its result should be delivered (`interrupt`, `when_idle`, `silent`).
    pub delivery: Option<String>,
    /// The realtime model's function call id, when the app passed it.
    pub call_id: Option<String>,
}

/// How a job ended; the runner writes exactly one of these, once.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(Value),
    Failed(JobError),
    Cancelled(JobError),
}

impl Outcome {
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Completed(_) => JobStatus::Completed,
            Outcome::Failed(_) => JobStatus::Failed,
            Outcome::Cancelled(_) => JobStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_junk() {
        let id = JobId::generate();
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(JobId::parse(&id.as_str().to_ascii_uppercase()), Some(id));
        assert_eq!(JobId::parse("job-1"), None);
        assert_eq!(JobId::parse("../../etc/passwd"), None);
        assert_eq!(JobId::parse("0123456789abcdei"), None, "not in the alphabet");
        assert_ne!(JobId::generate(), JobId::generate());
        // Ids from before stay valid.
        let old = JobId::parse("01KAZ4M2Q8D7P3X9V5N1C6B0TA").unwrap();
        assert_eq!(old.as_str(), "01kaz4m2q8d7p3x9v5n1c6b0ta");
    }

    #[test]
    fn job_ids_use_every_character_and_all_eighty_bits() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.extend(JobId::generate().0.bytes());
        }
        assert_eq!(seen.len(), 32, "every character of the alphabet appears");
        // The first character carries five bits too (80 = 16 x 5), so all 32 values occur there.
        let firsts: std::collections::BTreeSet<u8> =
            (0..2000).map(|_| JobId::generate().0.as_bytes()[0]).collect();
        assert_eq!(firsts.len(), 32);
    }

    #[test]
    fn job_outputs_round_trip_their_column_values() {
        for output in [JobOutput::Image, JobOutput::Json] {
            assert_eq!(JobOutput::parse(output.as_str()), Some(output));
        }
        assert_eq!(JobOutput::parse("png"), None);
    }

    #[test]
    fn micros_format_as_rfc3339_utc() {
        assert_eq!(Micros(1_500_000).to_rfc3339(), "1970-01-01T00:00:01.500000Z");
    }
}
