//! Provider routing settings: the ordered fallback list and each provider's own limits
//! (`[routing.<provider>]`: per-attempt timeout, concurrency, attempts).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::{ConfigError, ProviderChoice, ProvidersConfig};

/// How one provider is used: how long an attempt may take, how many run at once, how many
/// attempts a job makes on it before falling back to the next provider.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutePolicy {
    /// Longest one attempt may take (polling included); unset: the provider's own request
    /// timeout and the job's timeout bound it.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Requests in flight to this provider across all jobs; unset: only the job lanes bound it.
    pub concurrency: Option<usize>,
    /// Attempts per job on this provider, the first included; unset: `jobs.max_attempts`.
    pub attempts: Option<u32>,
}

/// One entry of the resolved route: a provider and its limits, attempts filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteStep {
    pub provider: ProviderChoice,
    pub timeout: Option<Duration>,
    pub concurrency: Option<usize>,
    pub attempts: u32,
}

/// Parses `fallback` and checks it against the primary provider and the keys configured.
pub(super) fn validate_fallback(
    primary: ProviderChoice,
    fallback: &[String],
    providers: &ProvidersConfig,
) -> Result<Vec<ProviderChoice>, ConfigError> {
    let mut chosen = vec![primary];
    for name in fallback {
        let choice = ProviderChoice::parse(name)?;
        if choice == ProviderChoice::Auto {
            return Err(invalid("fallback", "`auto` can only be the provider, not a fallback"));
        }
        if chosen.contains(&choice) {
            return Err(invalid(
                "fallback",
                &format!("`{}` is listed twice (the provider counts)", choice.as_str()),
            ));
        }
        super::raw::require_key(choice, providers)?;
        chosen.push(choice);
    }
    Ok(chosen.split_off(1))
}

/// `[routing.<name>]` tables must name a provider and hold sane numbers.
pub(super) fn validate_routing(routing: &BTreeMap<String, RoutePolicy>) -> Result<(), ConfigError> {
    for (name, policy) in routing {
        match ProviderChoice::parse(name) {
            Ok(ProviderChoice::Auto) | Err(_) => {
                return Err(invalid(
                    "routing",
                    &format!(
                        "`[routing.{name}]` names no provider; expected one of {}",
                        ProviderChoice::NAMES
                    ),
                ));
            }
            Ok(_) => {}
        }
        if policy.timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(invalid("routing", &format!("routing.{name}.timeout must be above 0s")));
        }
        if policy.concurrency == Some(0) {
            return Err(invalid(
                "routing",
                &format!("routing.{name}.concurrency must be 1 or more"),
            ));
        }
        if policy.attempts == Some(0) {
            return Err(invalid("routing", &format!("routing.{name}.attempts must be 1 or more")));
        }
    }
    Ok(())
}

/// Splits `OFFSTAGE_FALLBACK=gemini, sketch` into names.
pub(super) fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_owned).collect()
}

fn invalid(field: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid { field, message: message.to_owned() }
}
