//! Budgets: every way a set of profiles breaks them ([`problems`]) and the rule that keeps the
//! default profile within them ([`fill_default`]), so that adding a tool never stops a working
//! server.
//!
//! The rule: unless `[tools.profiles]` lists the default profile, it holds the built-ins, then
//! the manifest tools that ask for it (`profiles = ["voice"]`), then the other manifest tools,
//! each group in name order, each tool only if the profile still fits its budgets with it. A
//! manifest tool that does not fit (or asks only for `extra`) is served in the `extra` profile
//! instead. Profiles the operator lists hold exactly what they list, and one over budget is
//! refused.

use std::{fmt, sync::Arc};

use super::tokens;
use crate::{
    config::{Budgets, DEFAULT_PROFILE},
    tools::ToolDefinition,
};

/// Where manifest tools the default profile has no room for are served, unless configured.
pub const EXTRA_PROFILE: &str = "extra";

/// How much of a profile's budgets its tools use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub tools: usize,
    pub tokens: usize,
}

impl Usage {
    pub fn of<'a>(definitions: impl IntoIterator<Item = &'a ToolDefinition>) -> Usage {
        definitions.into_iter().fold(Usage::default(), Usage::with)
    }

    fn with(self, definition: &ToolDefinition) -> Usage {
        Usage { tools: self.tools + 1, tokens: self.tokens + tokens::of_definition(definition) }
    }

    fn within(self, budgets: &Budgets) -> bool {
        self.tools <= budgets.tools_per_profile && self.tokens <= budgets.per_profile
    }
}

/// Why a manifest tool is where [`fill_default`] put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// In the default profile: its manifest asks for it and it fits.
    Asked,
    /// In the default profile: it asks for no profile and there was room.
    HadRoom,
    /// In `extra`: the default profile would have gone over budget with it (`used`, without it).
    Full { used: Usage, with: Usage, budgets: Budgets },
    /// In `extra`: its manifest asks for `extra` and not for the default profile.
    AskedForExtra,
}

/// Where one manifest tool went when the default profile was filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub tool: Arc<str>,
    /// [`DEFAULT_PROFILE`] or [`EXTRA_PROFILE`].
    pub profile: &'static str,
    pub reason: Reason,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Placement { tool, profile, reason } = self;
        match reason {
            Reason::Asked => write!(f, "{tool}: in {profile} (its manifest asks for it)"),
            Reason::HadRoom => write!(f, "{tool}: in {profile} (it had room)"),
            Reason::AskedForExtra => {
                write!(f, "{tool}: in {profile} at /mcp/{profile} (its manifest asks for it)")
            }
            Reason::Full { used, with, budgets } => write!(
                f,
                "{tool}: in {profile} at /mcp/{profile}, not {DEFAULT_PROFILE}: {DEFAULT_PROFILE} \
                 is full ({} of {} tools, {} of {} tokens; with {tool} {} tools, {} tokens). To \
                 serve it in {DEFAULT_PROFILE}, list {DEFAULT_PROFILE}'s tools yourself under \
                 [tools.profiles] in offstage.toml (leaving one out), or raise [tools.budgets]",
                used.tools,
                budgets.tools_per_profile,
                used.tokens,
                budgets.per_profile,
                with.tools,
                with.tokens,
            ),
        }
    }
}

/// The default profile and `extra` as [`fill_default`] filled them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fill {
    pub default: Vec<Arc<str>>,
    pub extra: Vec<Arc<str>>,
    /// One per manifest tool, in the order they were considered.
    pub placements: Vec<Placement>,
}

/// Fills the default profile by the rule in this module's documentation. The built-ins are
/// always in it: only the operator's budgets can make them too many, and [`problems`] says so.
pub fn fill_default(
    builtin: &[&ToolDefinition],
    manifests: &[&ToolDefinition],
    budgets: &Budgets,
) -> Fill {
    let asks = |definition: &ToolDefinition, profile: &str| {
        definition.asks_for.iter().any(|asked| asked == profile)
    };
    let mut manifests = manifests.to_vec();
    // Those that ask first; `sort_by_key` is stable, and the input is in name order.
    manifests.sort_by_key(|definition| !asks(definition, DEFAULT_PROFILE));
    let mut fill = Fill {
        default: builtin.iter().map(|definition| definition.name.clone()).collect(),
        ..Fill::default()
    };
    let mut used = Usage::of(builtin.iter().copied());
    for definition in manifests {
        let name = definition.name.clone();
        let asked = asks(definition, DEFAULT_PROFILE);
        let (profile, reason) = if !asked && asks(definition, EXTRA_PROFILE) {
            (EXTRA_PROFILE, Reason::AskedForExtra)
        } else if used.with(definition).within(budgets) {
            used = used.with(definition);
            (DEFAULT_PROFILE, if asked { Reason::Asked } else { Reason::HadRoom })
        } else {
            let with = used.with(definition);
            (EXTRA_PROFILE, Reason::Full { used, with, budgets: *budgets })
        };
        if profile == DEFAULT_PROFILE {
            fill.default.push(name.clone());
        } else {
            fill.extra.push(name.clone());
        }
        fill.placements.push(Placement { tool: name, profile, reason });
    }
    fill
}

/// Every way `tools` and `profiles` break `budgets`, one line each with the numbers; empty
/// when they are within them.
pub fn problems<'a>(
    tools: impl IntoIterator<Item = &'a ToolDefinition>,
    profiles: impl IntoIterator<Item = (&'a str, Vec<&'a ToolDefinition>)>,
    budgets: &Budgets,
) -> Vec<String> {
    let mut problems = Vec::new();
    for definition in tools {
        let tokens = tokens::of_definition(definition);
        if tokens > budgets.per_tool {
            problems.push(format!(
                "tool {}: {tokens} tokens, over the per-tool budget of {}",
                definition.name, budgets.per_tool
            ));
        }
    }
    for (profile, definitions) in profiles {
        let used = Usage::of(definitions.iter().copied());
        if used.tools > budgets.tools_per_profile {
            problems.push(format!(
                "profile {profile}: {} tools, over the limit of {}",
                used.tools, budgets.tools_per_profile
            ));
        }
        if used.tokens > budgets.per_profile {
            problems.push(format!(
                "profile {profile}: {} tokens, over the per-profile budget of {}",
                used.tokens, budgets.per_profile
            ));
        }
    }
    problems
}

/// What to do about [`problems`], for `tools check` and the refusal at startup.
pub const OVER_BUDGET_HELP: &str = "To fix a profile over budget, list fewer tools in it under \
[tools.profiles], shorten the descriptions `offstage tools check` shows as costly, or raise \
[tools.budgets] (a realtime model reads every tool of its profile with every response). A tool \
over the per-tool budget needs a shorter description or fewer parameters.";

#[cfg(test)]
#[path = "budget/tests.rs"]
mod tests;
