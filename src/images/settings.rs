//! `[images]`: the image pipeline's worker pool, its limits against hostile images, the
//! variants rendered as soon as an image arrives, and where images are kept (`store`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use object_store::{
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path as ObjectPath,
};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use schemars::JsonSchema;

use crate::settings::Invalid;

/// `[images]`: the limits images are checked against, the variants made and where they are kept.
#[derive(Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Threads decoding, resizing and encoding images, at the lowest CPU priority so requests
    /// are answered first. `0`: one less than the CPU count, at least one.
    pub workers: usize,
    /// Image tasks admitted to the pool at once (waiting or running); more wait their turn
    /// without holding a thread.
    pub queue: usize,
    /// Largest image accepted from a provider or a URL, in bytes.
    pub max_bytes: usize,
    /// Largest image accepted, in pixels (width x height), checked before decoding: a small
    /// file declaring a huge canvas (a decompression bomb) is refused unread.
    pub max_pixels: u64,
    /// Lossy quality (1 to 100) of WebP and JPEG variants.
    pub quality: u8,
    /// Variants rendered when an image arrives, as `image_url` queries (`w=512&format=webp`),
    /// so the first viewer does not wait for them. Checked at start by the image pipeline.
    pub prerender: Vec<String>,
    /// Where images are kept, so that several instances can share them. Unset:
    /// `<data_dir>/images`. `file:///shared/dir`: that directory (a shared filesystem; writes
    /// are synced and renamed into place). `s3://bucket/prefix`: an S3 bucket or an
    /// S3-compatible store, reached with the AWS variables and `[images.s3]`.
    pub store: Option<String>,
    /// Options of an `s3://` store by object_store's names, with or without `aws_`:
    /// `endpoint` (an S3-compatible server), `region`, `access_key_id`, `secret_access_key`,
    /// `session_token`, `allow_http`, `virtual_hosted_style_request`. They win over the AWS
    /// variables. Never logged (only `endpoint`, `region` and flags are shown).
    #[serde(skip_serializing, deserialize_with = "options")]
    pub s3: BTreeMap<String, String>,
    /// The AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...) as they were when the
    /// configuration was loaded, lower-cased (configuration reads them, as it reads every
    /// variable); empty in a configuration built in code.
    #[serde(skip)]
    pub aws_environment: BTreeMap<String, String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            workers: 0,
            queue: 64,
            max_bytes: 32 * 1024 * 1024,
            // 4096 x 4096 is well above every provider size we request.
            max_pixels: 4096 * 4096,
            quality: 80,
            prerender: vec!["w=512&format=webp".to_owned()],
            store: None,
            s3: BTreeMap::new(),
            aws_environment: BTreeMap::new(),
        }
    }
}

/// What `images.store` says, checked. Private: other modules ask [`ImagesConfig::s3_store`]
/// and [`ImagesConfig::store_directory`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// `<data_dir>/images`.
    DataDir,
    /// A `file://` directory.
    Directory(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: ObjectPath },
}

