//! Where generated images are kept, in a directory or an object store, under one layout:
//! `<job_id>.<ext>` (the original), `<job_id>.partial` (the newest partial image of a working
//! job) and `renditions/<job_id>/w512.webp` (resized or re-encoded variants). Every write is
//! whole or absent, never half-visible.
//!
//! A directory (`<data_dir>/images` by default, or a `file://` one several instances share)
//! gets bytes at a temporary name, synced, then renamed into place ([`directory`]). An object
//! store (`s3://bucket/prefix`) has keys `<prefix>/<the same layout>`; its PUT is atomic, a
//! reader sees the old object or the new one ([`objects`]). Either way a write completes before
//! the job becomes `completed`, so a reader that sees a completed job always finds its image.

mod directory;
mod objects;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use futures::stream::BoxStream;

use self::{directory::Directory, objects::Objects};
use super::ImageFormat;
use crate::{images::settings::ImagesConfig, jobs::JobId};

/// The images of every job, wherever they are kept. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    backend: Backend,
}

/// One stored image of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The image as the provider made it, in its own format.
    Original(ImageFormat),
    /// The newest partial image of a working job (one per job, replaced).
    Partial,
    /// A rendition, by its file name (`Rendition::file_name`, such as `w512.webp`).
    Rendition(String),
}

/// A write made on the image pool, and what is left of it: nothing for a directory, the
/// upload for an object store, which [`Written::finish`] sends from the runtime.
///
/// Writes are split this way because the two backends wait on different things. A file write
/// is CPU (copies into the page cache) and an fsync, best spent at the pool's idle priority
/// (see `directory.rs`). An upload is mostly waiting on the network, with retries and timeouts
/// of seconds; run on the pool (`Handle::block_on` from its thread), it would hold one of its
/// few pixel workers idle all that time, and a slow or failing S3 would stall every decode and
/// render. So the pool only encodes, and the caller's task awaits the upload.
#[derive(Debug, Default)]
#[must_use = "an object store's write is sent only by `Written::finish`"]
pub struct Written {
    uploads: Vec<objects::Upload>,
}

/// A stored image opened for streaming.
pub struct Opened {
    /// Its size in bytes (`Content-Length`).
    pub length: u64,
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

/// An original to decode on the pool: a file, read there like the writes are written, or the
/// bytes an object store has already sent.
#[derive(Debug)]
pub enum Readable {
    File(PathBuf),
    Loaded(Bytes),
}

#[derive(Debug, Clone)]
enum Backend {
    Directory(Directory),
    Objects(Objects),
}

impl ImageFiles {
    /// The store `images.store` names: `<data_dir>/images` when unset, a `file://` directory,
    /// or an `s3://` bucket. An object store is asked for a listing first, so that a wrong
    /// endpoint, bucket or key stops the start instead of the first image.
    pub async fn from_config(config: &ImagesConfig, data_dir: &Path) -> io::Result<ImageFiles> {
        let invalid = |error| io::Error::new(io::ErrorKind::InvalidInput, error);
        if let Some((builder, prefix)) = config.s3_store().map_err(invalid)? {
            let store = config.store.as_deref().unwrap_or_default().trim();
            let objects = Objects::connect(builder, prefix, store).await?;
            return Ok(ImageFiles { backend: Backend::Objects(objects) });
        }
        ImageFiles::in_directory(&config.store_directory(data_dir).map_err(invalid)?)
    }

    /// Uses (and creates) `<data_dir>/images`.
    pub fn open(data_dir: &Path) -> io::Result<ImageFiles> {
        ImageFiles::in_directory(&data_dir.join("images"))
    }

    /// Uses (and creates) `dir` itself.
    pub fn in_directory(dir: &Path) -> io::Result<ImageFiles> {
        Ok(ImageFiles { backend: Backend::Directory(Directory::open(dir)?) })
    }

    /// Keys under `prefix` of `store`; nothing is asked of the store until an image is.
    pub fn in_object_store(
        store: Arc<dyn object_store::ObjectStore>,
        prefix: object_store::path::Path,
    ) -> ImageFiles {
        ImageFiles { backend: Backend::Objects(Objects::new(store, prefix)) }
    }

