//! Generated images on disk: `<data_dir>/images/<job_id>.<ext>` (the original) and
//! `<data_dir>/images/renditions/<job_id>/w512.webp` (resized or re-encoded variants), all
//! written atomically.
//!
//! A file is complete or absent, never half-written: bytes go to a temporary name, are synced,
//! then renamed into place. Only then does the job become `completed`, so a reader that sees a
//! completed job always finds its file.

use std::{
    io,
    path::{Path, PathBuf},
};

use tokio::io::AsyncWriteExt;

use super::ImageFormat;
use crate::jobs::JobId;

#[derive(Debug, Clone)]
pub struct ImageFiles {
    dir: PathBuf,
}

impl ImageFiles {
    /// Uses (and creates) `<data_dir>/images`.
    pub fn open(data_dir: &Path) -> io::Result<ImageFiles> {
        let dir = data_dir.join("images");
        std::fs::create_dir_all(&dir)?;
        Ok(ImageFiles { dir })
    }

    pub fn path(&self, id: &JobId, format: ImageFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format.extension()))
    }

    /// Where the latest partial image of a working job is kept (one per job, replaced).
    pub fn partial_path(&self, id: &JobId) -> PathBuf {
        self.dir.join(format!("{id}.partial"))
    }

    /// Where the rendition `name` (see `Rendition::file_name`) of the job's image is kept.
    pub fn rendition_path(&self, id: &JobId, name: &str) -> PathBuf {
        self.renditions_dir(id).join(name)
    }

    fn renditions_dir(&self, id: &JobId) -> PathBuf {
        self.dir.join("renditions").join(id.to_string())
    }

    /// Stores one rendition of the job's image.
    pub async fn write_rendition(&self, id: &JobId, name: &str, bytes: &[u8]) -> io::Result<()> {
        tokio::fs::create_dir_all(self.renditions_dir(id)).await?;
        self.write_at(id, self.rendition_path(id, name), bytes).await
    }

    pub async fn write(&self, id: &JobId, format: ImageFormat, bytes: &[u8]) -> io::Result<()> {
        self.write_at(id, self.path(id, format), bytes).await
    }

    /// Replaces the job's partial image; readers see the previous one or this one, whole.
    pub async fn write_partial(&self, id: &JobId, bytes: &[u8]) -> io::Result<()> {
        self.write_at(id, self.partial_path(id), bytes).await
    }

    async fn write_at(&self, id: &JobId, path: PathBuf, bytes: &[u8]) -> io::Result<()> {
        let temporary = self.dir.join(format!(".{id}.{}.tmp", ulid::Ulid::generate()));
        let written = async {
            let mut file = tokio::fs::File::create(&temporary).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temporary, &path).await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written
    }

    /// Removes the job's partial image, if any.
    pub async fn delete_partial(&self, id: &JobId) {
        remove(id, self.partial_path(id)).await;
    }

    /// Removes the job's image in whatever format it was stored, its renditions and its
    /// partial image. Missing files are fine.
    pub async fn delete(&self, id: &JobId) {
        self.delete_partial(id).await;
        match tokio::fs::remove_dir_all(self.renditions_dir(id)).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(job = %id, %error, "could not delete image renditions"),
        }
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp] {
            remove(id, self.path(id, format)).await;
        }
    }
}

async fn remove(id: &JobId, path: PathBuf) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(job = %id, %error, "could not delete image file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_atomically_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let files = ImageFiles::open(dir.path()).unwrap();
        let id = JobId::generate();
        files.write(&id, ImageFormat::Png, b"first").await.unwrap();
        files.write(&id, ImageFormat::Png, b"second").await.unwrap();
        files.write_rendition(&id, "w64.webp", b"small").await.unwrap();
        let path = files.path(&id, ImageFormat::Png);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary files may remain: {leftovers:?}");
        let rendition = files.rendition_path(&id, "w64.webp");
        assert_eq!(std::fs::read(&rendition).unwrap(), b"small");
        files.delete(&id).await;
        assert!(!path.exists());
        assert!(!rendition.parent().unwrap().exists());
        files.delete(&id).await;
    }
}
