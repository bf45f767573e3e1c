//! The pipeline against real files: ingest, renditions rendered once, refusals that store
//! nothing. (Decompression bombs are refused through the whole job path in
//! `tests/it/images/image_variants.rs`.)

use std::{io::Cursor, path::PathBuf};

use super::*;
use crate::images::{ImageFormat, decode};

fn pipeline(dir: &std::path::Path, prerender: &[&str]) -> ImagePipeline {
    let config = ImagesConfig {
        workers: 1,
        prerender: prerender.iter().map(|query| (*query).to_owned()).collect(),
        ..ImagesConfig::default()
    };
    let pool = ImagePool::new(1, config.queue).unwrap();
    ImagePipeline::new(&config, ImageFiles::open(dir).unwrap(), pool).unwrap()
}

fn png(width: u32, height: u32) -> Bytes {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    Bytes::from(out)
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|path| path.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn ingest_stores_the_original_once_with_preview_and_prerendered_variants() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &["w=512&format=webp", "format=webp&w=512", "w=2048"]);
    let id = JobId::generate();
    let original = png(1024, 768);
    let ingested = pipeline.ingest(&id, original.clone()).await.unwrap();
    assert_eq!(ingested.info, ImageInfo { format: ImageFormat::Png, width: 1024, height: 768 });
    assert!(ingested.preview.as_deref().is_some_and(|hash| hash.len() < 40), "{ingested:?}");
    // Stored byte for byte; the repeated prerender is rendered once; w=2048 is the original.
    let stored = pipeline.files().read(&id, &Stored::Original(ImageFormat::Png)).await.unwrap();
    assert_eq!(stored, original);
    let mut expected = [format!("{id}.png"), format!("renditions/{id}/w512.webp")];
    expected.sort();
    assert_eq!(files_in(&dir.path().join("images")), expected);
    let webp = std::fs::read(dir.path().join(format!("images/renditions/{id}/w512.webp"))).unwrap();
    let decoded = decode(&webp, ImageLimits::default()).unwrap().info;
    assert_eq!(decoded, ImageInfo { format: ImageFormat::Webp, width: 512, height: 384 });
}

#[tokio::test]
async fn unusable_images_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &["w=512&format=webp"]);
    let id = JobId::generate();
    let mut truncated = png(256, 256).to_vec();
    truncated.truncate(truncated.len() / 2);
    let refused = pipeline.ingest(&id, Bytes::from(truncated)).await;
    assert!(matches!(refused, Err(PipelineError::Image(ImageError::Corrupt(_)))), "{refused:?}");
    let html = pipeline.ingest(&id, Bytes::from_static(b"<html></html>")).await;
    assert!(matches!(html, Err(PipelineError::Image(ImageError::UnknownFormat))), "{html:?}");
    assert!(files_in(&dir.path().join("images")).is_empty());
}

#[tokio::test]
async fn a_partial_image_is_stored_only_when_whole() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &[]);
    let id = JobId::generate();
    let whole = png(64, 64);
    let mut truncated = whole.to_vec();
    truncated.truncate(truncated.len() / 2);
    let refused = pipeline.store_partial(&id, Bytes::from(truncated)).await;
    assert!(matches!(refused, Err(PipelineError::Image(_))), "{refused:?}");
    assert!(files_in(&dir.path().join("images")).is_empty());
    let before = pipeline.pool().finished();
    pipeline.store_partial(&id, whole.clone()).await.unwrap();
    assert_eq!(pipeline.pool().finished() - before, 1, "checked and stored in one pool task");
    assert_eq!(std::fs::read(dir.path().join(format!("images/{id}.partial"))).unwrap(), whole);
}

#[tokio::test]
async fn a_rendition_is_rendered_once_however_many_ask_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(pipeline(dir.path(), &[]));
    let id = JobId::generate();
    let ingested = pipeline.ingest(&id, png(1024, 1024)).await.unwrap();
    let before = pipeline.pool().finished();
    let rendition = Rendition { width: 256, height: 256, format: ImageFormat::Jpeg };
    let asks = (0..8).map(|_| {
        let (pipeline, id) = (Arc::clone(&pipeline), id.clone());
        tokio::spawn(async move { pipeline.rendition(&id, &ingested.info, rendition).await })
    });
    let answers = futures::future::join_all(asks).await;
    let rendered_now =
        answers.iter().filter(|answer| *answer.as_ref().unwrap().as_ref().unwrap()).count();
    assert_eq!(rendered_now, 1);
    assert_eq!(pipeline.pool().finished() - before, 1, "one render on the pool");
    let rendered = pipeline.rendition(&id, &ingested.info, rendition).await.unwrap();
    assert!(!rendered);
    let stored = Stored::Rendition(rendition.file_name());
    let bytes = pipeline.files().read(&id, &stored).await.unwrap();
    let info = decode(&bytes, ImageLimits::default()).unwrap().info;
    assert_eq!(info, ImageInfo { format: ImageFormat::Jpeg, width: 256, height: 256 });
    assert!(pipeline.rendering.lock().unwrap().is_empty());
}

#[test]
fn a_prerender_setting_that_names_no_rendition_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = ImagesConfig { prerender: vec!["w=500".to_owned()], ..ImagesConfig::default() };
    let files = ImageFiles::open(dir.path()).unwrap();
    let error = ImagePipeline::new(&config, files, ImagePool::new(1, 4).unwrap()).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("images.prerender `w=500`: "), "{message}");
    assert!(message.contains("64, 128, 256"), "{message}");
}

#[tokio::test]
async fn on_an_object_store_ingest_and_renditions_store_the_same_layout() {
    use std::collections::BTreeSet;

    use futures::TryStreamExt as _;
    use object_store::{ObjectStore, memory::InMemory, path::Path as ObjectPath};
    let store = Arc::new(InMemory::new());
    let files = ImageFiles::in_object_store(store.clone(), ObjectPath::from("shared"));
    let config = ImagesConfig {
        workers: 1,
        prerender: vec!["w=512&format=webp".to_owned()],
        ..ImagesConfig::default()
    };
    let pipeline = ImagePipeline::new(&config, files, ImagePool::new(1, 4).unwrap()).unwrap();
    let id = JobId::generate();
    let original = png(1024, 768);
    let ingested = pipeline.ingest(&id, original.clone()).await.unwrap();
    let rendition = Rendition { width: 256, height: 192, format: ImageFormat::Jpeg };
    assert!(pipeline.rendition(&id, &ingested.info, rendition).await.unwrap(), "rendered now");
    assert!(!pipeline.rendition(&id, &ingested.info, rendition).await.unwrap(), "then found");
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    let keys: BTreeSet<String> = listed.into_iter().map(|meta| meta.location.into()).collect();
    let expected = BTreeSet::from([
        format!("shared/{id}.png"),
        format!("shared/renditions/{id}/w256.jpg"),
        format!("shared/renditions/{id}/w512.webp"),
    ]);
    assert_eq!(keys, expected);
    let stored = pipeline.files().read(&id, &Stored::Original(ImageFormat::Png)).await.unwrap();
    assert_eq!(stored, original);
    let small = pipeline.files().read(&id, &Stored::Rendition(rendition.file_name())).await;
    let info = decode(&small.unwrap(), ImageLimits::default()).unwrap().info;
    assert_eq!(info, ImageInfo { format: ImageFormat::Jpeg, width: 256, height: 192 });
}
