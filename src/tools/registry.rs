//! The tools on offer: built-in Rust tools plus manifest tools, grouped into profiles (the
//! default one filled by the budget rule of [`super::listing::budget`] unless configured). A
//! [`Catalog`] is immutable; the [`Registry`] swaps in a new one whole (hot reload), so a call
//! sees either the old set or the new, never a mix, and listeners hear of every change.

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{
    Tool, ToolDefinition,
    listing::budget::{self, EXTRA_PROFILE, Placement},
};
use crate::{
    config::{Budgets, DEFAULT_PROFILE, ToolsConfig},
    jobs::runner::JobRunner,
};

/// One immutable set of tools and the profiles that select from it.
#[derive(Debug, Clone)]
pub struct Catalog {
    tools: BTreeMap<Arc<str>, Arc<dyn Tool>>,
    /// Profile name → tool names, in name order (stable `tools/list`).
    profiles: BTreeMap<String, Vec<Arc<str>>>,
    default_profile: String,
    /// Where each manifest tool went, when the default profile was filled by the rule
    /// ([`budget::fill_default`]) rather than listed by the operator.
    placements: Vec<Placement>,
    /// Whether `extra` is the rule's, holding what the default profile had no room for; the
    /// rule keeps it out of the budget check (it is advice there, never a refusal).
    implicit_extra: bool,
}

impl Catalog {
    /// Groups the built-in and manifest tools into the configured profiles, and fills the
    /// default profile by the budget rule when the configuration does not list it. Names a
    /// profile lists that no tool has are returned (a manifest may be broken for a moment);
    /// the profile serves the rest.
    pub fn new(
        builtin: Vec<Arc<dyn Tool>>,
        manifests: Vec<Arc<dyn Tool>>,
        config: &ToolsConfig,
    ) -> (Catalog, Vec<String>) {
        let mut missing = Vec::new();
        let mut placements = Vec::new();
        let mut implicit_extra = false;
        let mut profiles = BTreeMap::new();
        if !config.profiles.contains_key(DEFAULT_PROFILE) {
            let definitions = |tools: &[Arc<dyn Tool>]| -> Vec<ToolDefinition> {
                let mut definitions: Vec<_> =
                    tools.iter().map(|tool| tool.definition().clone()).collect();
                definitions.sort_by(|a, b| a.name.cmp(&b.name));
                definitions
            };
            let (builtin, manifests) = (definitions(&builtin), definitions(&manifests));
            let fill = budget::fill_default(
                &builtin.iter().collect::<Vec<_>>(),
                &manifests.iter().collect::<Vec<_>>(),
                &config.budgets,
            );
            let mut default = fill.default;
            default.sort();
            profiles.insert(DEFAULT_PROFILE.to_owned(), default);
            if !fill.extra.is_empty() {
                if config.profiles.contains_key(EXTRA_PROFILE) {
                    missing.push(format!(
                        "{DEFAULT_PROFILE} has no room for {} and profile {EXTRA_PROFILE} is \
                         configured, so they are served only where [tools.profiles] lists them",
                        fill.extra.join(", ")
                    ));
                } else {
                    implicit_extra = true;
                    let mut extra = fill.extra;
                    extra.sort();
                    profiles.insert(EXTRA_PROFILE.to_owned(), extra);
                }
            }
            placements = fill.placements;
        }
        let tools: BTreeMap<Arc<str>, Arc<dyn Tool>> = builtin
            .into_iter()
            .chain(manifests)
            .map(|tool| (tool.definition().name.clone(), tool))
            .collect();
        for (profile, names) in &config.profiles {
            let mut members: Vec<Arc<str>> = Vec::new();
            for name in names {
                match tools.get_key_value(name.as_str()) {
                    Some((key, _)) => members.push(key.clone()),
                    None => missing.push(format!("profile {profile} lists unknown tool {name}")),
                }
            }
            members.sort();
            members.dedup();
            profiles.insert(profile.clone(), members);
        }
        let default_profile = config.default_profile.clone();
        let catalog = Catalog { tools, profiles, default_profile, placements, implicit_extra };
        (catalog, missing)
    }

