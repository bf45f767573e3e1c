//! The budget rule: the default profile never goes over, tools that ask come first, what does
//! not fit goes to `extra` with the numbers, and the problems name every broken budget.

use std::sync::Arc;

use super::*;
use crate::tools::{Annotations, Mode};

const READ: Annotations =
    Annotations { read_only: true, destructive: false, idempotent: true, open_world: false };

fn tool(name: &str, asks_for: &[&str]) -> ToolDefinition {
    let source = serde_json::json!({"type": "object", "properties": {}});
    let serde_json::Value::Object(source) = source else { unreachable!() };
    ToolDefinition {
        asks_for: asks_for.iter().map(|profile| (*profile).to_owned()).collect(),
        ..ToolDefinition::from_source(name, "Say a word. Use when asked.", source, READ, Mode::Job)
    }
}

fn budgets(tools: usize) -> Budgets {
    Budgets { per_tool: 120, per_profile: 10_000, tools_per_profile: tools }
}

fn names(names: &[Arc<str>]) -> Vec<&str> {
    names.iter().map(AsRef::as_ref).collect()
}

#[test]
fn the_default_profile_takes_builtins_then_askers_then_the_rest_while_they_fit() {
    let builtin = [tool("b_one", &[]), tool("b_two", &[])];
    // In name order, as the catalog passes them.
    let manifests = [tool("a_new", &[]), tool("m_asks", &["voice"]), tool("z_asks", &["voice"])];
    let fill = fill_default(
        &builtin.iter().collect::<Vec<_>>(),
        &manifests.iter().collect::<Vec<_>>(),
        &budgets(4),
    );
    assert_eq!(names(&fill.default), ["b_one", "b_two", "m_asks", "z_asks"]);
    assert_eq!(names(&fill.extra), ["a_new"]);
    let reasons: Vec<_> = fill.placements.iter().map(|p| (&*p.tool, p.profile)).collect();
    assert_eq!(reasons, [("m_asks", "voice"), ("z_asks", "voice"), ("a_new", "extra")]);
    let full = fill.placements[2].to_string();
    assert!(
        full.starts_with("a_new: in extra at /mcp/extra, not voice: voice is full (4 of 4 tools"),
        "{full}"
    );
    assert!(full.contains("with a_new 5 tools"), "{full}");
}

#[test]
fn with_room_everything_stays_in_the_default_profile_as_before() {
    let builtin = [tool("b_one", &[])];
    let manifests = [tool("echo", &[]), tool("shout", &[])];
    let fill = fill_default(
        &builtin.iter().collect::<Vec<_>>(),
        &manifests.iter().collect::<Vec<_>>(),
        &budgets(6),
    );
    assert_eq!(names(&fill.default), ["b_one", "echo", "shout"]);
    assert!(fill.extra.is_empty());
    assert_eq!(fill.placements[0].to_string(), "echo: in voice (it had room)");
}

#[test]
fn a_tool_asking_only_for_extra_skips_the_default_profile() {
    let manifests = [tool("quiet", &["extra"]), tool("both", &["extra", "voice"])];
    let fill = fill_default(&[], &manifests.iter().collect::<Vec<_>>(), &budgets(6));
    assert_eq!(names(&fill.default), ["both"]);
    assert_eq!(names(&fill.extra), ["quiet"]);
}

#[test]
fn tokens_count_as_well_as_tools() {
    let manifests = [tool("first", &[]), tool("second", &[])];
    let one = tokens::of_definition(&manifests[0]);
    let tight = Budgets { per_tool: 120, per_profile: one + 1, tools_per_profile: 6 };
    let fill = fill_default(&[], &manifests.iter().collect::<Vec<_>>(), &tight);
    assert_eq!(names(&fill.default), ["first"]);
    assert_eq!(names(&fill.extra), ["second"]);
}

#[test]
fn problems_name_every_broken_budget_with_its_numbers() {
    let tools = [tool("one", &[]), tool("two", &[])];
    let tokens = tokens::of_definition(&tools[0]);
    let tight = Budgets { per_tool: tokens - 1, per_profile: tokens, tools_per_profile: 1 };
    let found = problems(tools.iter(), [("voice", tools.iter().collect())], &tight);
    assert_eq!(
        found,
        [
            format!("tool one: {tokens} tokens, over the per-tool budget of {}", tokens - 1),
            format!("tool two: {tokens} tokens, over the per-tool budget of {}", tokens - 1),
            "profile voice: 2 tools, over the limit of 1".to_owned(),
            format!(
                "profile voice: {} tokens, over the per-profile budget of {tokens}",
                2 * tokens
            ),
        ]
    );
    assert!(problems(tools.iter(), [("voice", tools.iter().collect())], &budgets(2)).is_empty());
}
