//! `[tools]`: where manifest tools live, which tools each profile serves, the token budgets
//! every tool definition is held to, and how long any call may hold its caller.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::settings::HumanDuration;
use serde::{Deserialize, Serialize};

/// The profile served at `/mcp` when neither the path nor the header names one.
pub const DEFAULT_PROFILE: &str = "voice";

/// `[tools]`: manifest tools, the profiles that serve them and their token budgets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Directory of `*.toml` tool manifests; a missing directory means no manifest tools.
    pub dir: PathBuf,
    /// Reload manifests when the directory changes.
    pub watch: bool,
    /// Profile served at `/mcp` without a profile in the path or header.
    pub default_profile: String,
    /// Request header that selects a profile on `/mcp`.
    pub profile_header: String,
    /// Named tool subsets, served at `/mcp/{profile}`, each holding exactly what it lists.
    /// Without a `voice` entry, `voice` holds the built-ins, then manifest tools that ask for
    /// it, then the rest while it stays within budget; what does not fit is served by `extra`.
    pub profiles: BTreeMap<String, Vec<String>>,
    /// Budgets checked at startup, on reload and by `offstage tools check`.
    pub budgets: Budgets,
    /// Every `tools/call` answers within this, whatever the tool or `wait_ms` asks for.
    /// LiveKit's and openai-agents' MCP clients give each request 5 s by default, so the default
    /// leaves room for the network.
    pub reply_within: HumanDuration,
    /// Let manifest HTTP tools and `edit_image` URLs reach private, loopback and link-local
    /// addresses.
    pub allow_private: bool,
    /// Exact private `ip:port` destinations `edit_image` may fetch from even without
    /// `allow_private`, such as the operator's own image store. Literal-IP URLs only.
    pub image_hosts: Vec<std::net::SocketAddr>,
    /// Secrets given by a program embedding offstage (never read from a file).
    #[serde(skip)]
    pub secrets: EnvSecrets,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            dir: PathBuf::from("tools"),
            watch: true,
            default_profile: DEFAULT_PROFILE.to_owned(),
            profile_header: "Offstage-Profile".to_owned(),
            profiles: BTreeMap::new(),
            budgets: Budgets::default(),
            reply_within: HumanDuration(ToolsConfig::DEFAULT_REPLY_WITHIN),
            allow_private: false,
            image_hosts: Vec::new(),
            secrets: EnvSecrets::default(),
        }
    }
}

impl ToolsConfig {
    pub const DEFAULT_REPLY_WITHIN: Duration = Duration::from_secs(3);
    /// Beyond this a voice turn is lost whatever the client allows; slow work belongs in a job.
    pub const MAX_REPLY_WITHIN: Duration = Duration::from_secs(60);
}

/// Token budgets (o200k tokens of name, description and compact parameters).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Tokens one tool's definition may take.
    pub per_tool: usize,
    /// Tokens all of one profile's definitions may take together.
    pub per_profile: usize,
    /// Tools in one profile: models pick worse from long lists.
    pub tools_per_profile: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets { per_tool: 120, per_profile: 600, tools_per_profile: 6 }
    }
}

/// Secrets manifest tools name, read from the environment when a call needs them (this is
/// the one module allowed to read it). Only upper-case names are secrets, so a manifest
/// cannot ask for `PATH` or `HOME`-like settings by accident of case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSecrets {
    /// Secrets a host program embedding offstage hands over directly; consulted first.
    pub given: BTreeMap<String, String>,
}

impl EnvSecrets {
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(value) = self.given.get(name) {
            return Some(value.clone());
        }
        let valid = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        #[expect(
            clippy::disallowed_methods,
            reason = "config is the one module that reads the environment"
        )]
        let value = valid.then(|| std::env::var(name).ok()).flatten();
        value.filter(|value| !value.is_empty())
    }
}

/// The values of `names` in the server's environment, for programs manifest tools run (they
/// get these and their declared secrets, nothing else).
pub fn inherited_env(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            #[expect(
                clippy::disallowed_methods,
                reason = "config is the one module that reads the environment"
            )]
            let value = std::env::var(name).ok()?;
            Some(((*name).to_owned(), value))
        })
        .collect()
}
