//! `images.store = "s3://bucket/prefix"` against a real S3 server on this machine (moto, from
//! `OFFSTAGE_TEST_MOTO`; `scripts/s3-test-env.sh` installs it): a job's image and renditions
//! land in the bucket, a second instance with another data dir serves them, and deleting a job
//! removes its objects. Without moto these tests say they are skipped, unless
//! `OFFSTAGE_TEST_REQUIRE_ALL=1`.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use futures::TryStreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, aws::AmazonS3Builder, path::Path as Key};
use offstage::{
    config::{Config, ImagesConfig},
    images::{
        ImageFormat,
        files::{ImageFiles, Stored},
    },
    jobs::JobId,
    server::Server,
};
use serde_json::json;

use crate::support::{
    SOON, TestServer, call, job_id, modern_client, test_config, wait_until_ended,
};

const BUCKET: &str = "offstage-shared";
const PREFIX: &str = "cluster/images";

/// A moto server on a free loopback port, killed when dropped.
struct Moto {
    endpoint: String,
    _child: tokio::process::Child,
}

impl Moto {
    /// Starts moto and creates [`BUCKET`], or `None` (the test is skipped) without moto.
    async fn start() -> Option<Moto> {
        let program = moto_program()?;
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = tokio::process::Command::new(&program);
        // A Python interpreter runs the module; anything else is the `moto_server` script.
        let is_python = program
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("python"));
        if is_python {
            command.args(["-m", "moto.server"]);
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start moto `{}`: {error}", program.display()));
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), _child: child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            // moto takes an unsigned path-style `PUT /bucket` as CreateBucket.
            match http.put(format!("{}/{BUCKET}", moto.endpoint)).send().await {
                Ok(response) if response.status().is_success() => return Some(moto),
                Ok(response) => panic!("moto refused to create the bucket: {}", response.status()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("moto did not start on {}: {error}", moto.endpoint),
            }
        }
    }

    /// `[images.s3]` for this server: its endpoint, over plain HTTP, with moto's fake keys.
    fn options(&self) -> Vec<(String, String)> {
        [
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("access_key_id", "testing"),
            ("secret_access_key", "testing"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }

    fn configure(&self, images: &mut ImagesConfig) {
        images.store = Some(format!("s3://{BUCKET}/{PREFIX}"));
        images.s3 = self.options().into_iter().collect();
    }

    /// The bucket as another S3 client sees it.
    fn bucket(&self) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_bucket_name(BUCKET)
            .build()
            .unwrap();
        Arc::new(store)
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "which optional test servers exist is the test's own input"
)]
fn moto_program() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os("OFFSTAGE_TEST_MOTO").filter(|value| !value.is_empty())
    {
        return Some(PathBuf::from(program));
    }
    if std::env::var_os("OFFSTAGE_TEST_REQUIRE_ALL").is_some_and(|value| value == "1") {
        panic!(
            "OFFSTAGE_TEST_REQUIRE_ALL=1 but OFFSTAGE_TEST_MOTO is not set: point it at moto_server \
             (`source scripts/cache.sh; source scripts/s3-test-env.sh; s3_test_env`)"
        );
    }
    eprintln!("skipped: set OFFSTAGE_TEST_MOTO (scripts/test does)");
    None
}

/// Every key in the bucket under [`PREFIX`], without the prefix.
async fn keys(bucket: &dyn ObjectStore) -> BTreeSet<String> {
    let listed: Vec<_> = bucket.list(Some(&Key::from(PREFIX))).try_collect().await.unwrap();
    let prefix = format!("{PREFIX}/");
    listed.into_iter().map(|meta| meta.location.as_ref().replacen(&prefix, "", 1)).collect()
}

async fn get(url: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.expect("the image URL answers")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// A 200 image body of type `mime` and its pixel size.
async fn image(response: reqwest::Response, mime: &str) -> (Vec<u8>, (u32, u32)) {
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(header(&response, "content-type"), mime);
    let bytes = response.bytes().await.unwrap().to_vec();
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap().to_mime_type(), mime);
    (bytes, (decoded.width(), decoded.height()))
}

