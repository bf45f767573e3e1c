//! Tests for `tools check`: budgets, lint rules and both table renderings.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::tools::{Annotations, listing::tokens::tests::builtin};

const READ: Annotations =
    Annotations { read_only: true, destructive: false, idempotent: true, open_world: false };

fn tool(name: &str, description: &str, required: &[&str]) -> ToolDefinition {
    let properties: serde_json::Map<String, serde_json::Value> =
        required.iter().map(|field| ((*field).to_owned(), json!({"type": "string"}))).collect();
    let source = json!({"type": "object", "properties": properties, "required": required});
    ToolDefinition::from_source(
        name,
        description,
        source.as_object().cloned().unwrap(),
        READ,
        Mode::Inline { within: Duration::from_secs(2) },
    )
}

#[test]
fn builtin_profile_is_within_budget_and_clean() {
    let report = check("builtin", &builtin(), &Budgets::default());
    eprintln!("{}", report.render_table());
    eprintln!("{}", report.render_markdown());
    assert_eq!(report.errors(), vec![]);
    assert_eq!(report.warning_count(), 0, "{}", report.render_table());
    assert!(report.tools.iter().all(|row| row.tokens <= 120 && row.tokens < row.source_tokens));
    assert_eq!(report.tokens, report.tools.iter().map(|row| row.tokens).sum::<usize>());
}

#[test]
fn vague_names_are_flagged() {
    for name in ["do", "run_tool", "data", "fetch", "abc", "process_data", "helper"] {
        assert!(is_vague(name), "{name} should be vague");
    }
    for name in ["get_weather", "getWeather", "weather.get", "job_status", "handle_refund"] {
        assert!(!is_vague(name), "{name} should pass");
    }
}

#[test]
fn descriptions_need_when_to_use_guidance_and_brevity() {
    let guided = tool("get_weather", "Tell the weather. Use when the user asks.", &["city"]);
    assert_eq!(lint(&guided, &Budgets::default()), vec![]);
    let unguided = tool("get_weather", "Returns weather data for a city.", &["city"]);
    assert_eq!(lint(&unguided, &Budgets::default()), vec![Warning::NoWhenToUse]);
    let long = "Tell the weather, use when asked. ".repeat(11);
    assert_eq!(
        lint(&tool("get_weather", &long, &[]), &Budgets::default()),
        vec![Warning::LongDescription { words: 66 }]
    );
    let limit = "Tell the weather, use when asked. ".repeat(10);
    assert_eq!(lint(&tool("get_weather", &limit, &[]), &Budgets::default()), vec![]);
}

#[test]
fn inline_tools_slower_than_the_reply_bound_are_flagged() {
    let budgets = Budgets { reply_within: Duration::from_secs(2), ..Budgets::default() };
    let slow = ToolDefinition {
        mode: Mode::Inline { within: Duration::from_secs(8) },
        ..tool("get_weather", "Tell the weather. Use when the user asks.", &["city"])
    };
    let warning = Warning::CutAtReplyBound {
        within: Duration::from_secs(8),
        reply_within: budgets.reply_within,
    };
    assert_eq!(lint(&slow, &budgets), vec![warning.clone()]);
    assert!(warning.to_string().contains("cut at 2s"), "{warning}");
    let fits = tool("get_weather", "Tell the weather. Use when the user asks.", &["city"]);
    assert_eq!(lint(&fits, &budgets), vec![]);
    let job = ToolDefinition { mode: Mode::Job, ..slow };
    assert_eq!(lint(&job, &budgets), vec![], "jobs answer at once");
}

#[test]
fn more_than_three_required_fields_is_a_warning() {
    let definition = tool("book_table", "Use when the user wants a table.", &["a", "b", "c", "d"]);
    assert_eq!(lint(&definition, &Budgets::default()), vec![Warning::TooManyRequired { count: 4 }]);
    let three = tool("book_table", "Use when the user wants a table.", &["a", "b", "c"]);
    assert_eq!(lint(&three, &Budgets::default()), vec![]);
}

#[test]
fn budgets_are_errors_per_tool_and_per_profile() {
    let tools = [tool("get_weather", "Use when asked.", &["city"]), tool("get_time", "?", &[])];
    let budgets = Budgets { per_tool: 30, per_profile: 40, ..Budgets::default() };
    let report = check("tight", &tools, &budgets);
    let (first, second) = (report.tools[0].tokens, report.tools[1].tokens);
    assert!(first > 30 && second <= 30, "{first} {second}");
    assert!(report.is_over_budget());
    assert_eq!(
        report.errors(),
        vec![
            BudgetError::ToolOverBudget {
                tool: "get_weather".to_owned(),
                tokens: first,
                budget: 30
            },
            BudgetError::ProfileOverBudget {
                profile: "tight".to_owned(),
                tokens: first + second,
                budget: 40
            },
        ]
    );
    assert!(!check("roomy", &tools, &Budgets::default()).is_over_budget());
}

fn fixed_report() -> Report {
    Report {
        profile: "demo".to_owned(),
        budgets: Budgets { per_tool: 100, per_profile: 150, ..Budgets::default() },
        tools: vec![
            ToolReport {
                name: "generate_image".to_owned(),
                mode: Mode::Job,
                tokens: 110,
                source_tokens: 180,
                warnings: vec![],
            },
            ToolReport {
                name: "run".to_owned(),
                mode: Mode::Inline { within: Duration::from_millis(1500) },
                tokens: 40,
                source_tokens: 40,
                warnings: vec![Warning::VagueName, Warning::NoWhenToUse],
            },
        ],
        tokens: 150,
        source_tokens: 220,
    }
}

#[test]
fn table_is_aligned_plain_text() {
    assert_eq!(
        fixed_report().render_table(),
        "profile demo: 2 tools
tool            mode             tokens  source  saved  notes
generate_image  job                 110     180   -39%  OVER BUDGET (100)
run             inline 1s 500ms      40      40     0%  vague name; prefer verb_noun like get_weather; description lacks \"Use when …\" guidance
total                               150     220   -32%  within 150
o200k tokens of name + description + compact parameters; source = schema as written. Budgets: 100 per tool, 150 per profile.
"
    );
}

#[test]
fn markdown_table_has_a_rule_and_right_aligned_numbers() {
    let markdown = fixed_report().render_markdown();
    let lines: Vec<&str> = markdown.lines().collect();
    assert_eq!(lines[0], "Profile `demo`: 2 tools");
    assert!(lines[2].starts_with("| tool           | mode            | tokens | source | saved |"));
    assert!(lines[3].starts_with("| -------------- | --------------- | -----: | -----: | ----: |"));
    assert!(lines[4].starts_with("| generate_image | job             |    110 |    180 |  -39% |"));
    assert!(lines[6].starts_with("| total          |                 |    150 |    220 |  -32% |"));
}
