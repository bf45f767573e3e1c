//! Both backends against one contract: the layout, whole writes, reads and streams, and
//! deletion that takes every image of a job and nothing else. The object store is
//! `object_store`'s in-memory one; `tests/it/images/s3_store.rs` runs a real S3 server.

use std::{collections::BTreeSet, sync::Arc};

use futures::TryStreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, memory::InMemory, path::Path as ObjectPath};

use super::{directory::CHUNK, *};
use crate::images::settings::ImagesConfig;

fn in_memory(prefix: &str) -> (Arc<InMemory>, ImageFiles) {
    let store = Arc::new(InMemory::new());
    let files = ImageFiles::in_object_store(store.clone(), ObjectPath::from(prefix));
    (store, files)
}

async fn keys(store: &InMemory) -> BTreeSet<String> {
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    listed.into_iter().map(|meta| meta.location.to_string()).collect()
}

/// Writes as the pipeline does: on a thread outside the runtime, then finished on it.
async fn write(files: &ImageFiles, id: &JobId, stored: Stored, bytes: &'static [u8]) {
    let (files, id) = (files.clone(), id.clone());
    let written = tokio::task::spawn_blocking(move || files.write(&id, &stored, bytes.into()));
    written.await.unwrap().unwrap().finish().await.unwrap();
}

async fn streamed(files: &ImageFiles, id: &JobId, stored: &Stored) -> io::Result<(u64, Vec<u8>)> {
    let opened = files.open_stream(id, stored).await?;
    let chunks: Vec<Bytes> = opened.body.try_collect().await?;
    Ok((opened.length, chunks.concat()))
}

#[tokio::test]
async fn writes_atomically_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let files = ImageFiles::open(dir.path()).unwrap();
    let id = JobId::generate();
    write(&files, &id, Stored::Original(ImageFormat::Png), b"first").await;
    write(&files, &id, Stored::Original(ImageFormat::Png), b"second").await;
    write(&files, &id, Stored::Rendition("w64.webp".to_owned()), b"small").await;
    let path = dir.path().join(format!("images/{id}.png"));
    assert_eq!(files.read(&id, &Stored::Original(ImageFormat::Png)).await.unwrap(), "second");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files may remain: {leftovers:?}");
    let rendition = dir.path().join(format!("images/renditions/{id}/w64.webp"));
    assert_eq!(std::fs::read(&rendition).unwrap(), b"small");
    files.delete(&id).await;
    assert!(!path.exists());
    assert!(!rendition.parent().unwrap().exists());
    files.delete(&id).await;
}

#[test]
fn files_larger_than_a_chunk_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let files = ImageFiles::open(dir.path()).unwrap();
    let id = JobId::generate();
    let bytes: Vec<u8> = (0..3 * CHUNK + 17).map(|n| (n * 31 % 251) as u8).collect();
    let stored = Stored::Original(ImageFormat::Jpeg);
    let written = files.write(&id, &stored, Bytes::from(bytes.clone())).unwrap();
    assert!(written.uploads.is_empty(), "a file is written on the pool, whole");
    assert_eq!(std::fs::read(dir.path().join(format!("images/{id}.jpg"))).unwrap(), bytes);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let readable = runtime.block_on(files.readable(&id, ImageFormat::Jpeg)).unwrap();
    assert!(matches!(readable, Readable::File(_)), "{readable:?}");
    assert_eq!(readable.read().unwrap(), bytes);
}

#[tokio::test]
async fn a_file_url_is_used_as_the_directory_itself() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let config = ImagesConfig {
        store: Some(url::Url::from_directory_path(&shared).unwrap().to_string()),
        ..ImagesConfig::default()
    };
    let files = ImageFiles::from_config(&config, &dir.path().join("data")).await.unwrap();
    let id = JobId::generate();
    write(&files, &id, Stored::Original(ImageFormat::Webp), b"webp").await;
    assert_eq!(std::fs::read(shared.join(format!("{id}.webp"))).unwrap(), b"webp");
    assert!(!dir.path().join("data").exists(), "nothing goes to the data dir");
}

