//! Generated images on disk: `<data_dir>/images/<job_id>.<ext>` (the original) and
//! `<data_dir>/images/renditions/<job_id>/w512.webp` (resized or re-encoded variants), all
//! written atomically.
//!
//! A file is complete or absent, never half-written: bytes go to a temporary name, are synced,
//! then renamed into place. Only then does the job become `completed`, so a reader that sees a
//! completed job always finds its file.

use std::{
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use super::ImageFormat;
use crate::jobs::JobId;

/// The most one read or write system call copies. A kernel built without preemption (as on
/// our machines) lets a thread finish a copy before anyone else gets its core, SCHED_IDLE or
/// not, and one 2.4 MB write into the page cache cost about 8 ms of CPU here. Between chunks
/// the pool thread is back in user space and offers the core ([`crate::priority::offer_cpu`]).
const CHUNK: usize = 64 * 1024;

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

    // The writers below block: they are called from the image pool, so copying megabytes into
    // the page cache and waiting for the disk happen at the pool's idle priority. Measured on
    // the request threads (tokio's blocking pool), these copies were nearly a third of the
    // extra CPU a burst of image jobs put at normal priority. They copy in `CHUNK`s.

    /// Stores one rendition of the job's image. Blocking.
    pub fn write_rendition(&self, id: &JobId, name: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(self.renditions_dir(id))?;
        self.write_at(id, &self.rendition_path(id, name), bytes)
    }

    /// Stores the job's original image. Blocking.
    pub fn write(&self, id: &JobId, format: ImageFormat, bytes: &[u8]) -> io::Result<()> {
        self.write_at(id, &self.path(id, format), bytes)
    }

    /// Replaces the job's partial image; readers see the previous one or this one, whole.
    /// Blocking.
    pub fn write_partial(&self, id: &JobId, bytes: &[u8]) -> io::Result<()> {
        self.write_at(id, &self.partial_path(id), bytes)
    }

    fn write_at(&self, id: &JobId, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temporary = self.dir.join(format!(".{id}.{}.tmp", ulid::Ulid::generate()));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            for chunk in bytes.chunks(CHUNK) {
                file.write_all(chunk)?;
                crate::priority::offer_cpu();
            }
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    /// Reads the job's original image. Blocking, in `CHUNK`s like the writers.
    pub fn read(&self, id: &JobId, format: ImageFormat) -> io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(self.path(id, format))?;
        let mut bytes = Vec::with_capacity(file.metadata()?.len().try_into().unwrap_or(0));
        while (&mut file).take(CHUNK as u64).read_to_end(&mut bytes)? > 0 {}
        Ok(bytes)
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
        files.write(&id, ImageFormat::Png, b"first").unwrap();
        files.write(&id, ImageFormat::Png, b"second").unwrap();
        files.write_rendition(&id, "w64.webp", b"small").unwrap();
        let path = files.path(&id, ImageFormat::Png);
        assert_eq!(files.read(&id, ImageFormat::Png).unwrap(), b"second");
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

    #[test]
    fn files_larger_than_a_chunk_come_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let files = ImageFiles::open(dir.path()).unwrap();
        let id = JobId::generate();
        let bytes: Vec<u8> = (0..3 * CHUNK + 17).map(|n| (n * 31 % 251) as u8).collect();
        files.write(&id, ImageFormat::Jpeg, &bytes).unwrap();
        assert_eq!(std::fs::read(files.path(&id, ImageFormat::Jpeg)).unwrap(), bytes);
        assert_eq!(files.read(&id, ImageFormat::Jpeg).unwrap(), bytes);
    }
}
