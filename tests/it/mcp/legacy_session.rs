//! A legacy-era session (initialize → 2025-11-25) generates an image, subscribes to the job
//! resource, is told on its GET stream when it is done, reads it and downloads the image.

use rmcp::model::{
    ProtocolVersion, ReadResourceRequestParams, ResourceContents, SubscribeRequestParams,
};
use serde_json::{Value, json};

use crate::support::{
    TestServer, call, fetch_image, job_id, legacy_client, legacy_client_at, structured, text,
};

#[tokio::test]
async fn legacy_session_is_pushed_the_finished_job_and_downloads_the_image() {
    let server = TestServer::start().await;
    let (client, mut inbox) = legacy_client(&server.url(), None).await;
    let info = client.peer_info().expect("initialize result");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert!(info.capabilities.resources.as_ref().and_then(|r| r.subscribe).unwrap_or(false));

    let result = call(
        &client,
        "generate_image",
        json!({"prompt": "a red fox in the snow", "size": "portrait"}),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    let id = job_id(&result);
    let line = text(&result);
    assert!(line.chars().count() <= 200, "speakable line too long: {line}");
    assert!(line.contains(&id) && line.contains("Don't call generate_image again"), "{line}");
    assert_eq!(result.content.len(), 1, "one line, nothing a stack would dump as JSON");
    let view = structured(&result);
    assert_eq!(view["status"], "working");
    assert!(view["eta_ms"].as_u64().is_some_and(|eta| eta > 0));
    // The job is a resource under the advertised template.
    let templates = client.list_all_resource_templates().await.unwrap();
    assert_eq!(templates[0].uri_template, "offstage://jobs/{job_id}");
    let uri = format!("offstage://jobs/{id}");

    // The image URL works at once: a placeholder in the requested aspect ratio, never cached.
    let image_url = view["image_url"].as_str().unwrap().to_owned();
    let (kind, cache, placeholder) = fetch_image(&image_url).await;
    assert_eq!(kind, "image/png");
    assert_eq!(cache, "no-store");
    assert_eq!(placeholder.width() * 3, placeholder.height() * 2, "portrait placeholder is 2:3");

    #[allow(deprecated)]
    client.subscribe(SubscribeRequestParams::new(uri.clone())).await.expect("subscribe");
    assert_eq!(inbox.next_update().await, uri);

    let read =
        client.read_resource(ReadResourceRequestParams::new(uri.clone())).await.expect("read");
    let ResourceContents::TextResourceContents { text, mime_type, .. } = &read.contents[0] else {
        panic!("job resource is text: {read:?}");
    };
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    let job: Value = serde_json::from_str(text).unwrap();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["job_id"], id.as_str());
    assert_eq!(job["image_url"], image_url.as_str());

    let (kind, cache, image) = fetch_image(&image_url).await;
    assert_eq!(kind, "image/png");
    assert!(cache.contains("immutable"), "final image is cacheable: {cache}");
    assert_eq!((image.width(), image.height()), (1024, 1536));
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn subscribing_after_the_job_ended_still_announces_it() {
    let server = TestServer::start().await;
    let (client, mut inbox) = legacy_client(&server.url(), None).await;
    let result = call(&client, "generate_image", json!({"prompt": "a lighthouse"})).await;
    let id = job_id(&result);
    let done = call(&client, "job_status", json!({"job_id": id, "wait_ms": 15000})).await;
    assert_eq!(structured(&done)["status"], "completed");
    let uri = format!("offstage://jobs/{id}");
    #[allow(deprecated)]
    client.subscribe(SubscribeRequestParams::new(uri.clone())).await.unwrap();
    assert_eq!(inbox.next_update().await, uri);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn every_legacy_protocol_version_is_served() {
    let server = TestServer::start().await;
    for version in [
        ProtocolVersion::V_2025_03_26,
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_11_25,
    ] {
        let (client, _inbox) = legacy_client_at(&server.url(), None, version.clone()).await;
        assert_eq!(client.peer_info().unwrap().protocol_version, version);
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
        assert_eq!(names, ["cancel_job", "edit_image", "generate_image", "job_status"]);
        let templates = client.list_all_resource_templates().await.unwrap();
        let uris: Vec<_> = templates.iter().map(|t| t.uri_template.as_str()).collect();
        assert_eq!(uris, ["offstage://jobs/{job_id}"]);
        let result = call(&client, "generate_image", json!({"prompt": "a kite"})).await;
        assert_eq!(structured(&result)["status"], "working", "{version:?}");
        client.cancel().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn ending_a_session_answers_204_and_the_session_is_gone() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let response = http
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
    let in_session = |request: reqwest::RequestBuilder| {
        request
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
    };
    let ended = in_session(http.delete(server.url())).send().await.unwrap();
    // mcp 2.x (openai-agents, pipecat, LiveKit) warns on anything but 200 or 204.
    assert_eq!(ended.status(), 204);
    assert!(ended.bytes().await.unwrap().is_empty());
    let after = in_session(http.post(server.url())).body(ping).send().await.unwrap();
    assert_eq!(after.status(), 404, "the session is gone");
    server.stop().await;
}
