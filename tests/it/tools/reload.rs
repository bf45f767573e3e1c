//! Hot reload of `tools/`: adding, changing and removing a manifest reaches every connected
//! client (legacy sessions and 2026 listen streams) as `notifications/tools/list_changed`; a
//! broken manifest is reported precisely while the previous version keeps serving.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ServerNotification, SubscriptionFilter};
use serde_json::{Value, json};

use crate::{
    support::{self, SOON, TestServer, call, text},
    tools::manifests::{echo_manifest, stand_in, write},
};

async fn tool_names(client: &support::Client) -> Vec<String> {
    let tools = client.list_all_tools().await.unwrap();
    tools.iter().map(|tool| tool.name.to_string()).collect()
}

async fn description(client: &support::Client, name: &str) -> Option<String> {
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools.into_iter().find(|tool| tool.name == name)?;
    tool.description.map(|text| text.to_string())
}

/// Waits for the next `tools/list_changed` on a listen stream.
async fn next_on_stream(stream: &mut rmcp::service::Subscription) {
    loop {
        let next = tokio::time::timeout(SOON, stream.next()).await.expect("a notification");
        match next.expect("stream open") {
            Some(ServerNotification::ToolListChangedNotification(_)) => return,
            Some(_) => continue,
            None => panic!("the listen stream ended"),
        }
    }
}

/// A server watching `tools`, allowed to call the loopback stand-in.
async fn watching(tools: &std::path::Path) -> TestServer {
    let dir = tools.to_owned();
    TestServer::start_with(|config| {
        config.tools.dir = dir;
        config.tools.allow_private = true;
    })
    .await
}

async fn problems(server: &TestServer) -> Vec<String> {
    let body: Value = reqwest::get(server.http("/v1/tools")).await.unwrap().json().await.unwrap();
    serde_json::from_value(body["problems"].clone()).unwrap()
}

#[tokio::test]
async fn adding_changing_and_removing_a_manifest_notifies_every_client() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    let server = watching(tools.path()).await;
    let (legacy, mut inbox) = support::legacy_client(&server.url(), None).await;
    let (modern, _modern_inbox) = support::modern_client(&server.url(), None).await;
    let mut stream =
        modern.listen(SubscriptionFilter::builder().tools_list_changed().build()).await.unwrap();
    assert_eq!(stream.acknowledged().tools_list_changed, Some(true));
    assert!(!tool_names(&legacy).await.contains(&"echo_word".to_owned()));

    // Added.
    let path = write(
        tools.path(),
        "echo_word",
        &echo_manifest(&base, "echo_word", "inline", "Echo a word. Use when asked to echo."),
    );
    inbox.next_tools_changed().await;
    next_on_stream(&mut stream).await;
    assert!(tool_names(&legacy).await.contains(&"echo_word".to_owned()));
    assert!(tool_names(&modern).await.contains(&"echo_word".to_owned()));
    assert_eq!(text(&call(&legacy, "echo_word", json!({"word": "hi"})).await), "The echo says hi.");

    // Changed.
    write(
        tools.path(),
        "echo_word",
        &echo_manifest(&base, "echo_word", "inline", "Repeat a word. Use when asked to repeat."),
    );
    inbox.next_tools_changed().await;
    next_on_stream(&mut stream).await;
    assert_eq!(
        description(&modern, "echo_word").await.as_deref(),
        Some("Repeat a word. Use when asked to repeat.")
    );

    // Broken: reported with file, line and field; the previous version keeps serving.
    write(
        tools.path(),
        "echo_word",
        &echo_manifest(&base, "echo_word", "inline", "Repeat a word.")
            .replace("type = \"integer\"", "type = \"float\""),
    );
    let reported = async {
        loop {
            let found = problems(&server).await;
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let found =
        tokio::time::timeout(SOON, reported).await.expect("the broken manifest is reported");
    assert_eq!(found.len(), 1, "{found:?}");
    let line = 16; // `type = "float"` under [params.times]
    assert!(
        found[0].starts_with(&format!("{}:{line}: params.times.type", path.display())),
        "{found:?}"
    );
    assert!(found[0].contains("float"), "{found:?}");
    assert_eq!(
        description(&legacy, "echo_word").await.as_deref(),
        Some("Repeat a word. Use when asked to repeat.")
    );
    assert_eq!(
        text(&call(&legacy, "echo_word", json!({"word": "still"})).await),
        "The echo says still."
    );

    // Removed.
    std::fs::remove_file(&path).unwrap();
    inbox.next_tools_changed().await;
    next_on_stream(&mut stream).await;
    assert!(!tool_names(&legacy).await.contains(&"echo_word".to_owned()));
    let gone = legacy
        .call_tool(CallToolRequestParams::new("echo_word").with_arguments(support::args(json!({}))))
        .await
        .expect_err("the tool is gone");
    assert!(gone.to_string().contains("unknown tool `echo_word`"), "{gone}");
    assert!(problems(&server).await.is_empty());
    server.stop().await;
}

/// A manifest too long for the per-tool budget is held back like a broken one, with the
/// numbers, while the server keeps serving (adding a tool never stops a working server).
#[tokio::test]
async fn a_manifest_over_the_per_tool_budget_is_held_back_with_the_numbers() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    let server = watching(tools.path()).await;
    let (legacy, _inbox) = support::legacy_client(&server.url(), None).await;
    // Each part is within the manifest format's limits; together they cost too many tokens.
    let mut wordy =
        echo_manifest(&base, "echo_long", "inline", "Echo a word. Use when asked to echo.");
    for n in 0..12 {
        wordy.push_str(&format!(
            "\n[params.extra_{n}]\ntype = \"string\"\ndescription = \"An optional extra word number {n} to echo after the first\"\n"
        ));
    }
    write(tools.path(), "echo_long", &wordy);
    let refused = async {
        loop {
            let found = problems(&server).await;
            if found.iter().any(|problem| problem.contains("echo_long")) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let Ok(found) = tokio::time::timeout(SOON, refused).await else {
        panic!("the long manifest is reported: {:?}", problems(&server).await)
    };
    assert!(
        found.iter().any(|p| p.contains("echo_long")
            && p.contains("tokens, over the per-tool budget of 120, so it is not served")),
        "{found:?}"
    );
    assert!(!tool_names(&legacy).await.contains(&"echo_long".to_owned()));
    server.stop().await;
}
