//! Profiles: named tool subsets at `/mcp/{profile}` (or chosen by header on `/mcp`), so one
//! deployment serves several agents; tools outside a profile do not exist for its callers.

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::support::{self, TestServer, call, text};

async fn names(client: &support::Client) -> Vec<String> {
    let tools = client.list_all_tools().await.unwrap();
    tools.iter().map(|tool| tool.name.to_string()).collect()
}

#[tokio::test]
async fn each_profile_serves_its_own_tools() {
    let server = TestServer::start_with(|config| {
        config
            .tools
            .profiles
            .insert("status".into(), vec!["job_status".into(), "cancel_job".into()]);
    })
    .await;
    let (default, _) = support::legacy_client(&server.url(), None).await;
    assert_eq!(
        names(&default).await,
        ["cancel_job", "edit_image", "generate_image", "job_status"],
        "voice: all"
    );

    let by_path = format!("{}/status", server.url());
    let (status, _) = support::modern_client(&by_path, None).await;
    assert_eq!(names(&status).await, ["cancel_job", "job_status"]);
    // Outside the profile a tool does not exist: the error names what the profile has.
    let outside = status
        .call_tool(
            CallToolRequestParams::new("generate_image")
                .with_arguments(support::args(json!({"prompt": "a fox"}))),
        )
        .await
        .expect_err("not in this profile");
    let message = outside.to_string();
    assert!(message.ends_with("this server has: cancel_job, job_status"), "{message}");
    assert!(!text(&call(&status, "job_status", json!({"job_id": "x"})).await).is_empty());
    let (by_header, _) =
        support::legacy_client_with(&server.url(), None, &[("offstage-profile", "status")]).await;
    assert_eq!(names(&by_header).await, ["cancel_job", "job_status"]);

    let missing = reqwest::Client::new()
        .post(format!("{}/nope", server.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_profile");
    assert!(body["error"]["message"].as_str().unwrap().contains("status, voice"), "{body}");
    server.stop().await;
}
