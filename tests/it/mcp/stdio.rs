//! `offstage stdio`: the binary speaks MCP on stdin/stdout (logs on stderr only) while still
//! serving image URLs over HTTP.

use rmcp::{
    ServiceExt,
    transport::{ConfigureCommandExt, TokioChildProcess},
};
use serde_json::json;
use tokio::process::Command;

use crate::support::{
    Recorder, call, client_info, fetch_image, job_id, structured, wait_until_ended,
};

#[tokio::test]
async fn stdio_binary_generates_an_image_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let command = Command::new(env!("CARGO_BIN_EXE_offstage")).configure(|command| {
        command
            .args(["stdio", "--listen", "127.0.0.1:0", "--log", "debug"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "200ms")
            .env_remove("OPENAI_API_KEY");
    });
    let transport = TokioChildProcess::new(command).expect("spawn offstage stdio");
    let (recorder, _inbox) = Recorder::new(client_info());
    // Any non-JSON-RPC line on stdout (a stray log) would break this handshake.
    let client = recorder.serve(transport).await.expect("stdio handshake");
    // Run from the repository, it serves the built-in tools and the shipped manifests.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(
        names,
        ["cancel_job", "edit_image", "generate_image", "get_weather", "job_status", "web_search"]
    );
    let result =
        call(&client, "generate_image", json!({"prompt": "a paper boat", "size": "landscape"}))
            .await;
    let url = structured(&result)["image_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let view = wait_until_ended(&client, &job_id(&result)).await;
    assert_eq!(view["status"], "completed");
    let (_, _, image) = fetch_image(&url).await;
    assert_eq!((image.width(), image.height()), (1536, 1024));
    client.cancel().await.unwrap();
}