#[tokio::test]
async fn missing_images_are_not_found_in_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (_, objects) = in_memory("images");
    for files in [ImageFiles::open(dir.path()).unwrap(), objects] {
        let id = JobId::generate();
        let stored = Stored::Original(ImageFormat::Png);
        let error = files.open_stream(&id, &stored).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{files:?}: {error}");
        let error = files.read(&id, &Stored::Partial).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{files:?}: {error}");
        assert!(!files.exists(&id, &stored).await);
        files.delete(&id).await;
        files.delete_partial(&id).await;
    }
}

#[tokio::test]
async fn objects_mirror_the_file_layout_under_the_prefix() {
    let (store, files) = in_memory("offstage/images");
    let id = JobId::generate();
    write(&files, &id, Stored::Original(ImageFormat::Png), b"original").await;
    write(&files, &id, Stored::Partial, b"partial").await;
    write(&files, &id, Stored::Rendition("w512.webp".to_owned()), b"rendition").await;
    let expected: BTreeSet<String> = [
        format!("offstage/images/{id}.png"),
        format!("offstage/images/{id}.partial"),
        format!("offstage/images/renditions/{id}/w512.webp"),
    ]
    .into();
    assert_eq!(keys(&store).await, expected);
    let rendition = Stored::Rendition("w512.webp".to_owned());
    assert!(files.exists(&id, &rendition).await);
    assert_eq!(streamed(&files, &id, &rendition).await.unwrap(), (9, b"rendition".to_vec()));
    assert_eq!(files.read(&id, &Stored::Partial).await.unwrap(), "partial");
    let readable = files.readable(&id, ImageFormat::Png).await.unwrap();
    assert!(matches!(readable, Readable::Loaded(_)), "{readable:?}");
    assert_eq!(readable.read().unwrap(), "original");
    // A replaced object reads as the new one.
    write(&files, &id, Stored::Partial, b"newer partial").await;
    assert_eq!(files.read(&id, &Stored::Partial).await.unwrap(), "newer partial");
}

#[tokio::test]
async fn an_object_is_uploaded_only_when_the_write_is_finished() {
    let (store, files) = in_memory("");
    let id = JobId::generate();
    let mut written =
        files.write(&id, &Stored::Original(ImageFormat::Jpeg), "jpeg".into()).unwrap();
    written
        .extend(files.write(&id, &Stored::Rendition("w64.webp".to_owned()), "w".into()).unwrap());
    assert!(keys(&store).await.is_empty(), "the pool task uploads nothing");
    written.finish().await.unwrap();
    let expected: BTreeSet<String> =
        [format!("{id}.jpg"), format!("renditions/{id}/w64.webp")].into();
    assert_eq!(keys(&store).await, expected);
}

#[tokio::test]
async fn deleting_a_job_removes_its_objects_and_no_others() {
    let (store, files) = in_memory("images");
    let (id, other) = (JobId::generate(), JobId::generate());
    for job in [&id, &other] {
        write(&files, job, Stored::Original(ImageFormat::Webp), b"original").await;
        write(&files, job, Stored::Partial, b"partial").await;
        write(&files, job, Stored::Rendition("w256.jpg".to_owned()), b"small").await;
        write(&files, job, Stored::Rendition("w512.webp".to_owned()), b"large").await;
    }
    files.delete_partial(&id).await;
    assert!(!keys(&store).await.contains(&format!("images/{id}.partial")));
    files.delete(&id).await;
    let left = keys(&store).await;
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.iter().all(|key| key.contains(&other.to_string())), "{left:?}");
    files.delete(&id).await;
    // Keys outside the layout (another tenant's prefix) are never touched.
    store.put(&ObjectPath::from("elsewhere/x.png"), "x".into()).await.unwrap();
    files.delete(&other).await;
    assert_eq!(keys(&store).await, BTreeSet::from(["elsewhere/x.png".to_owned()]));
}