    /// Stores `bytes` as `stored` of job `id`, replacing what was there. Blocking: call it on
    /// the image pool, then [`Written::finish`] the result on the runtime.
    pub fn write(&self, id: &JobId, stored: &Stored, bytes: Bytes) -> io::Result<Written> {
        match &self.backend {
            Backend::Directory(directory) => {
                directory.write(id, stored, &bytes)?;
                Ok(Written::default())
            }
            Backend::Objects(objects) => {
                Ok(Written { uploads: vec![objects.upload(id, stored, bytes)] })
            }
        }
    }

    /// The job's original, to [`Readable::read`] on the pool.
    pub async fn readable(&self, id: &JobId, format: ImageFormat) -> io::Result<Readable> {
        let stored = Stored::Original(format);
        match &self.backend {
            Backend::Directory(directory) => Ok(Readable::File(directory.path(id, &stored))),
            Backend::Objects(objects) => Ok(Readable::Loaded(objects.read(id, &stored).await?)),
        }
    }

    /// Reads `stored` of job `id` whole (a partial image, the source of an edit).
    pub async fn read(&self, id: &JobId, stored: &Stored) -> io::Result<Bytes> {
        match &self.backend {
            Backend::Directory(directory) => directory.read(id, stored).await,
            Backend::Objects(objects) => objects.read(id, stored).await,
        }
    }

    /// Opens `stored` of job `id` to stream it; `NotFound` when it is not there.
    pub async fn open_stream(&self, id: &JobId, stored: &Stored) -> io::Result<Opened> {
        match &self.backend {
            Backend::Directory(directory) => directory.open_stream(id, stored).await,
            Backend::Objects(objects) => objects.open_stream(id, stored).await,
        }
    }

    /// Whether `stored` of job `id` is there; a store that cannot say counts as no.
    pub async fn exists(&self, id: &JobId, stored: &Stored) -> bool {
        match &self.backend {
            Backend::Directory(directory) => directory.exists(id, stored).await,
            Backend::Objects(objects) => objects.exists(id, stored).await,
        }
    }

    /// Removes the job's partial image, if any.
    pub async fn delete_partial(&self, id: &JobId) {
        match &self.backend {
            Backend::Directory(directory) => directory.delete_partial(id).await,
            Backend::Objects(objects) => objects.delete_partial(id).await,
        }
    }

    /// Removes the job's image in whatever format it was stored, its renditions and its
    /// partial image. Missing ones are fine.
    pub async fn delete(&self, id: &JobId) {
        match &self.backend {
            Backend::Directory(directory) => directory.delete(id).await,
            Backend::Objects(objects) => objects.delete(id).await,
        }
    }
}

impl Stored {
    /// Its name under the store's root, the same for both backends.
    fn name(&self, id: &JobId) -> String {
        match self {
            Stored::Original(format) => format!("{id}.{}", format.extension()),
            Stored::Partial => format!("{id}.partial"),
            Stored::Rendition(name) => format!("{RENDITIONS}/{id}/{name}"),
        }
    }
}

/// The folder (or key segment) renditions go under, one folder per job.
const RENDITIONS: &str = "renditions";

impl Written {
    /// Adds the rest of another write, to finish both at once.
    pub fn extend(&mut self, other: Written) {
        self.uploads.extend(other.uploads);
    }

    /// Sends what is left (the uploads, at once). Call it on the runtime, never on the pool.
    pub async fn finish(self) -> io::Result<()> {
        futures::future::try_join_all(self.uploads.into_iter().map(objects::Upload::send))
            .await
            .map(drop)
    }
}

impl Readable {
    /// The bytes. Blocking for a file (read in `CHUNK`s): call it on the pool.
    pub fn read(self) -> io::Result<Bytes> {
        match self {
            Readable::File(path) => directory::read_file(&path).map(Bytes::from),
            Readable::Loaded(bytes) => Ok(bytes),
        }
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("length", &self.length).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
