//! Manifest tools through the real server: listed with compact schemas, run inline and as jobs
//! through the full push path, timed out cleanly, bad arguments refused as tool errors; the
//! shipped `tools/*.toml` against local stand-ins of their APIs.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use axum::{Json, Router, extract::Query, http::HeaderMap, routing::get};
use rmcp::model::{CallToolRequestParams, CallToolResponse, GetTaskParams, TaskStatus};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{self, SOON, TestServer, call, job_id, structured, text};

/// A local HTTP API: `/echo` returns its query, `/slow` answers after 30 s, `/forecast` and
/// `/res/v1/web/search` speak Open-Meteo's and Brave Search's documented shapes.
pub(super) async fn stand_in() -> String {
    async fn echo(Query(query): Query<Value>) -> Json<Value> {
        Json(json!({ "data": { "echo": query } }))
    }
    async fn slow() -> Json<Value> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Json(json!({}))
    }
    async fn forecast(Query(query): Query<Value>) -> Json<Value> {
        Json(json!({
            "latitude": query["latitude"], "longitude": query["longitude"],
            "generationtime_ms": 0.03, "utc_offset_seconds": 0, "timezone": "GMT",
            "current_units": {"time": "iso8601", "interval": "seconds",
                "temperature_2m": "°C", "wind_speed_10m": "km/h", "weather_code": "wmo code"},
            "current": {"time": "2026-11-30T06:00", "interval": 900,
                "temperature_2m": 3.4, "wind_speed_10m": 12.2, "weather_code": 3}
        }))
    }
    async fn search(headers: HeaderMap, Query(query): Query<Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        if headers.get("x-subscription-token").and_then(|v| v.to_str().ok()) != Some("brave-key") {
            let body = json!({"type": "ErrorResponse", "error": {"id": "x", "status": 401,
                "code": "SUBSCRIPTION_TOKEN_INVALID", "detail": "The provided subscription token is invalid."}});
            return (axum::http::StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
        Json(json!({"type": "search", "query": {"original": query["q"]}, "web": {"type": "search",
            "results": [{"title": "Red fox", "url": "https://example.org/fox",
                "description": "The red fox is the largest of the true foxes."}]}}))
        .into_response()
    }
    let app = Router::new()
        .route("/echo", get(echo))
        .route("/slow", get(slow))
        .route("/v1/forecast", get(forecast))
        .route("/res/v1/web/search", get(search));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    // Written whole, then renamed: the watcher never sees half a file.
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    path
}

pub(super) fn echo_manifest(base: &str, name: &str, mode: &str, description: &str) -> String {
    format!(
        r#"name = "{name}"
description = "{description}"
mode = "{mode}"
timeout = "5s"

[annotations]
read_only = true
idempotent = true

[params.word]
type = "string"
description = "A word to echo"
required = true

[params.times]
type = "integer"
min = 1
max = 3

[say]
started = "Echoing {{{{ word }}}}"
finished = "The echo says {{{{ result.word }}}}."

[http]
method = "GET"
url = "{base}/echo"
query = {{ word = "{{{{ word }}}}" }}
result = "/data/echo"
"#
    )
}

/// A server whose manifests live in `tools`, allowed to call the loopback stand-in.
async fn server_with(tools: &Path) -> TestServer {
    let tools = tools.to_owned();
    TestServer::start_with(move |config| {
        config.tools.dir = tools;
        config.tools.allow_private = true;
        // More tools than a voice profile should carry: the built-ins plus every test manifest.
        config.tools.budgets.tools_per_profile = 8;
        config.tools.budgets.per_profile = 1000;
        config.tools.secrets.given.insert("BRAVE_SEARCH_API_KEY".into(), "brave-key".into());
    })
    .await
}

#[tokio::test]
async fn manifest_tools_are_listed_and_answer_inline() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    write(
        tools.path(),
        "echo_word",
        &echo_manifest(&base, "echo_word", "inline", "Echo a word. Use when asked to echo."),
    );
    let server = server_with(tools.path()).await;
    let (client, _inbox) = support::legacy_client(&server.url(), None).await;

    let listed = client.list_all_tools().await.unwrap();
    let echo = listed.iter().find(|tool| tool.name == "echo_word").expect("listed");
    let schema = serde_json::to_value(&*echo.input_schema).unwrap();
    assert_eq!(
        schema,
        json!({"type": "object", "properties": {
            "word": {"type": "string", "description": "A word to echo"},
            "times": {"type": "integer", "minimum": 1, "maximum": 3}},
            "required": ["word"]})
    );
    // Closed all the same: the server refuses arguments the manifest does not declare.
    let stray = call(&client, "echo_word", json!({"word": "hi", "loud": true})).await;
    assert_eq!(stray.is_error, Some(true), "{stray:?}");
    assert!(text(&stray).contains("`loud` is not a parameter"), "{stray:?}");
    assert!(listed.iter().any(|tool| tool.name == "generate_image"), "built-ins stay");

    let result = call(&client, "echo_word", json!({"word": "  fox "})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert_eq!(text(&result), "The echo says fox.");
    assert_eq!(structured(&result)["result"], json!({"word": "fox"}));

    let wrong = call(&client, "echo_word", json!({"word": "fox", "times": "many"})).await;
    assert_eq!(wrong.is_error, Some(true));
    assert!(text(&wrong).contains("`times`"), "{}", text(&wrong));
    assert_eq!(structured(&wrong)["error"]["code"], "invalid_arguments");
    let missing = call(&client, "echo_word", json!({})).await;
    assert_eq!(missing.is_error, Some(true));
    assert!(text(&missing).contains("`word` is required"), "{}", text(&missing));
    server.stop().await;
}

#[tokio::test]
async fn a_job_manifest_goes_through_the_push_path() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    write(
        tools.path(),
        "echo_later",
        &echo_manifest(
            &base,
            "echo_later",
            "job",
            "Echo a word later. Use when asked to echo slowly.",
        ),
    );
    let server = server_with(tools.path()).await;
    let mut events = server.events(None, "", None).await;
    let (client, _inbox) = support::legacy_client(&server.url(), None).await;

    let started = call(&client, "echo_later", json!({"word": "owl"})).await;
    assert!(text(&started).starts_with("Echoing owl, ready in about"), "{}", text(&started));
    assert!(text(&started).contains("Don't call echo_later again"));
    let id = job_id(&started);

    // The host app's event stream carries the finished line and the result.
    let ended = loop {
        let event = events.next().await;
        let body = event.json();
        if body["job"]["job_id"] == id.as_str() && body["job"]["status"] != "working" {
            break body;
        }
    };
    assert_eq!(ended["job"]["status"], "completed", "{ended}");
    assert_eq!(ended["say"], "The echo says owl.");
    assert_eq!(ended["job"]["result"], json!({"word": "owl"}));
    let (status, view) = server.job_json(None, &id).await;
    assert_eq!((status, &view["result"]), (200, &json!({"word": "owl"})));
    // And a model asking for it gets the same.
    let status = support::wait_until_ended(&client, &id).await;
    assert_eq!(status["result"], json!({"word": "owl"}));

    // A task-capable 2026 client gets a task for the same tool, with no code in the tool.
    let (tasks, _) = support::tasks_client(&server.url(), None).await;
    let params = CallToolRequestParams::new("echo_later")
        .with_arguments(support::args(json!({"word": "lark"})));
    let CallToolResponse::Task(created) = tasks.call_tool_once(params).await.unwrap() else {
        panic!("a task-capable request to a job tool gets a task")
    };
    let task_id = created.task.task_id;
    let deadline = tokio::time::Instant::now() + SOON;
    let done = loop {
        let got = tasks.get_task(GetTaskParams::new(task_id.clone())).await.unwrap();
        if got.task.status() != TaskStatus::Working {
            break serde_json::to_value(&got).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "task never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["result"]["content"][0]["text"], "The echo says lark.", "{done}");
    assert_eq!(done["result"]["structuredContent"]["result"], json!({"word": "lark"}));
    server.stop().await;
}

#[tokio::test]
async fn commands_run_without_a_shell_and_time_out_cleanly() {
    let tools = tempfile::tempdir().unwrap();
    write(
        tools.path(),
        "echo_args",
        r#"
name = "echo_args"
description = "Echo arguments. Use when testing."
mode = "job"
timeout = "5s"

[params.text]
type = "string"
required = true

[command]
program = "/bin/cat"
"#,
    );
    write(
        tools.path(),
        "nap",
        r#"
name = "nap"
description = "Sleep. Use when testing timeouts."
mode = "job"
timeout = "1s"

[command]
program = "/bin/sleep"
args = ["30"]
"#,
    );
    write(
        tools.path(),
        "quick_nap",
        r#"
name = "quick_nap"
description = "Sleep inline. Use when testing timeouts."
timeout = "1s"

[http]
method = "GET"
url = "http://127.0.0.1:9/never"
"#,
    );
    let server = server_with(tools.path()).await;
    let (client, _inbox) = support::legacy_client(&server.url(), None).await;

    let listed = client.list_all_tools().await.unwrap();
    let echo =
        listed.iter().find(|tool| tool.name == "echo_args").expect("command tools are listed");
    let schema = serde_json::to_value(&*echo.input_schema).unwrap();
    assert_eq!(schema["required"], json!(["text"]), "{schema}");

    let hostile = "$(id); rm -rf / `whoami` \"'";
    let started = call(&client, "echo_args", json!({"text": hostile})).await;
    let done = server.wait_ended_quietly(None, &job_id(&started)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], json!({"text": hostile}), "stdin JSON, verbatim");

    let at = tokio::time::Instant::now();
    let napping = call(&client, "nap", json!({})).await;
    let failed = server.wait_ended_quietly(None, &job_id(&napping)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("within 1s"), "{failed}");
    assert!(at.elapsed() < SOON, "stopped at its timeout, not after the program's 30 s");

    // An inline call that cannot connect fails as a tool error, not a protocol error.
    let refused = call(&client, "quick_nap", json!({})).await;
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    server.stop().await;
}

#[tokio::test]
async fn an_inline_call_past_its_timeout_is_a_timeout_error() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    write(
        tools.path(),
        "slow_answer",
        &format!(
            r#"
name = "slow_answer"
description = "Answer slowly. Use when testing."
timeout = "1s"

[http]
method = "GET"
url = "{base}/slow"
"#
        ),
    );
    let server = server_with(tools.path()).await;
    let (client, _inbox) = support::legacy_client(&server.url(), None).await;
    let at = tokio::time::Instant::now();
    let result = call(&client, "slow_answer", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(structured(&result)["error"]["code"], "timeout", "{}", text(&result));
    assert!(at.elapsed() < Duration::from_secs(5), "answered at the bound: {:?}", at.elapsed());
    server.stop().await;
}

/// The shipped manifest with its public API's origin replaced by the stand-in's.
fn shipped(name: &str, origin: &str, base: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(format!("{name}.toml"));
    std::fs::read_to_string(path).unwrap().replace(origin, base)
}

#[tokio::test]
async fn the_shipped_examples_work_against_their_apis() {
    let base = stand_in().await;
    let tools = tempfile::tempdir().unwrap();
    write(
        tools.path(),
        "get_weather",
        &shipped("get_weather", "https://api.open-meteo.com", &base),
    );
    write(
        tools.path(),
        "web_search",
        &shipped("web_search", "https://api.search.brave.com", &base),
    );
    let server = server_with(tools.path()).await;
    let (client, _inbox) = support::legacy_client(&server.url(), None).await;

    let weather = call(
        &client,
        "get_weather",
        json!({"latitude": 52.52, "longitude": 13.41, "place": "Berlin"}),
    )
    .await;
    assert_ne!(weather.is_error, Some(true), "{}", text(&weather));
    assert!(
        text(&weather).contains("Berlin") && text(&weather).contains('3'),
        "{}",
        text(&weather)
    );

    let search = call(&client, "web_search", json!({"query": "red fox"})).await;
    assert_ne!(search.is_error, Some(true), "{}", text(&search));
    let done = if structured(&search).get("job_id").is_some() {
        server.wait_ended_quietly(None, &job_id(&search)).await
    } else {
        structured(&search).clone()
    };
    assert!(done.to_string().contains("https://example.org/fox"), "{done}");
    server.stop().await;
}
