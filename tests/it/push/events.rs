//! `GET /v1/events`: host apps follow job changes over Server-Sent Events and, after any
//! disconnect or server restart, resume with `Last-Event-ID` — receiving exactly the events they
//! missed, none twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Client, SseEvent, SseReader, TestServer, call, job_id, legacy_client_with, modern_client,
};

/// Long enough to notice an event that should not come.
const QUIET: Duration = Duration::from_millis(700);

async fn start_job(client: &Client, prompt: &str) -> String {
    job_id(&call(client, "generate_image", json!({"prompt": prompt})).await)
}

fn id_of(event: &SseEvent) -> i64 {
    event.id.as_deref().expect("every event has an id").parse().expect("ids are numbers")
}

/// Reads `count` events and returns them, checking their ids increase.
async fn read(stream: &mut SseReader, count: usize) -> Vec<SseEvent> {
    let mut events: Vec<SseEvent> = Vec::with_capacity(count);
    for _ in 0..count {
        let event = stream.next().await;
        if let Some(last) = events.last() {
            assert!(id_of(&event) > id_of(last), "ids increase: {last:?} then {event:?}");
        }
        events.push(event);
    }
    events
}

/// (event type, job id) of each event, checking the SSE `event:` field matches the JSON `type`.
fn summary(events: &[SseEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| {
            let typed = event.event();
            assert_eq!(event.event.as_deref(), Some(typed.kind.as_str()));
            assert_eq!(typed.realtime.is_some(), typed.kind != "job.created", "{typed:?}");
            let body = event.json();
            assert_eq!(event.event.as_deref(), body["type"].as_str(), "{body}");
            assert_eq!(body["event_id"], id_of(event), "{body}");
            (
                body["type"].as_str().unwrap().to_owned(),
                body["job"]["job_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn created_then_completed(jobs: &[&str]) -> Vec<(String, String)> {
    let mut expected: Vec<(String, String)> =
        jobs.iter().map(|job| ("job.created".to_owned(), (*job).to_owned())).collect();
    expected.extend(jobs.iter().map(|job| ("job.completed".to_owned(), (*job).to_owned())));
    expected
}

/// Jobs started one after another and left to run concurrently: created in order, completed
/// in whichever order they finish (and never before their own creation).
fn by_kind(mut events: Vec<(String, String)>) -> Vec<(String, String)> {
    events.sort_by_key(|(kind, _)| kind != "job.created");
    let created = events.iter().filter(|(kind, _)| kind == "job.created").count();
    events[created..].sort_by(|a, b| a.1.cmp(&b.1));
    events
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let (client, _) = modern_client(&server.url(), None).await;
    let mut stream = server.events(None, "", None).await;

    let first = start_job(&client, "a lighthouse").await;
    let seen = read(&mut stream, 2).await;
    assert_eq!(summary(&seen), created_then_completed(&[&first]));
    let completed = seen[1].json();
    assert_eq!(completed["job"]["status"], "completed");
    assert!(completed["say"].as_str().unwrap().contains("lighthouse"), "{completed}");
    let last_seen = id_of(&seen[1]);
    drop(stream);

    // While nobody listens, three more jobs run to the end.
    let mut missed = Vec::new();
    for prompt in ["a canoe", "a pine forest", "a comet"] {
        missed.push(start_job(&client, prompt).await);
    }
    for job in &missed {
        server.wait_ended_quietly(None, job).await;
    }

    let mut resumed = server.events(None, "", Some(last_seen)).await;
    let caught_up = read(&mut resumed, 6).await;
    let missed: Vec<&str> = missed.iter().map(String::as_str).collect();
    let mut sorted = missed.clone();
    sorted.sort();
    let mut expected = created_then_completed(&missed);
    expected.splice(3.., created_then_completed(&sorted).split_off(3));
    assert_eq!(by_kind(summary(&caught_up)), expected);
    assert!(resumed.next_within(QUIET).await.is_none(), "nothing is repeated");

    // The resumed stream continues live.
    let live = start_job(&client, "a harbour at dawn").await;
    assert_eq!(summary(&read(&mut resumed, 2).await), created_then_completed(&[&live]));

    // `?after=` is the same cursor for clients that cannot set headers.
    let mut by_query = server.events(None, &format!("?after={last_seen}"), None).await;
    assert_eq!(summary(&read(&mut by_query, 8).await)[..6], summary(&caught_up)[..]);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn events_missed_across_a_server_restart_are_replayed_once() {
    let server = TestServer::start().await;
    let (client, _) = modern_client(&server.url(), None).await;
    let mut stream = server.events(None, "", None).await;
    let first = start_job(&client, "a sailboat").await;
    let last_seen = id_of(&read(&mut stream, 2).await[1]);
    drop(stream);

    // One job ends before the restart, another after it.
    let before = start_job(&client, "a red barn").await;
    server.wait_ended_quietly(None, &before).await;
    client.cancel().await.unwrap();
    let server = server.restart().await;
    let (client, _) = modern_client(&server.url(), None).await;
    let after = start_job(&client, "a windmill").await;
    server.wait_ended_quietly(None, &after).await;

    let mut resumed = server.events(None, "", Some(last_seen)).await;
    let events = summary(&read(&mut resumed, 4).await);
    assert_eq!(
        events,
        vec![
            ("job.created".to_owned(), before.clone()),
            ("job.completed".to_owned(), before.clone()),
            ("job.created".to_owned(), after.clone()),
            ("job.completed".to_owned(), after.clone()),
        ]
    );
    assert!(!events.iter().any(|(_, job)| *job == first), "already seen before the restart");
    assert!(resumed.next_within(QUIET).await.is_none(), "nothing is repeated");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn streams_filter_by_conversation_and_job() {
    let server = TestServer::start().await;
    let (kitchen, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "kitchen")]).await;
    let (garden, _) =
        legacy_client_with(&server.url(), None, &[("Offstage-Conversation", "garden")]).await;
    let mut kitchen_stream = server.events(None, "?conversation=kitchen", None).await;
    // The conversation header works on the event stream too.
    let garden_stream = server
        .events_request(None, "", None)
        .header("offstage-conversation", "garden")
        .send()
        .await
        .unwrap();
    let mut garden_stream = SseReader::new(garden_stream);

    let soup = start_job(&kitchen, "a bowl of soup").await;
    let rose = start_job(&garden, "a rose").await;
    let mut soup_only = server.events(None, &format!("?job={soup}&after=0"), None).await;

    assert_eq!(summary(&read(&mut kitchen_stream, 2).await), created_then_completed(&[&soup]));
    assert_eq!(summary(&read(&mut garden_stream, 2).await), created_then_completed(&[&rose]));
    assert_eq!(summary(&read(&mut soup_only, 2).await), created_then_completed(&[&soup]));
    let body = read(&mut server.events(None, &format!("?job={rose}&after=0"), None).await, 2).await;
    assert_eq!(body[1].json()["conversation"], "garden");
    assert!(
        kitchen_stream.next_within(QUIET).await.is_none(),
        "garden's events stay in the garden"
    );
    kitchen.cancel().await.unwrap();
    garden.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let server =
        TestServer::start_with(|config| config.push.keep_alive = Duration::from_secs(1).into())
            .await;
    let mut stream = server.events(None, "", None).await;
    assert!(stream.next_within(Duration::from_millis(2500)).await.is_none());
    assert!(stream.comments >= 1, "a keep-alive comment arrived");
    server.stop().await;
}

#[tokio::test]
async fn bad_event_requests_get_json_errors() {
    let server =
        TestServer::start_with(|config| config.security.tokens = vec!["alpha".to_owned()]).await;
    let expect = |status: u16, needle: &'static str| {
        move |(code, body): (u16, Value)| {
            assert_eq!(code, status, "{body}");
            assert!(body["error"]["message"].as_str().unwrap_or("").contains(needle), "{body}");
        }
    };
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("a JSON error body"))
    };
    expect(401, "token")(send(server.events_request(None, "", None)).await);
    expect(400, "Last-Event-ID")(
        send(server.events_request(Some("alpha"), "", None).header("last-event-id", "yesterday"))
            .await,
    );
    expect(400, "not a job id")(send(server.events_request(Some("alpha"), "?job=42", None)).await);
    expect(400, "since")(send(server.events_request(Some("alpha"), "?since=3", None)).await);
    server.stop().await;
}