    /// A tool of the profile; tools outside it do not exist for its callers.
    pub fn get(&self, profile: &str, name: &str) -> Option<&Arc<dyn Tool>> {
        let members = self.profiles.get(profile)?;
        members.iter().any(|member| member.as_ref() == name).then(|| self.tools.get(name))?
    }

    /// The profile's tool definitions in name order; `None` for an unknown profile.
    pub fn definitions(&self, profile: &str) -> Option<Vec<&ToolDefinition>> {
        let members = self.profiles.get(profile)?;
        Some(
            members
                .iter()
                .filter_map(|name| self.tools.get(name))
                .map(|t| t.definition())
                .collect(),
        )
    }

    pub fn has_profile(&self, profile: &str) -> bool {
        self.profiles.contains_key(profile)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn default_profile(&self) -> &str {
        &self.default_profile
    }

    /// Every tool, whatever its profiles.
    pub fn tools(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    /// Whether every profile lists the same definitions in both.
    fn lists_equal(&self, other: &Catalog) -> bool {
        self.profiles.len() == other.profiles.len()
            && self
                .profiles
                .keys()
                .all(|profile| self.definitions(profile) == other.definitions(profile))
    }

    pub fn names(&self, profile: &str) -> Vec<&str> {
        self.profiles
            .get(profile)
            .map(|m| m.iter().map(AsRef::as_ref).collect())
            .unwrap_or_default()
    }

    /// Where each manifest tool went when the default profile was filled by the rule; empty
    /// when the operator lists the default profile.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// Whether the budget check applies to `profile`: every profile but the rule's `extra`.
    pub fn is_budgeted(&self, profile: &str) -> bool {
        !(self.implicit_extra && profile == EXTRA_PROFILE)
    }

    /// Every way this catalog breaks `budgets`, one line each; empty when it is within them.
    pub fn budget_problems(&self, budgets: &Budgets) -> Vec<String> {
        let profiles = self
            .profiles()
            .filter(|profile| self.is_budgeted(profile))
            .map(|profile| (profile, self.definitions(profile).unwrap_or_default()))
            .collect::<Vec<_>>();
        budget::problems(self.tools().map(|tool| tool.definition()), profiles, budgets)
    }
}

/// Points the runner at the job handlers of `next`: new and changed tools get lanes, tools
/// gone since `previous` lose theirs (their running jobs finish).
pub fn register_handlers(runner: &JobRunner, next: &Catalog, previous: Option<&Catalog>) {
    for tool in next.tools() {
        if let Some(handler) = tool.clone().handler() {
            runner.register(&tool.definition().name, handler);
        }
    }
    for gone in previous.into_iter().flat_map(|catalog| catalog.tools.keys()) {
        if !next.tools.contains_key(gone) {
            runner.unregister(gone);
        }
    }
}

/// The current catalog and everyone waiting to hear it changed.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Catalog>,
    /// What the last load found wrong (broken manifests, refused reloads), for operators.
    problems: ArcSwap<Vec<String>>,
    /// Bumped on every swap; MCP sends `notifications/tools/list_changed` on each bump.
    version: watch::Sender<u64>,
}

impl Registry {
    pub fn new(catalog: Catalog) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(catalog),
            problems: ArcSwap::default(),
            version: watch::Sender::new(0),
        }
    }

    pub fn problems(&self) -> Arc<Vec<String>> {
        self.problems.load_full()
    }

    pub fn set_problems(&self, problems: Vec<String>) {
        self.problems.store(Arc::new(problems));
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Serves `catalog` from now on and, when any profile's list differs, tells listeners
    /// (a changed URL behind a tool is no news to a model).
    pub fn replace(&self, catalog: Catalog) {
        let previous = self.current.swap(Arc::new(catalog));
        if !previous.lists_equal(&self.current.load()) {
            self.version.send_modify(|version| *version += 1);
        }
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
