//! A 2026-07-28 client (no handshake, per-request metadata) runs the same flow through
//! `subscriptions/listen`, plus progress while waiting and cancellation.

use rmcp::model::{
    ReadResourceRequestParams, ResourceContents, ServerNotification, SubscriptionFilter,
};
use serde_json::{Value, json};

use crate::support::{
    SOON, TestServer, call, fetch_image, job_id, modern_client, structured, text,
};

async fn next_update(subscription: &mut rmcp::service::Subscription) -> String {
    let notification = tokio::time::timeout(SOON, subscription.next())
        .await
        .expect("a notification arrives")
        .expect("subscription alive")
        .expect("subscription not ended");
    match notification {
        ServerNotification::ResourceUpdatedNotification(update) => update.params.uri,
        other => panic!("expected resources/updated, got {other:?}"),
    }
}

#[tokio::test]
async fn stateless_client_listens_and_receives_the_finished_job() {
    let server = TestServer::start().await;
    let (client, _inbox) = modern_client(&server.url(), None).await;
    let result = call(&client, "generate_image", json!({"prompt": "night over the ocean"})).await;
    assert_eq!(result.is_error, Some(false));
    let id = job_id(&result);
    let uri = format!("offstage://jobs/{id}");
    let mut subscription = client
        .listen(SubscriptionFilter::builder().resource_subscription(uri.clone()).build())
        .await
        .expect("listen is accepted");
    assert_eq!(next_update(&mut subscription).await, uri);

    let read = client.read_resource(ReadResourceRequestParams::new(uri.clone())).await.unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("text")
    };
    let job: Value = serde_json::from_str(text).unwrap();
    assert_eq!(job["status"], "completed");
    assert_eq!(read.ttl_ms, Some(0), "job resources must not be cached");

    let (_, _, image) = fetch_image(job["image_url"].as_str().unwrap()).await;
    assert_eq!((image.width(), image.height()), (1024, 1024));
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn listening_after_the_job_ended_still_announces_it() {
    let server = TestServer::start().await;
    let (client, _inbox) = modern_client(&server.url(), None).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "a kite"})).await);
    let done = call(&client, "job_status", json!({"job_id": id, "wait_ms": 15000})).await;
    assert_eq!(structured(&done)["status"], "completed");
    let uri = format!("offstage://jobs/{id}");
    let mut subscription = client
        .listen(SubscriptionFilter::builder().resource_subscription(uri.clone()).build())
        .await
        .unwrap();
    assert_eq!(next_update(&mut subscription).await, uri);
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_job_ends_it_and_notifies_listeners() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.latency = std::time::Duration::from_secs(30).into();
    })
    .await;
    let (client, _inbox) = modern_client(&server.url(), None).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "a slow painting"})).await);
    let uri = format!("offstage://jobs/{id}");
    let mut subscription = client
        .listen(SubscriptionFilter::builder().resource_subscription(uri.clone()).build())
        .await
        .unwrap();
    let cancelled = call(&client, "cancel_job", json!({"job_id": id})).await;
    assert_eq!(cancelled.is_error, Some(false));
    assert_eq!(structured(&cancelled)["status"], "cancelled");
    assert_eq!(next_update(&mut subscription).await, uri);
    let status = call(&client, "job_status", json!({"job_id": id})).await;
    assert_eq!(structured(&status)["status"], "cancelled");
    assert!(text(&status).contains("cancelled"));
    let again = call(&client, "cancel_job", json!({"job_id": id})).await;
    assert!(text(&again).contains("Too late"), "{}", text(&again));
    let (_, cache, _) = fetch_image(structured(&status)["image_url"].as_str().unwrap()).await;
    assert_eq!(cache, "no-store");
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
    server.stop().await;
}
