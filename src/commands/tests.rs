//! `tools check` and the server's start with the README's own "Add a tool" example dropped
//! into the shipped `tools/` directory: the default profile is full, so the new tool goes to
//! `extra` and both say where; one too long for any profile is held back with the numbers;
//! a profile the operator lists over budget is still refused.

use std::path::Path;

use crate::{
    cli::ToolsCommand,
    config::{Config, DEFAULT_PROFILE},
    server::{Server, StartError},
    tools::listing::budget::EXTRA_PROFILE,
};

/// The manifest of README.md's `toml snippet=add-a-tool` block, as a reader would save it.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme.find("```toml snippet=add-a-tool\n").expect("the add-a-tool snippet");
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("the snippet's end")].to_owned()
}

/// A configuration whose tools directory is the shipped `tools/` plus the README's example.
fn with_the_example(dir: &Path) -> Config {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            std::fs::copy(&path, tools.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(tools.join("get_fact.toml"), readme_example()).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut config = Config::for_data_dir(dir.join("data"));
    config.tools.dir = tools;
    config.tools.watch = false;
    config
}

async fn check(config: &Config) -> super::Printed {
    let command = ToolsCommand::Check { profile: None, markdown: false };
    super::tools(&command, config).await.expect("tools check runs")
}

#[tokio::test]
async fn the_readme_example_goes_to_extra_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = with_the_example(dir.path());

    let printed = check(&config).await;
    let out = &printed.stdout;
    assert!(printed.success, "the README's example must not fail tools check:\n{out}");
    let placed = |tool: &str| {
        out.lines()
            .find(|line| line.starts_with(&format!("placed: {tool}: ")))
            .unwrap_or_else(|| panic!("no placement for {tool}:\n{out}"))
            .to_owned()
    };
    assert!(placed("get_weather").contains("in voice (its manifest asks for it)"), "{out}");
    assert!(placed("web_search").contains("in voice (its manifest asks for it)"), "{out}");
    let fact = placed("get_fact");
    assert!(
        fact.contains("in extra at /mcp/extra, not voice: voice is full (6 of 6 tools"),
        "{fact}"
    );
    assert!(fact.contains("[tools.profiles]") && fact.contains("[tools.budgets]"), "{fact}");
    assert!(!out.contains("over budget:"), "{out}");

    let server = Server::start(config).await.expect("the server starts with the example added");
    let url = format!("http://{}/v1/tools", server.local_addr());
    let listed: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let names = |profile: &str| -> Vec<String> {
        let tools = listed["profiles"][profile].as_array().cloned().unwrap_or_default();
        tools.iter().map(|tool| tool["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        names(DEFAULT_PROFILE),
        ["cancel_job", "edit_image", "generate_image", "get_weather", "job_status", "web_search"],
        "{listed}"
    );
    assert_eq!(names(EXTRA_PROFILE), ["get_fact"], "{listed}");
    server.stop().await;
}

#[tokio::test]
async fn a_listed_profile_over_budget_is_still_refused_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_the_example(dir.path());
    let everything = [
        "cancel_job",
        "edit_image",
        "generate_image",
        "get_fact",
        "get_weather",
        "job_status",
        "web_search",
    ];
    config
        .tools
        .profiles
        .insert(DEFAULT_PROFILE.to_owned(), everything.map(str::to_owned).to_vec());

    let printed = check(&config).await;
    assert!(!printed.success, "{}", printed.stdout);
    assert!(
        printed.stdout.contains("over budget: profile voice: 7 tools, over the limit of 6"),
        "{}",
        printed.stdout
    );
    assert!(printed.stdout.contains("To fix a profile over budget"), "{}", printed.stdout);
    assert!(!printed.stdout.contains("placed: "), "a listed profile is the operator's");

    let Err(refused) = Server::start(config).await else { panic!("over budget: refused") };
    let StartError::OverBudget(problems) = &refused else { panic!("{refused}") };
    assert!(problems.contains("profile voice: 7 tools, over the limit of 6"), "{problems}");
    assert!(problems.contains("tokens, over the per-profile budget of 600"), "{problems}");
}

#[tokio::test]
async fn a_tool_too_long_for_the_per_tool_budget_is_held_back_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = with_the_example(dir.path());
    let wordy = readme_example().replace(
        "description = \"A fact about a number.",
        &format!(
            "description = \"{}A fact about a number.",
            "Numbers are fun to talk about. ".repeat(30)
        ),
    );
    std::fs::write(config.tools.dir.join("get_fact.toml"), wordy).unwrap();

    let printed = check(&config).await;
    let out = &printed.stdout;
    assert!(!printed.success, "tools check names the problem:\n{out}");
    let error = out
        .lines()
        .find(|line| line.starts_with("error: ") && line.contains("get_fact.toml"))
        .unwrap_or_else(|| panic!("no error for get_fact.toml:\n{out}"));
    assert!(
        error.contains("tokens, over the per-tool budget of 120, so it is not served"),
        "{error}"
    );
    assert!(!out.contains("over budget:"), "no profile is over budget:\n{out}");

    let server = Server::start(config).await.expect("the server starts without the long tool");
    let url = format!("http://{}/v1/tools", server.local_addr());
    let listed: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let profiles = listed["profiles"].to_string();
    assert!(!profiles.contains("get_fact"), "held back from every profile: {listed}");
    let problems = listed["problems"].to_string();
    assert!(problems.contains("get_fact.toml") && problems.contains("per-tool budget"), "{listed}");
    assert!(listed["profiles"][DEFAULT_PROFILE].as_array().is_some_and(|tools| tools.len() == 6));
    server.stop().await;
}
