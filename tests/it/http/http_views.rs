//! The HTTP surface: job JSON and image views, health, and the guards in front of them
//! (bearer tokens, Host and Origin allow-lists). Every error is a JSON body.

use serde_json::{Value, json};

use crate::support::{TestServer, call, fetch_image, job_id, modern_client, structured};

async fn json_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    assert!(
        response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
        "errors are JSON"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn placeholders_match_every_size_and_finished_images_are_cacheable() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = std::time::Duration::from_secs(2).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let mut ids = Vec::new();
    for (size, ratio) in [("square", 1.0), ("portrait", 2.0 / 3.0), ("landscape", 1.5)] {
        let result =
            call(&client, "generate_image", json!({"prompt": "a tree", "size": size})).await;
        let url = structured(&result)["image_url"].as_str().unwrap().to_owned();
        let (kind, cache, image) = fetch_image(&url).await;
        assert_eq!((kind.as_str(), cache.as_str()), ("image/png", "no-store"));
        let actual = f64::from(image.width()) / f64::from(image.height());
        assert!((actual - ratio).abs() < 1e-9, "{size}: {}x{}", image.width(), image.height());
        ids.push(job_id(&result));
    }
    let view = crate::support::wait_until_ended(&client, &ids[2]).await;
    assert_eq!(view["status"], "completed");
    let url = view["image_url"].as_str().unwrap();
    let response = reqwest::get(url).await.unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["offstage-job-status"], "completed");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 1536);
    let revalidated =
        reqwest::Client::new().get(url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(revalidated.status(), 304);

    let job: Value = reqwest::get(server.http(&format!("/v1/jobs/{}", ids[2])))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job, view, "GET /v1/jobs/{{id}} shows the same fields as job_status");
    json_error(
        reqwest::get(server.http("/v1/jobs/01jzzzzzzzzzzzzzzzzzzzzzzz/image")).await.unwrap(),
        404,
        "job_not_found",
    )
    .await;
    json_error(reqwest::get(server.http("/v1/jobs/nope")).await.unwrap(), 404, "job_not_found")
        .await;
    json_error(reqwest::get(server.http("/nowhere")).await.unwrap(), 404, "not_found").await;
    let health: Value = reqwest::get(server.http("/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn failed_jobs_serve_a_failure_image() {
    let server = TestServer::start_with(|config| {
        config.jobs.timeout = std::time::Duration::from_millis(100).into();
        config.providers.sketch.latency = std::time::Duration::from_secs(5).into();
    })
    .await;
    let (client, _) = modern_client(&server.url(), None).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "too slow"})).await);
    let view = crate::support::wait_until_ended(&client, &id).await;
    assert_eq!(view["status"], "failed");
    assert!(view["error"].as_str().unwrap().contains("took longer"), "{view}");
    let response = reqwest::get(view["image_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["offstage-job-status"], "failed");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let failure = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    let placeholder = image::load_from_memory(&offstage::images::placeholder::placeholder_png(
        offstage::images::placeholder::PlaceholderKind::InProgress,
        offstage::images::ImageSize::Square,
    ))
    .unwrap();
    assert_ne!(
        failure.to_rgb8().into_raw(),
        placeholder.to_rgb8().into_raw(),
        "failure differs from in-progress"
    );
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_required_when_set_and_isolate_owners() {
    let server = TestServer::start_with(|config| {
        config.security.tokens = vec!["alpha-secret".to_owned(), "beta-secret".to_owned()];
    })
    .await;
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    for token in [None, Some("Bearer wrong"), Some("alpha-secret")] {
        let mut request = http
            .post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string());
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        json_error(response, 401, "unauthorized").await;
    }

    let (alpha, _) = modern_client(&server.url(), Some("alpha-secret")).await;
    let (beta, _) = modern_client(&server.url(), Some("beta-secret")).await;
    let result = call(&alpha, "generate_image", json!({"prompt": "private"})).await;
    let id = job_id(&result);
    let image_url = structured(&result)["image_url"].as_str().unwrap().to_owned();
    for tool in ["job_status", "cancel_job"] {
        let stolen = call(&beta, tool, json!({"job_id": id})).await;
        assert_eq!(stolen.is_error, Some(true), "{tool} across tokens");
        assert_eq!(structured(&stolen)["error"]["code"], "job_not_found");
    }
    let job_url = server.http(&format!("/v1/jobs/{id}"));
    json_error(http.get(&job_url).send().await.unwrap(), 401, "unauthorized").await;
    json_error(
        http.get(&job_url).bearer_auth("beta-secret").send().await.unwrap(),
        404,
        "job_not_found",
    )
    .await;
    let mine: Value =
        http.get(&job_url).bearer_auth("alpha-secret").send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["job_id"], id.as_str());
    // The image URL is a capability: fetchable without the token by whoever holds it.
    assert_eq!(http.get(&image_url).send().await.unwrap().status(), 200);
    assert_eq!(http.get(server.http("/healthz")).send().await.unwrap().status(), 200);
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused_on_every_route() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for path in ["/mcp", "/healthz", "/v1/jobs/01jzzzzzzzzzzzzzzzzzzzzzzz/image"] {
        let response =
            http.get(server.http(path)).header("host", "evil.example").send().await.unwrap();
        json_error(response, 403, "forbidden_host").await;
        let response = http
            .get(server.http(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        json_error(response, 403, "forbidden_origin").await;
    }
    let local = http
        .get(server.http("/healthz"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    server.stop().await;
}
