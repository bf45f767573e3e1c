//! The route: which providers a job tries, in order, and each one's limits
//! (`[routing.<provider>]`), resolved and checked against the provider registry.

use std::collections::BTreeMap;

use super::ConfigError;
use crate::providers::{Context, ProvidersConfig, route::RoutePolicy};

/// The first provider and the fallbacks, as registered names: `auto` resolved, every name
/// known, none twice, and every provider on the route built once (what cannot be built, a
/// missing key above all, is refused here). Every provider's own checks run, routed or not.
pub(super) fn resolve(
    provider: &str,
    fallback: &[String],
    routing: &BTreeMap<String, RoutePolicy>,
    providers: &ProvidersConfig,
) -> Result<(&'static str, Vec<&'static str>), ConfigError> {
    let known = |field, name: &str| {
        ProvidersConfig::name(name)
            .ok_or_else(|| ConfigError::UnknownProvider { field, name: name.to_owned() })
    };
    let primary = match provider.trim().to_ascii_lowercase().as_str() {
        "auto" => providers.auto(),
        _ => known("provider", provider)?,
    };
    let mut chosen = vec![primary];
    for name in fallback {
        if name.trim().eq_ignore_ascii_case("auto") {
            return Err(invalid("fallback", "`auto` can only be the provider, not a fallback"));
        }
        let name = known("fallback", name)?;
        if chosen.contains(&name) {
            return Err(invalid(
                "fallback",
                &format!("`{name}` is listed twice (the provider counts)"),
            ));
        }
        chosen.push(name);
    }
    validate_routing(routing)?;
    providers.check()?;
    let context = Context::default();
    for name in &chosen {
        providers.build(name, &context)?;
    }
    let fallback = chosen.split_off(1);
    Ok((primary, fallback))
}

/// `[routing.<name>]` tables must name a provider and hold sane numbers.
fn validate_routing(routing: &BTreeMap<String, RoutePolicy>) -> Result<(), ConfigError> {
    for (name, policy) in routing {
        if ProvidersConfig::name(name).is_none() {
            return Err(invalid(
                "routing",
                &format!(
                    "`[routing.{name}]` names no provider; expected one of {}",
                    crate::providers::NAMES.join(", ")
                ),
            ));
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

fn invalid(field: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid { field, message: message.to_owned() }
}