/// Copies the job database of a stopped server, so that a second instance knows its jobs.
fn copy_database(from: &Path, to: &Path) {
    for name in ["offstage.db", "offstage.db-wal", "offstage.db-shm"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

#[tokio::test]
async fn images_live_in_an_s3_bucket_that_instances_share() {
    let Some(moto) = Moto::start().await else { return };
    let server = TestServer::start_with(|config| moto.configure(&mut config.images)).await;
    let (client, _) = modern_client(&server.url(), None).await;
    let started = call(&client, "generate_image", json!({"prompt": "a lighthouse at dusk"})).await;
    let id = job_id(&started);
    let view = wait_until_ended(&client, &id).await;
    client.cancel().await.unwrap();
    assert_eq!(view["status"], "completed", "{view}");
    let url = view["image_url"].as_str().unwrap().to_owned();

    let (original, size) = image(get(&url, None).await, "image/png").await;
    assert_eq!(size, (1024, 1024));
    let small = format!("{url}?w=256&format=webp");
    let first = get(&small, None).await;
    assert_eq!(header(&first, "offstage-rendition"), "miss");
    let tag = header(&first, "etag").to_owned();
    let (rendition, size) = image(first, "image/webp").await;
    assert_eq!(size, (256, 256));
    let again = get(&small, None).await;
    assert_eq!(header(&again, "offstage-rendition"), "hit");
    assert_eq!(image(again, "image/webp").await.0, rendition);
    assert_eq!(get(&small, Some(&tag)).await.status(), 304);

    // Everything is in the bucket, under the prefix, in the layout of the images folder; and
    // nothing went to the instance's own data dir.
    let bucket = moto.bucket();
    let expected: BTreeSet<String> = [
        format!("{id}.png"),
        format!("renditions/{id}/w256.webp"),
        format!("renditions/{id}/w512.webp"),
    ]
    .into();
    assert_eq!(keys(bucket.as_ref()).await, expected);
    let stored = bucket.get(&Key::from(format!("{PREFIX}/{id}.png"))).await.unwrap();
    assert_eq!(stored.bytes().await.unwrap(), original);
    assert!(!server.dir.path().join("images").exists(), "no local image files with S3");

    // A second instance with a data dir of its own (and a copy of the jobs) serves the same
    // image from the bucket, and finds the rendition the first one made.
    let TestServer { server: first, dir: first_dir, .. } = server;
    first.stop().await;
    let second_dir = tempfile::tempdir().unwrap();
    copy_database(first_dir.path(), second_dir.path());
    let mut config: Config = test_config(second_dir.path());
    moto.configure(&mut config.images);
    let second = Server::start(config).await.expect("a second instance starts");
    let path = format!("/v1/jobs/{id}/image");
    let there = |query: &str| format!("http://{}{path}{query}", second.local_addr());
    assert_eq!(image(get(&there(""), None).await, "image/png").await.0, original);
    let found = get(&there("?w=256&format=webp"), None).await;
    assert_eq!(header(&found, "offstage-rendition"), "hit");
    assert_eq!(image(found, "image/webp").await.0, rendition);
    assert!(!second_dir.path().join("images").exists());
    tokio::time::timeout(SOON, second.stop()).await.expect("the second instance stops");
}

#[tokio::test]
async fn deleting_a_job_removes_its_objects_from_s3_and_only_its_own() {
    let Some(moto) = Moto::start().await else { return };
    let mut config = ImagesConfig::default();
    moto.configure(&mut config);
    let scratch = tempfile::tempdir().unwrap();
    let files = ImageFiles::from_config(&config, scratch.path()).await.unwrap();
    let (gone, kept) = (JobId::generate(), JobId::generate());
    for id in [&gone, &kept] {
        for stored in [
            Stored::Original(ImageFormat::Jpeg),
            Stored::Partial,
            Stored::Rendition("w256.webp".to_owned()),
            Stored::Rendition("w512.webp".to_owned()),
        ] {
            let (files, id) = (files.clone(), id.clone());
            let bytes = bytes::Bytes::from(format!("{id} {stored:?}"));
            let written = tokio::task::spawn_blocking(move || files.write(&id, &stored, bytes))
                .await
                .unwrap();
            written.unwrap().finish().await.unwrap();
        }
    }
    let bucket = moto.bucket();
    assert_eq!(keys(bucket.as_ref()).await.len(), 8);
    let read = files.read(&gone, &Stored::Partial).await.unwrap();
    assert_eq!(read, format!("{gone} Partial"));

    files.delete(&gone).await;
    let left = keys(bucket.as_ref()).await;
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.iter().all(|key| key.contains(&kept.to_string())), "{left:?}");
    files.delete(&gone).await; // Already gone: fine.
    let missing = files.open_stream(&gone, &Stored::Original(ImageFormat::Jpeg)).await;
    assert_eq!(missing.unwrap_err().kind(), std::io::ErrorKind::NotFound);

    // A bucket that does not exist stops the start with a clear error.
    let mut wrong = config.clone();
    wrong.store = Some("s3://no-such-bucket/images".to_owned());
    let error = ImageFiles::from_config(&wrong, scratch.path()).await.unwrap_err();
    assert!(error.to_string().contains("no-such-bucket"), "{error}");
}
