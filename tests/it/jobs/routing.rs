//! Provider routing through the whole job path: fallback to the next provider, per-provider
//! attempts, a refused prompt that stops the route, and the attempts each job records.

use std::time::Duration;

use offstage::config::RoutePolicy;
use serde_json::{Value, json};

use crate::{
    providers::{gemini::standin as gemini_standin, openai::standin as openai_standin},
    support::{TestServer, call, fetch_image, job_id, modern_client, wait_until_ended},
};

/// OpenAI first (against its stand-in), then whatever `fallback` says.
async fn server(
    openai: &openai_standin::StandIn,
    fallback: Vec<&'static str>,
    openai_attempts: u32,
    gemini_base: Option<String>,
) -> TestServer {
    let base_url = openai.base_url.clone();
    TestServer::start_with(move |config| {
        config.provider = "openai";
        config.fallback = fallback;
        config.providers.openai.api_key = Some("sk-test-secret".into());
        config.providers.openai.base_url = base_url;
        config.providers.openai.request_timeout = Duration::from_millis(500).into();
        if let Some(base) = gemini_base {
            config.providers.gemini.api_key = Some("AIza-test-secret".into());
            config.providers.gemini.base_url = base;
        }
        config.routing.insert(
            "openai".to_owned(),
            RoutePolicy { attempts: Some(openai_attempts), ..RoutePolicy::default() },
        );
        config.jobs.retry_base = Duration::from_millis(10).into();
        config.providers.sketch.latency = Duration::ZERO.into();
    })
    .await
}

async fn run(server: &TestServer) -> Value {
    let (client, _) = modern_client(&server.url(), None).await;
    let started = call(&client, "generate_image", json!({"prompt": "a red fox"})).await;
    assert_eq!(started.is_error, Some(false));
    let view = wait_until_ended(&client, &job_id(&started)).await;
    client.cancel().await.unwrap();
    view
}

fn attempts(view: &Value) -> Vec<(String, String)> {
    view["provider"]["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts recorded: {view}"))
        .iter()
        .map(|a| {
            (a["provider"].as_str().unwrap().to_owned(), a["outcome"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn pair(provider: &str, outcome: &str) -> (String, String) {
    (provider.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn a_rejected_key_falls_back_to_the_next_provider() {
    let openai = openai_standin::spawn(vec![openai_standin::Reply::unauthorized()]).await;
    let server = server(&openai, vec!["sketch"], 3, None).await;
    let view = run(&server).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(openai.hits(), 1, "a rejected key is not retried");
    assert_eq!(view["provider"]["name"], "sketch");
    assert_eq!(attempts(&view), [pair("openai", "provider_unauthorized"), pair("sketch", "ok")]);
    let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
    assert_eq!((image.width(), image.height()), (1024, 1024), "the fallback's image is served");
    server.stop().await;
}

#[tokio::test]
async fn server_errors_use_the_providers_attempts_then_fall_back() {
    let openai = openai_standin::spawn(vec![openai_standin::Reply::server_error(503)]).await;
    let gemini = gemini_standin::spawn(vec![gemini_standin::Reply::Image]).await;
    let server = server(&openai, vec!["gemini"], 2, Some(gemini.base_url.clone())).await;
    let view = run(&server).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(openai.hits(), 2, "routing.openai.attempts = 2");
    assert_eq!(gemini.requests().len(), 1);
    assert_eq!(view["provider"]["name"], "gemini");
    assert_eq!(view["provider"]["model"], "gemini-2.5-flash-image");
    assert_eq!(
        attempts(&view),
        [
            pair("openai", "provider_unavailable"),
            pair("openai", "provider_unavailable"),
            pair("gemini", "ok")
        ]
    );
    let took: Vec<u64> = view["provider"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["at_ms"].as_u64().unwrap())
        .collect();
    assert!(took.windows(2).all(|w| w[0] <= w[1]), "attempts are in order: {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_refused_prompt_fails_speakably_without_trying_other_providers() {
    let openai = openai_standin::spawn(vec![openai_standin::Reply::moderation_blocked()]).await;
    let server = server(&openai, vec!["sketch"], 3, None).await;
    let view = run(&server).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(openai.hits(), 1);
    assert_eq!(attempts(&view), [pair("openai", "content_refused")], "sketch was never asked");
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("describing it differently"), "{error}");
    assert!(error.split_whitespace().count() < 40, "short enough to say: {error}");
    server.stop().await;
}

#[tokio::test]
async fn when_every_provider_fails_the_job_records_each_attempt() {
    let openai = openai_standin::spawn(vec![openai_standin::Reply::insufficient_quota()]).await;
    let gemini = gemini_standin::spawn(vec![gemini_standin::Reply::server_error(500)]).await;
    let server = server(&openai, vec!["gemini"], 1, Some(gemini.base_url.clone())).await;
    let view = run(&server).await;
    assert_eq!(view["status"], "failed", "{view}");
    let recorded = attempts(&view);
    assert_eq!(recorded[0], pair("openai", "provider_quota_exhausted"));
    assert!(recorded[1..].iter().all(|a| a == &pair("gemini", "provider_unavailable")));
    assert_eq!(recorded.len(), 1 + gemini.requests().len());
    assert!(
        view["error"].as_str().unwrap().contains("try again shortly"),
        "a transient reason is told over a permanent one: {view}"
    );
    let (status, body) = server.job_json(None, view["job_id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["provider"], view["provider"], "every view shows the same record");
    server.stop().await;
}

/// A PNG that claims a 100000 x 100000 canvas in its header (a few dozen bytes).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13_u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test]
async fn a_broken_image_is_that_providers_failure_and_falls_back() {
    use std::sync::Arc;

    let whole = openai_standin::png(1024, 1024);
    let mut oversized = whole.clone();
    oversized.resize(3 * 1024 * 1024, 0);
    let broken = [
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("not an image", b"certainly not a PNG".to_vec()),
        ("over images.max_bytes", oversized),
        ("a 100000x100000 header", png_claiming(100_000, 100_000)),
    ];
    for (what, bytes) in broken {
        let openai =
            openai_standin::spawn(vec![openai_standin::Reply::Bytes(Arc::new(bytes))]).await;
        let base_url = openai.base_url.clone();
        let server = TestServer::start_with(move |config| {
            config.provider = "openai";
            config.fallback = vec!["sketch"];
            config.providers.openai.api_key = Some("sk-test-secret".into());
            config.providers.openai.base_url = base_url;
            config.images.max_bytes = 2 * 1024 * 1024;
            config.providers.sketch.latency = Duration::ZERO.into();
        })
        .await;
        let view = run(&server).await;
        assert_eq!(view["status"], "completed", "{what}: {view}");
        assert_eq!(view["provider"]["name"], "sketch", "{what}");
        // The call to OpenAI was made and is on record, with the model that answered.
        assert_eq!(
            attempts(&view),
            [pair("openai", "provider_broken_image"), pair("sketch", "ok")],
            "{what}"
        );
        assert_eq!(openai.hits(), 1, "{what}: a broken image is not asked for again");
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        assert_eq!((image.width(), image.height()), (1024, 1024), "{what}: sketch's image");
        server.stop().await;
    }
}
