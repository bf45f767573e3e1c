//! The route as configured: each provider's limits (`[routing.<provider>]`) and the resolved
//! steps a job tries in order.

use std::time::Duration;

use crate::settings::HumanDuration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How one provider is used: how long an attempt may take, how many run at once, how many
/// attempts a job makes on it before falling back to the next provider.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RoutePolicy {
    /// Longest one attempt may take (polling included); unset: the provider's own request
    /// timeout and the job's timeout bound it.
    pub timeout: Option<HumanDuration>,
    /// Requests in flight to this provider across all jobs; unset: only the job lanes bound it.
    pub concurrency: Option<usize>,
    /// Attempts per job on this provider, the first included; unset: `jobs.max_attempts`.
    pub attempts: Option<u32>,
}

/// One entry of the resolved route: a registered provider and its limits, attempts filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteStep {
    /// A name from [`super::NAMES`].
    pub provider: &'static str,
    pub timeout: Option<Duration>,
    pub concurrency: Option<usize>,
    pub attempts: u32,
}
