//! `tools check`: what each tool of a profile costs a realtime model in tokens, held against
//! budgets, plus lint for the descriptions and names that make models pick the wrong tool.
//!
//! A profile is just a name and the definitions the caller chose; this module does not know
//! where they came from. Over-budget is an error ([`BudgetError`]); the lint is advice.

use std::{fmt, time::Duration};

use super::tokens;
use crate::tools::{Mode, ToolDefinition};

/// Token budgets, and the time budget of a call. Realtime contexts are small (28k usable on
/// `gpt-realtime`) and every tool definition is resent with each response, so a tool should
/// stay within a few sentences; and a call must answer before the caller's client gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Most tokens one tool may cost (name, description and compact parameters).
    pub per_tool: usize,
    /// Most tokens all tools of a profile may cost together.
    pub per_profile: usize,
    /// Every call answers within this (`tools.reply_within`); slower inline tools are cut.
    pub reply_within: Duration,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets { per_tool: 120, per_profile: 600, reply_within: Duration::from_secs(3) }
    }
}

/// More required arguments than this and voice models start asking the user for each one.
pub const MAX_REQUIRED: usize = 3;
/// A description longer than this is a manual, not guidance.
pub const MAX_DESCRIPTION_WORDS: usize = 60;

/// Advice about one tool; none of it stops the tool from working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The description never says when to call the tool.
    NoWhenToUse,
    /// The name does not say what the tool does to what.
    VagueName,
    TooManyRequired {
        count: usize,
    },
    LongDescription {
        words: usize,
    },
    /// An inline tool allows itself longer than any call may take.
    CutAtReplyBound {
        within: Duration,
        reply_within: Duration,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NoWhenToUse => write!(f, "description lacks \"Use when …\" guidance"),
            Warning::VagueName => write!(f, "vague name; prefer verb_noun like get_weather"),
            Warning::TooManyRequired { count } => {
                write!(f, "{count} required fields (more than {MAX_REQUIRED})")
            }
            Warning::LongDescription { words } => {
                write!(f, "description is {words} words (more than {MAX_DESCRIPTION_WORDS})")
            }
            Warning::CutAtReplyBound { within, reply_within } => write!(
                f,
                "may take {} but calls are cut at {} (tools.reply_within); lower its timeout or \
                 make it a job",
                humantime::format_duration(*within),
                humantime::format_duration(*reply_within)
            ),
        }
    }
}

/// A budget a profile or one of its tools goes over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("{tool} costs {tokens} tokens, over the per-tool budget of {budget}")]
    ToolOverBudget { tool: String, tokens: usize, budget: usize },
    #[error("profile {profile} costs {tokens} tokens, over its budget of {budget}")]
    ProfileOverBudget { profile: String, tokens: usize, budget: usize },
}

/// One tool's row in a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolReport {
    pub name: String,
    pub mode: Mode,
    /// What the model sees: name, description and compact parameters (see [`tokens`]).
    pub tokens: usize,
    /// The same tool with its schema as written, before compaction.
    pub source_tokens: usize,
    pub warnings: Vec<Warning>,
}

/// The result of [`check`]: per-tool rows, the profile total and the budgets they were held to.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub profile: String,
    pub budgets: Budgets,
    pub tools: Vec<ToolReport>,
    pub tokens: usize,
    pub source_tokens: usize,
}

/// Counts and lints `tools` as the profile `profile_name`.
pub fn check(profile_name: &str, tools: &[ToolDefinition], budgets: &Budgets) -> Report {
    let tools: Vec<ToolReport> = tools
        .iter()
        .map(|definition| ToolReport {
            name: definition.name.to_string(),
            mode: definition.mode,
            tokens: tokens::of_definition(definition),
            source_tokens: tokens::of_source(definition),
            warnings: lint(definition, budgets),
        })
        .collect();
    Report {
        profile: profile_name.to_owned(),
        budgets: *budgets,
        tokens: tools.iter().map(|tool| tool.tokens).sum(),
        source_tokens: tools.iter().map(|tool| tool.source_tokens).sum(),
        tools,
    }
}

impl Report {
    /// Whether any tool, or the profile as a whole, is over its budget.
    pub fn is_over_budget(&self) -> bool {
        !self.errors().is_empty()
    }

    /// Every budget that is exceeded, tools first.
    pub fn errors(&self) -> Vec<BudgetError> {
        let budget = self.budgets.per_tool;
        let mut errors: Vec<BudgetError> = self
            .tools
            .iter()
            .filter(|tool| tool.tokens > budget)
            .map(|tool| BudgetError::ToolOverBudget {
                tool: tool.name.clone(),
                tokens: tool.tokens,
                budget,
            })
            .collect();
        if self.tokens > self.budgets.per_profile {
            errors.push(BudgetError::ProfileOverBudget {
                profile: self.profile.clone(),
                tokens: self.tokens,
                budget: self.budgets.per_profile,
            });
        }
        errors
    }

    pub fn warning_count(&self) -> usize {
        self.tools.iter().map(|tool| tool.warnings.len()).sum()
    }

