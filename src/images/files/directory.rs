//! Images as files in one directory: each written to a temporary name, synced, then renamed
//! into place, in 64 KB system calls from the image pool.

use std::{
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use futures::StreamExt as _;
use tokio_util::io::ReaderStream;

use super::{Opened, RENDITIONS, Stored};
use crate::{images::ImageFormat, jobs::JobId};

/// The most one read or write system call copies. A kernel built without preemption (as on
/// our machines) lets a thread finish a copy before anyone else gets its core, SCHED_IDLE or
/// not, and one 2.4 MB write into the page cache cost about 8 ms of CPU here. Between chunks
/// the pool thread is back in user space and offers the core ([`crate::priority::offer_cpu`]).
pub(super) const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(super) struct Directory {
    dir: PathBuf,
}

impl Directory {
    /// Uses (and creates) `dir`.
    pub(super) fn open(dir: &Path) -> io::Result<Directory> {
        std::fs::create_dir_all(dir)
            .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", dir.display())))?;
        Ok(Directory { dir: dir.to_owned() })
    }

    pub(super) fn path(&self, id: &JobId, stored: &Stored) -> PathBuf {
        self.dir.join(stored.name(id))
    }

    fn renditions_dir(&self, id: &JobId) -> PathBuf {
        self.dir.join(RENDITIONS).join(id.to_string())
    }

    // The writer blocks: it is called from the image pool, so copying megabytes into the page
    // cache and waiting for the disk happen at the pool's idle priority. Measured on the request
    // threads (tokio's blocking pool), these copies were nearly a third of the extra CPU a
    // burst of image jobs put at normal priority. It copies in `CHUNK`s.

    /// Stores `bytes` as `stored`; readers see the previous file or this one, whole. Blocking.
    pub(super) fn write(&self, id: &JobId, stored: &Stored, bytes: &[u8]) -> io::Result<()> {
        if let Stored::Rendition(_) = stored {
            std::fs::create_dir_all(self.renditions_dir(id))?;
        }
        let path = self.path(id, stored);
        // Unique per write, so that instances sharing the directory never share a temporary.
        let temporary = self.dir.join(format!(".{id}.{}.tmp", ulid::Ulid::generate()));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            for chunk in bytes.chunks(CHUNK) {
                file.write_all(chunk)?;
                crate::priority::offer_cpu();
            }
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    pub(super) async fn read(&self, id: &JobId, stored: &Stored) -> io::Result<Bytes> {
        tokio::fs::read(self.path(id, stored)).await.map(Bytes::from)
    }

    pub(super) async fn open_stream(&self, id: &JobId, stored: &Stored) -> io::Result<Opened> {
        let file = tokio::fs::File::open(self.path(id, stored)).await?;
        let length = file.metadata().await?.len();
        Ok(Opened { length, body: ReaderStream::new(file).boxed() })
    }

    pub(super) async fn exists(&self, id: &JobId, stored: &Stored) -> bool {
        tokio::fs::try_exists(self.path(id, stored)).await.unwrap_or(false)
    }

    pub(super) async fn delete_partial(&self, id: &JobId) {
        remove(id, self.path(id, &Stored::Partial)).await;
    }

    pub(super) async fn delete(&self, id: &JobId) {
        self.delete_partial(id).await;
        match tokio::fs::remove_dir_all(self.renditions_dir(id)).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(job = %id, %error, "could not delete image renditions"),
        }
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp] {
            remove(id, self.path(id, &Stored::Original(format))).await;
        }
    }
}

/// Reads a whole file. Blocking, in `CHUNK`s like the writer.
pub(super) fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(file.metadata()?.len().try_into().unwrap_or(0));
    while (&mut file).take(CHUNK as u64).read_to_end(&mut bytes)? > 0 {}
    Ok(bytes)
}

async fn remove(id: &JobId, path: PathBuf) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(job = %id, %error, "could not delete image file"),
    }
}
