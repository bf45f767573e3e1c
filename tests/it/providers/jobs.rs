//! The provider contract through the whole job path (tool call → runner → provider → stored
//! image), for every row of [`PROVIDERS`]: images complete, rate limits are waited out, server
//! errors and hangs are retried then fail speakably, permanent failures fail at once with a
//! sentence to say, and no job view carries the key. The helpers here also serve each
//! provider's own job tests.

use std::time::{Duration, Instant};

use offstage::config::Config;
use serde_json::{Value, json};

use super::contract::{Answer, PROVIDERS, Row, Setup, Spawned};
use crate::support::{
    Client, TestServer, call, fetch_image, job_id, modern_client, structured, wait_until_ended,
};

/// A server whose provider is `row`'s, pointed at `base_url`, with quick retries; `adjust`
/// changes anything else.
pub(crate) async fn server(
    row: &Row,
    base_url: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let setup = Setup {
        request_timeout: Duration::from_millis(500),
        typical_latency: Some(Duration::from_millis(100)),
        ..Setup::at(row, base_url)
    };
    let (name, configure) = (row.name, row.configure);
    TestServer::start_with(move |config| {
        config.provider = name;
        configure(&mut config.providers, &setup);
        config.jobs.retry_base = Duration::from_millis(20).into();
        adjust(config);
    })
    .await
}

/// Starts one `generate_image` job of "a red fox"; returns its id. The reply never waits
/// for the provider.
pub(crate) async fn start(client: &Client, size: &str) -> String {
    let started =
        call(client, "generate_image", json!({"prompt": "a red fox", "size": size})).await;
    assert_eq!(started.is_error, Some(false));
    assert_eq!(structured(&started)["status"], "working", "the reply never waits");
    job_id(&started)
}

/// Runs one job on `server` to its end; returns the final job view and, when it completed,
/// the pixel size of the image behind `image_url`.
pub(crate) async fn run_on(server: TestServer, size: &str) -> (Value, Option<(u32, u32)>) {
    let (client, _) = modern_client(&server.url(), None).await;
    let view = wait_until_ended(&client, &start(&client, size).await).await;
    let mut pixels = None;
    if view["status"] == "completed" {
        let (_, _, image) = fetch_image(view["image_url"].as_str().unwrap()).await;
        pixels = Some((image.width(), image.height()));
    }
    client.cancel().await.unwrap();
    server.stop().await;
    (view, pixels)
}

/// Runs one job of `row` against `base_url` to its end.
pub(crate) async fn run_at(
    row: &Row,
    base_url: &str,
    size: &str,
    adjust: impl FnOnce(&mut Config),
) -> (Value, Option<(u32, u32)>) {
    run_on(server(row, base_url, adjust).await, size).await
}

/// Runs one job against a stand-in giving `answers`; `None` when the service never gives one
/// of them.
async fn run(row: &Row, answers: Vec<Answer>, size: &str) -> Option<(Value, Spawned)> {
    let stand_in = row.spawn(answers).await?;
    let (view, pixels) = run_at(row, &stand_in.base_url, size, |_| {}).await;
    if view["status"] == "completed" {
        let expected = if size == "landscape" { row.landscape } else { (1024, 1024) };
        assert_eq!(pixels, Some(expected), "{}: {view}", row.name);
    }
    assert!(!view.to_string().contains(row.key), "{}: the view shows the key: {view}", row.name);
    Some((view, stand_in))
}

#[tokio::test]
async fn images_complete_through_the_job_path() {
    for row in PROVIDERS {
        let (view, stand_in) = run(row, vec![Answer::Image], "landscape").await.unwrap();
        assert_eq!(view["status"], "completed", "{}: {view}", row.name);
        assert_eq!((row.attempts)(&stand_in), 1, "{}", row.name);
        (row.landscape_request)(&stand_in, row);
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_requested_wait() {
    for row in PROVIDERS {
        let started = Instant::now();
        let answers = vec![Answer::RateLimited(1), Answer::Image];
        let Some((view, stand_in)) = run(row, answers, "square").await else { continue };
        assert_eq!(view["status"], "completed", "{}: {view}", row.name);
        assert_eq!((row.attempts)(&stand_in), 2, "{}", row.name);
        assert!(started.elapsed() >= Duration::from_secs(1), "{}: the wait was honoured", row.name);
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_speakably() {
    for row in PROVIDERS {
        let (view, stand_in) = run(row, vec![Answer::ServerError(503)], "square").await.unwrap();
        assert_eq!(view["status"], "failed", "{}: {view}", row.name);
        assert_eq!((row.attempts)(&stand_in), 3, "{}: max_attempts attempts", row.name);
        assert!(view["error"].as_str().unwrap().contains("try again shortly"), "{view}");
    }
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_fails() {
    for row in PROVIDERS {
        let (view, stand_in) = run(row, vec![Answer::Hang], "square").await.unwrap();
        assert_eq!(view["status"], "failed", "{}: {view}", row.name);
        assert_eq!((row.attempts)(&stand_in), 3, "{}: timeouts are retryable", row.name);
        assert!(view["error"].as_str().unwrap().contains("too long"), "{view}");
    }
}

#[tokio::test]
async fn a_provider_that_is_down_fails_after_retries_with_a_spoken_line() {
    for row in PROVIDERS {
        let (url, _) = super::standin::refused_url();
        let (view, pixels) = run_at(row, &url, "square", |_| {}).await;
        assert_eq!(view["status"], "failed", "{}: {view}", row.name);
        assert_eq!(pixels, None);
        let error = view["error"].as_str().unwrap();
        assert!(error.contains("having trouble"), "{}: {error}", row.name);
    }
}

#[tokio::test]
async fn permanent_errors_fail_at_once_with_a_sentence_to_say() {
    let cases = [
        (Answer::Refused, "describing it differently"),
        (Answer::Unauthorized, "credentials"),
        (Answer::QuotaExhausted, "out of credit"),
        (Answer::Garbage, "broken image"),
    ];
    for row in PROVIDERS {
        for (answer, phrase) in cases {
            let Some((view, stand_in)) = run(row, vec![answer], "square").await else { continue };
            assert_eq!(view["status"], "failed", "{} {answer:?}: {view}", row.name);
            assert_eq!((row.attempts)(&stand_in), 1, "{} {answer:?}: not retried", row.name);
            let error = view["error"].as_str().unwrap();
            assert!(error.contains(phrase), "{}: `{error}` should say `{phrase}`", row.name);
        }
    }
}
