//! README's worked example of a Rust tool (`roll_dice.rs`, never offered): the README shows
//! this very file, it answers and refuses bad input in words a model can act on, and with its
//! line added to the list the default profile takes it and stays within its budgets (the
//! shipped manifest it displaces goes to `extra`, and says why).

use std::path::Path;

use serde_json::{Value, json};

use super::{inline, roll_dice::RollDice};
use crate::{
    config::{Budgets, DEFAULT_PROFILE},
    tools::{
        Caller, ToolCall, ToolDefinition, ToolError,
        listing::{
            budget::{self, EXTRA_PROFILE, Reason},
            tokens,
        },
        manifest::{load_dir, tool::ManifestTool},
    },
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn roll(arguments: Value) -> Result<Value, ToolError> {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let call = ToolCall { caller: Caller::local(), arguments, progress: None };
    inline(RollDice).call(call).await.map(|output| output.structured)
}

#[test]
fn the_readme_shows_this_file() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let file = std::fs::read_to_string(root().join("src/tools/builtin/roll_dice.rs")).unwrap();
    assert!(readme.contains(&format!("```rust snippet=roll-dice\n{file}```\n")));
}

#[tokio::test]
async fn it_answers_and_refuses_what_it_cannot_roll() {
    let rolls = roll(json!({ "dice": 3 })).await.unwrap();
    let rolls = rolls["rolls"].as_array().unwrap();
    assert_eq!(rolls.len(), 3);
    assert!(rolls.iter().all(|roll| (1..=6).contains(&roll.as_u64().unwrap())), "{rolls:?}");
    assert_eq!(roll(json!({})).await.unwrap()["rolls"].as_array().unwrap().len(), 1);

    let Err(ToolError::InvalidArguments(message)) = roll(json!({ "dice": 11 })).await else {
        panic!("eleven dice are refused")
    };
    assert_eq!(message, "`dice` is 11; roll 1 to 10 dice.");
    let Err(ToolError::InvalidArguments(message)) = roll(json!({ "dice": "two" })).await else {
        panic!("a word is refused")
    };
    assert!(message.contains("`dice`"), "{message}");
}

#[test]
fn added_to_the_list_it_joins_the_default_profile_within_budget() {
    let (manifests, errors) = load_dir(&root().join("tools"));
    assert!(errors.is_empty(), "{errors:?}");
    let manifests: Vec<ToolDefinition> =
        manifests.iter().map(ManifestTool::definition_of).collect();
    let mut builtin = tokens::tests::builtin().to_vec();
    builtin.push(inline(RollDice).definition().clone());
    let budgets = Budgets::default();
    let builtin: Vec<&ToolDefinition> = builtin.iter().collect();
    let manifests: Vec<&ToolDefinition> = manifests.iter().collect();

    let fill = budget::fill_default(&builtin, &manifests, &budgets);
    assert!(fill.default.iter().any(|name| &**name == "roll_dice"), "{fill:?}");
    let displaced: Vec<_> =
        fill.placements.iter().filter(|placement| placement.profile == EXTRA_PROFILE).collect();
    assert_eq!(displaced.len(), 1, "one shipped manifest makes room: {fill:?}");
    assert!(matches!(displaced[0].reason, Reason::Full { .. }), "{fill:?}");

    let all: Vec<&ToolDefinition> =
        builtin.iter().copied().chain(manifests.iter().copied()).collect();
    let default = all.iter().copied().filter(|tool| fill.default.contains(&tool.name)).collect();
    let problems = budget::problems(all.iter().copied(), [(DEFAULT_PROFILE, default)], &budgets);
    assert!(problems.is_empty(), "{problems:?}");
}
