//! `offstage tools check` and `offstage tools export`: what they print and how they exit. Kept
//! out of `main.rs` so tests can run them without a process.

use std::fmt::Write as _;

use crate::{
    cli::ToolsCommand,
    config::Config,
    server::{self, StartError},
    tools::listing::{
        budget::OVER_BUDGET_HELP,
        check::{self, Budgets},
        export::{self, ExportFormat},
    },
};

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub success: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("no profile `{name}`; this configuration has: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("unknown format `{0}`; use openai-realtime, gemini-live or mcp")]
    UnknownFormat(String),
}

pub async fn tools(command: &ToolsCommand, config: &Config) -> Result<Printed, CommandError> {
    let loaded = server::inspect_tools(config).await?;
    let catalog = &loaded.catalog;
    let pick = |profile: &Option<String>| -> Result<Vec<String>, CommandError> {
        match profile {
            Some(name) if catalog.has_profile(name) => Ok(vec![name.clone()]),
            Some(name) => Err(CommandError::UnknownProfile {
                name: name.clone(),
                known: catalog.profiles().collect::<Vec<_>>().join(", "),
            }),
            None => Ok(catalog.profiles().map(str::to_owned).collect()),
        }
    };
    match command {
        ToolsCommand::Check { profile, markdown } => {
            let limits = config.tools.budgets;
            let budgets = Budgets {
                per_tool: limits.per_tool,
                per_profile: limits.per_profile,
                reply_within: *config.tools.reply_within,
            };
            let mut stdout = String::new();
            let mut success = loaded.errors.is_empty();
            for name in pick(profile)? {
                let definitions: Vec<_> =
                    catalog.definitions(&name).unwrap_or_default().into_iter().cloned().collect();
                let report = check::check(&name, &definitions, &budgets);
                // The rule's `extra` profile is never refused: its table is advice.
                success &= !report.is_over_budget() || !catalog.is_budgeted(&name);
                let table =
                    if *markdown { report.render_markdown() } else { report.render_table() };
                let _ = writeln!(stdout, "{table}");
                if report.is_over_budget() && !catalog.is_budgeted(&name) {
                    let _ = writeln!(
                        stdout,
                        "note: profile {name} holds what the default profile has no room for and \
                         is served over budget; give its tools profiles of their own under \
                         [tools.profiles] so each agent reads fewer\n"
                    );
                }
            }
            // Where the budget rule put each manifest tool, so an author sees where theirs went.
            for placement in catalog.placements() {
                let _ = writeln!(stdout, "placed: {placement}");
            }
            let over = catalog.budget_problems(&limits);
            success &= over.is_empty();
            for problem in &over {
                let _ = writeln!(stdout, "over budget: {problem}");
            }
            if !over.is_empty() {
                let _ = writeln!(stdout, "{OVER_BUDGET_HELP}");
            }
            for error in &loaded.errors {
                let _ = writeln!(stdout, "error: {error}");
            }
            for warning in &loaded.warnings {
                let _ = writeln!(stdout, "warning: {warning}");
            }
            Ok(Printed { stdout, success })
        }
        ToolsCommand::Export { format, profile } => {
            let format: ExportFormat =
                format.parse().map_err(|_| CommandError::UnknownFormat(format.clone()))?;
            let name = profile.clone().unwrap_or_else(|| catalog.default_profile().to_owned());
            let name = pick(&Some(name))?.remove(0);
            let definitions: Vec<_> =
                catalog.definitions(&name).unwrap_or_default().into_iter().cloned().collect();
            let exported = export::export(&definitions, format);
            let stdout = serde_json::to_string_pretty(&exported).unwrap_or_default() + "\n";
            Ok(Printed { stdout, success: true })
        }
    }
}

#[cfg(test)]
#[path = "commands/tests.rs"]
mod tests;