impl ImagesConfig {
    /// The worker count in force.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1).max(1))
    }

    /// An `s3://` store as configured: a builder holding the bucket, the AWS variables and then
    /// `[images.s3]` (which win), and the prefix every key goes under. `None` when images are
    /// kept in a directory ([`ImagesConfig::store_directory`]).
    pub fn s3_store(&self) -> Result<Option<(AmazonS3Builder, ObjectPath)>, Invalid> {
        let Location::S3 { bucket, prefix } = self.location()? else { return Ok(None) };
        let mut builder = AmazonS3Builder::new();
        // Variables first, settings second: for a key spelt two ways (`AWS_ENDPOINT_URL`,
        // `endpoint`) the setting wins because it is applied last.
        for (key, value) in self.aws_environment.iter().chain(&self.s3) {
            let parsed = key.parse::<AmazonS3ConfigKey>().map_err(|_| Invalid {
                field: "images.s3",
                message: format!(
                    "unknown option `{key}`; use object_store's names such as endpoint, region, \
                     access_key_id, secret_access_key, allow_http"
                ),
            })?;
            builder = builder.with_config(parsed, value);
        }
        Ok(Some((builder.with_bucket_name(bucket), prefix)))
    }

    /// The directory images are kept in when [`ImagesConfig::s3_store`] is `None`:
    /// `<data_dir>/images` when `store` is unset, else the `file://` directory.
    pub fn store_directory(&self, data_dir: &Path) -> Result<PathBuf, Invalid> {
        match self.location()? {
            Location::Directory(dir) => Ok(dir),
            Location::DataDir | Location::S3 { .. } => Ok(data_dir.join("images")),
        }
    }

    fn location(&self) -> Result<Location, Invalid> {
        let Some(store) = self.store.as_deref().map(str::trim).filter(|store| !store.is_empty())
        else {
            return Ok(Location::DataDir);
        };
        let invalid = |message: String| Invalid { field: "images.store", message };
        let url = Url::parse(store).map_err(|error| {
            invalid(format!(
                "`{store}` is not a URL ({error}); use file:///a/directory or s3://bucket/prefix"
            ))
        })?;
        // Said without repeating the value: it may hold a secret.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or images.s3)"
                    .to_owned(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(format!("`{store}` may have no query or fragment")));
        }
        match url.scheme() {
            "file" => {
                let dir = url.to_file_path().map_err(|()| {
                    invalid(format!("`{store}` is not a local absolute path; use file:///a/dir"))
                })?;
                Ok(Location::Directory(dir))
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(invalid(format!(
                        "`{store}` names no bucket; use s3://bucket or s3://bucket/prefix"
                    )));
                }
                if url.port().is_some() {
                    return Err(invalid(format!(
                        "`{store}` has a port; a server of your own goes in images.s3.endpoint \
                         (or AWS_ENDPOINT_URL)"
                    )));
                }
                let prefix = ObjectPath::from_url_path(url.path())
                    .map_err(|error| invalid(format!("the prefix of `{store}`: {error}")))?;
                Ok(Location::S3 { bucket: bucket.to_owned(), prefix })
            }
            scheme => Err(invalid(format!(
                "`{scheme}:` is not supported; use file:///a/directory or s3://bucket/prefix, or \
                 leave it unset for <data_dir>/images"
            ))),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |field, message: String| Err(Invalid { field, message });
        if self.queue == 0 {
            return invalid("images.queue", "must be at least 1".to_owned());
        }
        if self.max_bytes < 1024 {
            return invalid("images.max_bytes", format!("{} is too small", self.max_bytes));
        }
        if self.max_pixels < 64 * 64 {
            return invalid("images.max_pixels", format!("{} is too small", self.max_pixels));
        }
        if !(1..=100).contains(&self.quality) {
            return invalid("images.quality", format!("{} is not between 1 and 100", self.quality));
        }
        // Building makes no request; it checks the values (a flag that is not a bool, an
        // access key without its secret) so that a typo fails at start, not at the first image.
        if let Some((builder, _prefix)) = self.s3_store()? {
            builder
                .build()
                .map_err(|error| Invalid { field: "images.s3", message: error.to_string() })?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ImagesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagesConfig")
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .field("max_bytes", &self.max_bytes)
            .field("max_pixels", &self.max_pixels)
            .field("quality", &self.quality)
            .field("prerender", &self.prerender)
            .field("store", &self.store)
            .field("s3", &Shown(&self.s3))
            .field("aws_environment", &Shown(&self.aws_environment))
            .finish()
    }
}

/// S3 options as logs may show them: where and how, never who.
struct Shown<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: [&str; 6] = [
            "endpoint",
            "endpoint_url",
            "region",
            "default_region",
            "allow_http",
            "virtual_hosted_style_request",
        ];
        let mut map = f.debug_map();
        for (key, value) in self.0 {
            let shown = SHOWN.contains(&key.strip_prefix("aws_").unwrap_or(key));
            map.entry(key, if shown { value } else { &"<redacted>" });
        }
        map.finish()
    }
}

/// `[images.s3]` values as strings, whether written as strings, flags or numbers (TOML's
/// `allow_http = true`, and figment reads `OFFSTAGE_IMAGES__S3__ALLOW_HTTP=true` as a bool).
fn options<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Flag(bool),
        Number(i64),
    }
    let options = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(options
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Scalar::Text(text) => text,
                Scalar::Flag(flag) => flag.to_string(),
                Scalar::Number(number) => number.to_string(),
            };
            (key.to_ascii_lowercase(), value)
        })
        .collect())
}

#[cfg(test)]
mod tests;
