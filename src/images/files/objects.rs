//! Images as objects in a bucket (S3 or S3-compatible, through `object_store`): one PUT per
//! image, awaited on the runtime, and keys `<prefix>/<layout name>`.

use std::{io, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt as _, RetryConfig, aws::AmazonS3Builder,
    path::Path as ObjectPath,
};

use super::{Opened, RENDITIONS, Stored};
use crate::{images::ImageFormat, jobs::JobId};

/// Retries of one request: a few, within seconds. object_store's default (10 retries within
/// 3 minutes) would keep a viewer's image request or a job waiting far past any use.
const RETRY: RetryConfig = RetryConfig {
    backoff: BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
    },
    max_retries: 3,
    retry_timeout: Duration::from_secs(15),
};
/// The listing at start must answer within this, or the start fails.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

/// An image encoded on the pool, to PUT from the runtime.
pub(super) struct Upload {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    bytes: Bytes,
}

impl Objects {
    pub(super) fn new(store: Arc<dyn ObjectStore>, prefix: ObjectPath) -> Objects {
        Objects { store, prefix }
    }

    /// Builds the S3 client and lists the prefix once: that proves the endpoint answers, the
    /// bucket exists and the credentials may list, which deleting renditions needs. `store` is
    /// the setting, for the error.
    pub(super) async fn connect(
        builder: AmazonS3Builder,
        prefix: ObjectPath,
        store: &str,
    ) -> io::Result<Objects> {
        let built = builder.with_retry(RETRY).build().map_err(io::Error::other)?;
        let objects = Objects::new(Arc::new(built), prefix);
        let listed = objects.store.list_with_delimiter(Some(&objects.prefix));
        match tokio::time::timeout(CONNECT_WITHIN, listed).await {
            Ok(Ok(_)) => Ok(objects),
            Ok(Err(error)) => {
                Err(io::Error::other(format!("images.store `{store}` cannot be listed: {error}")))
            }
            Err(_elapsed) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("images.store `{store}` did not answer within {CONNECT_WITHIN:?}"),
            )),
        }
    }

    fn path(&self, id: &JobId, stored: &Stored) -> ObjectPath {
        let mut path = self.prefix.clone();
        path.extend(stored.name(id).split('/'));
        path
    }

    pub(super) fn upload(&self, id: &JobId, stored: &Stored, bytes: Bytes) -> Upload {
        Upload { store: Arc::clone(&self.store), path: self.path(id, stored), bytes }
    }

    pub(super) async fn read(&self, id: &JobId, stored: &Stored) -> io::Result<Bytes> {
        Ok(self.store.get(&self.path(id, stored)).await?.bytes().await?)
    }

    pub(super) async fn open_stream(&self, id: &JobId, stored: &Stored) -> io::Result<Opened> {
        let found = self.store.get(&self.path(id, stored)).await?;
        let length = found.meta.size;
        Ok(Opened { length, body: found.into_stream().map_err(io::Error::from).boxed() })
    }

    pub(super) async fn exists(&self, id: &JobId, stored: &Stored) -> bool {
        self.store.head(&self.path(id, stored)).await.is_ok()
    }

    pub(super) async fn delete_partial(&self, id: &JobId) {
        self.remove(id, &self.path(id, &Stored::Partial)).await;
    }

    pub(super) async fn delete(&self, id: &JobId) {
        self.delete_partial(id).await;
        let mut renditions = self.prefix.clone();
        renditions.extend([RENDITIONS, &id.to_string()]);
        let listed: Result<Vec<_>, _> = self.store.list(Some(&renditions)).try_collect().await;
        match listed {
            Ok(found) => {
                for meta in found {
                    self.remove(id, &meta.location).await;
                }
            }
            Err(error) => tracing::warn!(job = %id, %error, "could not list image renditions"),
        }
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp] {
            self.remove(id, &self.path(id, &Stored::Original(format))).await;
        }
    }

    /// Deletes one object; one already gone is fine (S3 says so with success, others with
    /// `NotFound`).
    async fn remove(&self, id: &JobId, path: &ObjectPath) {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => tracing::warn!(job = %id, %error, "could not delete image object"),
        }
    }
}

impl Upload {
    /// One PUT: the object appears whole, replacing what was there, or not at all.
    pub(super) async fn send(self) -> io::Result<()> {
        self.store.put(&self.path, self.bytes.into()).await?;
        Ok(())
    }
}

impl std::fmt::Debug for Objects {
    // The store's own `Debug` may show its configuration; its `Display` names only the bucket.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}