    /// An aligned plain-text table for a terminal.
    pub fn render_table(&self) -> String {
        let rows = self.cells();
        let widths = column_widths(&rows);
        let mut out = format!("profile {}: {} tools\n", self.profile, self.tools.len());
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(column, cell)| pad(cell, widths[column], NUMERIC[column]))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&self.footer());
        out
    }

    /// The same table in Markdown (columns aligned too), for BENCHMARKS.md.
    pub fn render_markdown(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cells()
            .into_iter()
            .map(|row| row.into_iter().map(|cell| cell.replace('|', "\\|")).collect())
            .collect();
        let widths: Vec<usize> = column_widths(&rows).into_iter().map(|w| w.max(3)).collect();
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut out = format!("Profile `{}`: {} tools\n\n", self.profile, self.tools.len());
        for (index, row) in rows.iter().enumerate() {
            let cells = row.iter().enumerate();
            out.push_str(&line(cells.map(|(c, cell)| pad(cell, widths[c], NUMERIC[c])).collect()));
            if index == 0 {
                let rule = widths.iter().enumerate().map(|(column, width)| {
                    if NUMERIC[column] {
                        format!("{}:", "-".repeat(width - 1))
                    } else {
                        "-".repeat(*width)
                    }
                });
                out.push_str(&line(rule.collect()));
            }
        }
        out.push('\n');
        out.push_str(&self.footer());
        out
    }

    /// Header, one row per tool, and the total: shared by both renderings.
    fn cells(&self) -> Vec<Vec<String>> {
        let mut rows = vec![HEADER.iter().map(|title| (*title).to_owned()).collect()];
        for tool in &self.tools {
            let mut notes: Vec<String> = Vec::new();
            if tool.tokens > self.budgets.per_tool {
                notes.push(format!("OVER BUDGET ({})", self.budgets.per_tool));
            }
            notes.extend(tool.warnings.iter().map(ToString::to_string));
            rows.push(vec![
                tool.name.clone(),
                mode_label(tool.mode),
                tool.tokens.to_string(),
                tool.source_tokens.to_string(),
                saved(tool.tokens, tool.source_tokens),
                if notes.is_empty() { "ok".to_owned() } else { notes.join("; ") },
            ]);
        }
        let total_note = if self.tokens > self.budgets.per_profile {
            format!("OVER BUDGET ({})", self.budgets.per_profile)
        } else {
            format!("within {}", self.budgets.per_profile)
        };
        rows.push(vec![
            "total".to_owned(),
            String::new(),
            self.tokens.to_string(),
            self.source_tokens.to_string(),
            saved(self.tokens, self.source_tokens),
            total_note,
        ]);
        rows
    }

    fn footer(&self) -> String {
        format!(
            "o200k tokens of name + description + compact parameters; source = schema as \
             written. Budgets: {} per tool, {} per profile.\n",
            self.budgets.per_tool, self.budgets.per_profile
        )
    }
}

const HEADER: [&str; 6] = ["tool", "mode", "tokens", "source", "saved", "notes"];
const NUMERIC: [bool; 6] = [false, false, true, true, true, false];

fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    (0..HEADER.len())
        .map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect()
}

fn pad(cell: &str, width: usize, right: bool) -> String {
    if right { format!("{cell:>width$}") } else { format!("{cell:<width$}") }
}

fn mode_label(mode: Mode) -> String {
    match mode {
        Mode::Job => "job".to_owned(),
        Mode::Inline { within } => format!("inline {}", humantime::format_duration(within)),
    }
}

/// How much smaller the compact form is, as a negative percentage.
fn saved(tokens: usize, source_tokens: usize) -> String {
    if source_tokens == 0 {
        return String::new();
    }
    let change = (tokens as f64 - source_tokens as f64) / source_tokens as f64 * 100.0;
    format!("{change:.0}%")
}

/// Phrases that tell a model when to call: the guidance realtime prompting guides ask for.
const WHEN_TO_USE: &[&str] = &[
    "use when",
    "use only when",
    "use it when",
    "use this when",
    "use this tool when",
    "call when",
    "call only when",
    "call it when",
    "call this when",
    "when the user",
    "if the user",
];

/// Words that say nothing about what a tool does, alone or combined (`run_tool`).
const VAGUE_WORDS: &[&str] = &[
    "do", "run", "tool", "tools", "helper", "process", "handle", "handler", "execute", "exec",
    "call", "invoke", "action", "data", "util", "utils", "misc", "main", "func", "function",
    "task", "thing", "stuff", "manager", "service", "api", "info", "general", "generic",
];

fn lint(definition: &ToolDefinition, budgets: &Budgets) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let Mode::Inline { within } = definition.mode
        && within > budgets.reply_within
    {
        warnings.push(Warning::CutAtReplyBound { within, reply_within: budgets.reply_within });
    }
    if is_vague(&definition.name) {
        warnings.push(Warning::VagueName);
    }
    let description = definition.description.to_lowercase();
    if !WHEN_TO_USE.iter().any(|phrase| description.contains(phrase)) {
        warnings.push(Warning::NoWhenToUse);
    }
    let required = definition
        .input_schema
        .get("required")
        .and_then(|names| names.as_array())
        .map_or(0, Vec::len);
    if required > MAX_REQUIRED {
        warnings.push(Warning::TooManyRequired { count: required });
    }
    let words = definition.description.split_whitespace().count();
    if words > MAX_DESCRIPTION_WORDS {
        warnings.push(Warning::LongDescription { words });
    }
    warnings
}

/// Short names, one-word names (no verb_noun shape; telling verbs from nouns would need a
/// dictionary, but two words at least say what and to what) and names made only of vague words.
fn is_vague(name: &str) -> bool {
    let words = words_of(name);
    name.chars().count() < 4
        || words.len() < 2
        || words.iter().all(|word| VAGUE_WORDS.contains(&word.as_str()))
}

/// `get_weather`, `get-weather`, `weather.get` and `getWeather` all split into two words.
fn words_of(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = matches!(c, '_' | '-' | '.' | ' ') || (c.is_uppercase() && previous_lower);
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests;
