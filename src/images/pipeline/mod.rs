//! The image pipeline: every image a provider hands us is validated and decoded once, stored
//! once as the original, previewed (ThumbHash) and given its prerendered variants; any other
//! variant is rendered on first request and kept. All pixel work runs on the [`ImagePool`].

pub mod pool;
pub mod render;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;

pub use self::pool::{ImagePool, PoolError};
use self::render::Pixels;
use super::{
    ImageError, ImageInfo, ImageLimits, Rendition, Variant, VariantError,
    files::{ImageFiles, Stored, Written},
};
use crate::{images::settings::ImagesConfig, jobs::JobId};

/// Why the pipeline could not finish with an image.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The bytes are not an image we accept (the provider's fault, not ours).
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("could not store the image: {0}")]
    Storage(#[from] std::io::Error),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// A setting the pipeline cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum PipelineBuildError {
    #[error("images.prerender `{query}`: {error}")]
    Prerender { query: String, error: VariantError },
}

/// What an arriving image became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub info: ImageInfo,
    /// ThumbHash, base64.
    pub preview: Option<String>,
}

#[derive(Debug)]
pub struct ImagePipeline {
    pool: ImagePool,
    files: ImageFiles,
    limits: ImageLimits,
    quality: u8,
    prerender: Vec<Variant>,
    /// Renditions being rendered now (by job and file name), so concurrent requests for one
    /// wait for a single render.
    rendering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImagePipeline {
    /// The pipeline doing its pixel work on `pool` (shared with providers parsing answers).
    pub fn new(
        config: &ImagesConfig,
        files: ImageFiles,
        pool: ImagePool,
    ) -> Result<ImagePipeline, PipelineBuildError> {
        let prerender = config
            .prerender
            .iter()
            .map(|query| {
                Variant::parse_query(query)
                    .map_err(|error| PipelineBuildError::Prerender { query: query.clone(), error })
            })
            .collect::<Result<_, _>>()?;
        Ok(ImagePipeline {
            pool,
            files,
            limits: ImageLimits { max_bytes: config.max_bytes, max_pixels: config.max_pixels },
            quality: config.quality,
            prerender,
            rendering: Mutex::new(HashMap::new()),
        })
    }

    pub fn files(&self) -> &ImageFiles {
        &self.files
    }

    pub fn pool(&self) -> &ImagePool {
        &self.pool
    }

    /// Stores `bytes` as job `id`'s partial image once they prove a whole image within the
    /// limits; anything else is refused with [`PipelineError::Image`] and nothing is stored.
    pub async fn store_partial(&self, id: &JobId, bytes: Bytes) -> Result<(), PipelineError> {
        let (limits, files, id) = (self.limits, self.files.clone(), id.clone());
        let written = self
            .pool
            .run(move || -> Result<Written, PipelineError> {
                super::inspect(&bytes, limits)?;
                Ok(files.write(&id, &Stored::Partial, bytes)?)
            })
            .await??;
        Ok(written.finish().await?)
    }

    /// Takes a finished image for job `id`: decodes it once, computes its preview and
    /// prerendered variants, then stores the variants and the original bytes unchanged, all
    /// in one task on the pool (an object store's uploads follow it). Nothing is stored unless
    /// the image is valid; everything is stored when this returns.
    pub async fn ingest(&self, id: &JobId, bytes: Bytes) -> Result<Ingested, PipelineError> {
        let (limits, quality, prerender) = (self.limits, self.quality, self.prerender.clone());
        let (files, id) = (self.files.clone(), id.clone());
        let (ingested, written) = self
            .pool
            .run(move || -> Result<(Ingested, Written), PipelineError> {
                let decoded = super::decode(&bytes, limits)?;
                let info = decoded.info;
                let pixels = Pixels::of(decoded.pixels);
                crate::priority::offer_cpu();
                // A preview that fails costs only the preview.
                let preview = pixels.thumbhash().ok();
                let mut renders = Vec::new();
                for rendition in prerender.iter().filter_map(|variant| variant.resolve(&info)) {
                    if !renders.iter().any(|(done, _)| *done == rendition) {
                        crate::priority::offer_cpu();
                        renders.push((rendition, pixels.render(rendition, quality)?));
                    }
                }
                drop(pixels);
                let mut written = Written::default();
                for (rendition, rendered) in renders {
                    let stored = Stored::Rendition(rendition.file_name());
                    written.extend(files.write(&id, &stored, Bytes::from(rendered))?);
                }
                written.extend(files.write(&id, &Stored::Original(info.format), bytes)?);
                Ok((Ingested { info, preview }, written))
            })
            .await??;
        written.finish().await?;
        Ok(ingested)
    }

    /// Makes sure `rendition` of job `id`'s image (`original`) is stored, rendering it now if
    /// it is not yet; read it with [`ImageFiles::open_stream`]. Concurrent callers share one
    /// render. True when this call rendered it.
    pub async fn rendition(
        &self,
        id: &JobId,
        original: &ImageInfo,
        rendition: Rendition,
    ) -> Result<bool, PipelineError> {
        let stored = Stored::Rendition(rendition.file_name());
        if self.files.exists(id, &stored).await {
            return Ok(false);
        }
        let key = format!("{id}/{}", rendition.file_name());
        let gate = {
            let mut rendering = self.rendering.lock().unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(rendering.entry(key.clone()).or_default())
        };
        // However this call ends (even dropped mid-render), the entry goes.
        let _forget = Forget { rendering: &self.rendering, key: &key };
        let _turn = gate.lock().await;
        if self.files.exists(id, &stored).await {
            return Ok(false);
        }
        let (limits, quality) = (self.limits, self.quality);
        // A file is read on the pool; an object store's bytes are fetched here, before it.
        let source = self.files.readable(id, original.format).await?;
        let (files, id) = (self.files.clone(), id.clone());
        let written = self
            .pool
            .run(move || -> Result<Written, PipelineError> {
                let bytes = source.read()?;
                let pixels = Pixels::of(super::decode(&bytes, limits)?.pixels);
                let encoded = pixels.render(rendition, quality)?;
                Ok(files.write(&id, &stored, Bytes::from(encoded))?)
            })
            .await??;
        written.finish().await?;
        Ok(true)
    }
}

/// Removes a finished render from the in-flight map. Callers still waiting on its gate find
/// the rendition stored; later callers find it before ever looking at the map.
struct Forget<'a> {
    rendering: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.rendering.lock().unwrap_or_else(|poison| poison.into_inner()).remove(self.key);
    }
}

#[cfg(test)]
mod tests;
