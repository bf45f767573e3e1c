//! A conversation (named by the host app's `Offstage-Conversation` header, or else the MCP
//! session) hears about each finished job once, at the top of its next result; repeated calls
//! return the job already under way; its delivery hint shapes the realtime payloads.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Client, TestServer, call, job_id, legacy_client, legacy_client_with, structured, text,
};

const RED_FOX: &str = "The image of \u{201c}a red fox\u{201d} is ready.";

async fn generate(client: &Client, prompt: &str) -> rmcp::model::CallToolResult {
    call(client, "generate_image", json!({"prompt": prompt})).await
}

/// The lines before the tool's own text.
fn announcements(result: &rmcp::model::CallToolResult) -> Vec<String> {
    let text = text(result);
    text.lines()
        .take_while(|line| {
            !line.starts_with("Making the image")
                && !line.starts_with("That image")
                && !line.starts_with("Job ")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn finished_jobs_lead_the_next_result_once_per_conversation() {
    let server = TestServer::start().await;
    let conversation = [("Offstage-Conversation", "call-7")];
    let (voice, _) = legacy_client_with(&server.url(), None, &conversation).await;
    let (other, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "call-8")]).await;

    let fox = job_id(&generate(&voice, "a red fox").await);
    // Only the host app looks (the HTTP view tells no conversation anything).
    server.wait_ended_quietly(None, &fox).await;

    let next = generate(&voice, "a blue whale").await;
    assert_eq!(announcements(&next), vec![RED_FOX.to_owned()], "{}", text(&next));
    assert!(text(&next).contains("Making the image now"), "the call's own answer follows");
    assert_eq!(structured(&next)["status"], "working", "structured content is the call's own");

    // Told once: neither the next call nor another tool repeats it.
    let status = call(&voice, "job_status", json!({"job_id": job_id(&next)})).await;
    assert!(!text(&status).contains("red fox"), "{}", text(&status));
    // Another conversation of the same token never hears of it.
    let elsewhere = generate(&other, "a green frog").await;
    assert!(announcements(&elsewhere).is_empty(), "{}", text(&elsewhere));

    // A job the conversation already learned about through job_status is not announced again.
    let whale = job_id(&next);
    let told = call(&voice, "job_status", json!({"job_id": whale, "wait_ms": 10000})).await;
    assert_eq!(structured(&told)["status"], "completed");
    let after = generate(&voice, "a grey heron").await;
    assert!(announcements(&after).is_empty(), "{}", text(&after));

    // Asking about a job that ended unannounced tells its ending once, not as news and again.
    let heron = job_id(&after);
    server.wait_ended_quietly(None, &heron).await;
    let asked = call(&voice, "job_status", json!({"job_id": heron})).await;
    assert_eq!(text(&asked).lines().count(), 1, "{}", text(&asked));
    assert!(text(&asked).starts_with("The image is ready: http"), "{}", text(&asked));
    let later = generate(&voice, "a white swan").await;
    assert!(announcements(&later).is_empty(), "it was told: {}", text(&later));
    voice.cancel().await.unwrap();
    other.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_host_app_that_delivers_endings_itself_turns_piggy_back_off() {
    let server = TestServer::start().await;
    let quiet = [("Offstage-Conversation", "call-9"), ("Offstage-Piggyback", "off")];
    let (voice, _) = legacy_client_with(&server.url(), None, &quiet).await;

    let fox = job_id(&generate(&voice, "a red fox").await);
    server.wait_ended_quietly(None, &fox).await;
    let next = generate(&voice, "a blue whale").await;
    assert!(announcements(&next).is_empty(), "the app said it tells it: {}", text(&next));
    voice.cancel().await.unwrap();

    // Not marked as told: the same conversation without the header still hears of it once.
    let (loud, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "call-9")]).await;
    let later = generate(&loud, "a grey heron").await;
    assert_eq!(announcements(&later), vec![RED_FOX.to_owned()], "{}", text(&later));
    loud.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn without_a_header_the_mcp_session_is_the_conversation() {
    let server = TestServer::start().await;
    let (session, _) = legacy_client(&server.url(), None).await;
    let (another, _) = legacy_client(&server.url(), None).await;
    let fox = job_id(&generate(&session, "a red fox").await);
    server.wait_ended_quietly(None, &fox).await;
    assert!(announcements(&generate(&another, "a cat").await).is_empty());
    let next = generate(&session, "a dog").await;
    assert_eq!(announcements(&next), vec![RED_FOX.to_owned()], "{}", text(&next));
    session.cancel().await.unwrap();
    another.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_call_returns_the_job_already_under_way() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = Duration::from_secs(5).into()
    })
    .await;
    let (voice, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "call-9")]).await;
    let (other, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "call-10")]).await;
    let first = generate(&voice, "a red fox").await;
    let job = job_id(&first);
    assert!(structured(&first).get("duplicate").is_none());

    // Case and spacing do not make a call new.
    let again = generate(&voice, "  A red   FOX ").await;
    assert_eq!(job_id(&again), job);
    assert_eq!(structured(&again)["duplicate"], true);
    assert!(text(&again).contains("already being made"), "{}", text(&again));
    // A different size, prompt or conversation does.
    let wide =
        call(&voice, "generate_image", json!({"prompt": "a red fox", "size": "landscape"})).await;
    assert_ne!(job_id(&wide), job);
    assert_ne!(job_id(&generate(&voice, "a red fox at night").await), job);
    assert_ne!(job_id(&generate(&other, "a red fox").await), job);

    // Once cancelled, asking again means trying again.
    let cancelled = call(&voice, "cancel_job", json!({"job_id": job})).await;
    assert_eq!(structured(&cancelled)["status"], "cancelled");
    let retried = generate(&voice, "a red fox").await;
    assert_ne!(job_id(&retried), job);
    assert!(structured(&retried).get("duplicate").is_none());
    voice.cancel().await.unwrap();
    other.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn repeats_outside_the_window_start_a_new_job() {
    let server = TestServer::start_with(|config| {
        config.push.dedupe_window = Duration::from_millis(300).into()
    })
    .await;
    let (voice, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "call-11")]).await;
    let job = job_id(&generate(&voice, "a red fox").await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(job_id(&generate(&voice, "a red fox").await), job);
    voice.cancel().await.unwrap();
    server.stop().await;
}

