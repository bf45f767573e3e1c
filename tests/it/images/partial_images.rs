//! Partial images through the whole job path: while a provider streams previews (here the
//! offline `sketch` provider's), each one becomes the placeholder at `image_url`, shows as
//! `progress` in the job JSON, and is announced as a `job.progress` event; the final image
//! then replaces it.

use std::time::Duration;

use serde_json::json;

use crate::support::{TestServer, call, job_id, modern_client, structured};

#[tokio::test]
async fn each_partial_image_becomes_the_placeholder_and_a_progress_event() {
    let server = TestServer::start_with(|config| {
        config.providers.sketch.partial_images = true;
        config.providers.sketch.latency = Duration::from_millis(1200).into();
    })
    .await;
    let mut events = server.events(None, "", None).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started = call(&client, "generate_image", json!({"prompt": "a red fox"})).await;
    let id = job_id(&started);
    let image_url = structured(&started)["image_url"].as_str().unwrap().to_owned();

    let created = events.next().await.json();
    assert_eq!(created["type"], "job.created");
    let progress = events.next().await;
    let body = progress.event();
    assert_eq!(body.kind, "job.progress");
    assert_eq!(body.job.job_id, id);
    assert_eq!(body.job.status, offstage::jobs::JobStatus::Working);
    assert_eq!(body.job.progress, Some(json!({"partial_images": 1})));
    assert!(body.say.is_none() && body.realtime.is_none(), "progress is not a result: {body:?}");

    // The job has not finished yet (the preview comes halfway), so the URL shows the preview.
    let response = reqwest::get(&image_url).await.unwrap();
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("offstage-job-status"), "working");
    assert_eq!(header("offstage-partial-image"), "1");
    assert_eq!(header("cache-control"), "no-store");
    let preview = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((preview.width(), preview.height()), (512, 512));
    let (status, view) = server.job_json(None, &id).await;
    assert_eq!((status, &view["progress"]), (200, &json!({"partial_images": 1})));

    let completed = events.next().await.json();
    assert_eq!(completed["type"], "job.completed");
    assert!(completed["job"].get("progress").is_none(), "progress is for working jobs");
    let response = reqwest::get(&image_url).await.unwrap();
    assert!(response.headers().get("offstage-partial-image").is_none());
    let image = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (1024, 1024), "the final image replaced it");
    let leftovers: Vec<_> = std::fs::read_dir(server.dir.path().join("images"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "the partial file is removed: {leftovers:?}");
    client.cancel().await.unwrap();
    server.stop().await;
}