/// The completion event a host app receives for the first job of `client`.
async fn completion_event(server: &TestServer, client: &Client, prompt: &str) -> Value {
    let job = job_id(&generate(client, prompt).await);
    let mut stream = server.events(None, &format!("?job={job}&after=0"), None).await;
    loop {
        let event = stream.next().await;
        event.event(); // matches schemas/event.json
        let event = event.json();
        if event["type"] != "job.created" {
            return event;
        }
    }
}

fn openai_types(event: &Value) -> Vec<&str> {
    event["realtime"]["openai"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn delivery_hints_come_from_the_tool_and_the_conversation_header() {
    let server = TestServer::start_with(|config| {
        config
            .push
            .tools
            .insert("generate_image".to_owned(), offstage::config::DeliveryHint::Interrupt);
    })
    .await;
    let (by_tool, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "a")]).await;
    let (quiet, _) = legacy_client_with(
        &server.url(),
        None,
        &[("Offstage-Conversation", "b"), ("Offstage-Delivery", "silent")],
    )
    .await;

    let loud = completion_event(&server, &by_tool, "a trumpet").await;
    assert_eq!(loud["type"], "job.completed");
    assert_eq!(loud["delivery"], "interrupt");
    assert_eq!(loud["conversation"], "a");
    assert_eq!(
        openai_types(&loud),
        ["response.cancel", "conversation.item.create", "response.create"]
    );
    assert_eq!(loud["realtime"]["gemini"]["client_content"]["clientContent"]["turnComplete"], true);

    let silent = completion_event(&server, &quiet, "a whisper").await;
    assert_eq!(silent["delivery"], "silent");
    assert_eq!(openai_types(&silent), ["conversation.item.create"]);
    assert_eq!(
        silent["realtime"]["gemini"]["client_content"]["clientContent"]["turnComplete"],
        false
    );
    let item = &silent["realtime"]["openai"][0]["item"];
    assert_eq!(item["content"][1]["type"], "input_image");
    assert_eq!(item["content"][1]["image_url"], silent["job"]["image_url"]);

    // A bad hint is refused before anything runs.
    let response = reqwest::Client::new()
        .post(server.url())
        .header("offstage-delivery", "loudly")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("when_idle"), "{body}");
    by_tool.cancel().await.unwrap();
    quiet.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_realtime_call_id_in_meta_answers_that_function_call() {
    let server = TestServer::start().await;
    let mut meta = crate::support::modern_meta(json!({}));
    meta["offstage/call_id"] = json!("fc_17");
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "generate_image", "arguments": {"prompt": "a hot-air balloon"}, "_meta": meta}});
    let response = crate::support::raw_request(
        &server.url(),
        None,
        "tools/call",
        Some("generate_image"),
        body,
    )
    .header("offstage-conversation", "gemini-session-1")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let reply = crate::support::rpc_reply(response).await;
    let job = reply["result"]["structuredContent"]["job_id"].as_str().expect("a job").to_owned();

    let mut stream = server.events(None, &format!("?job={job}&after=0"), None).await;
    let done = loop {
        let event = stream.next().await.json();
        if event["type"] != "job.created" {
            break event;
        }
    };
    assert_eq!(done["conversation"], "gemini-session-1");
    let gemini = &done["realtime"]["gemini"];
    let answer = &gemini["tool_response"]["toolResponse"]["functionResponses"][0];
    assert_eq!(answer["id"], "fc_17", "{gemini}");
    assert_eq!(answer["name"], "generate_image");
    assert_eq!(answer["willContinue"], false);
    assert_eq!(answer["scheduling"], "WHEN_IDLE");
    assert_eq!(answer["response"]["output"]["job_id"], job.as_str(), "{answer}");
    server.stop().await;
}
