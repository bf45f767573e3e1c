//! The image pipeline: every image a provider hands us is validated and decoded once, stored
//! once as the original, previewed (ThumbHash) and given its prerendered variants; any other
//! variant is rendered on first request and kept. All pixel work runs on the [`ImagePool`].

pub mod pool;
pub mod render;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use bytes::Bytes;

pub use self::pool::{ImagePool, PoolError};
use self::render::Pixels;
use super::{
    ImageError, ImageInfo, ImageLimits, Rendition, Variant, VariantError, files::ImageFiles,
};
use crate::{config::ImagesConfig, jobs::JobId};

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
    /// Renditions being rendered now, so concurrent requests for one wait for a single render.
    rendering: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
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
        self.pool
            .run(move || -> Result<(), PipelineError> {
                super::inspect(&bytes, limits)?;
                Ok(files.write_partial(&id, &bytes)?)
            })
            .await?
    }

    /// Takes a finished image for job `id`: decodes it once, computes its preview and
    /// prerendered variants, then stores the variants and the original bytes unchanged, all
    /// in one task on the pool. Nothing is stored unless the image is valid.
    pub async fn ingest(&self, id: &JobId, bytes: Bytes) -> Result<Ingested, PipelineError> {
        let (limits, quality, prerender) = (self.limits, self.quality, self.prerender.clone());
        let (files, id) = (self.files.clone(), id.clone());
        self.pool
            .run(move || -> Result<Ingested, PipelineError> {
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
                for (rendition, rendered) in renders {
                    files.write_rendition(&id, &rendition.file_name(), &rendered)?;
                }
                files.write(&id, info.format, &bytes)?;
                Ok(Ingested { info, preview })
            })
            .await?
    }

    /// The file of `rendition` of job `id`'s image (`original`), rendered now if it is not
    /// stored yet. Concurrent callers share one render. The flag says whether this call
    /// rendered it.
    pub async fn rendition(
        &self,
        id: &JobId,
        original: &ImageInfo,
        rendition: Rendition,
    ) -> Result<(PathBuf, bool), PipelineError> {
        let path = self.files.rendition_path(id, &rendition.file_name());
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok((path, false));
        }
        let gate = {
            let mut rendering = self.rendering.lock().unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(rendering.entry(path.clone()).or_default())
        };
        // However this call ends (even dropped mid-render), the entry goes.
        let _forget = Forget { rendering: &self.rendering, path: &path };
        let rendered = async {
            let _turn = gate.lock().await;
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Ok(false);
            }
            let (limits, quality) = (self.limits, self.quality);
            let (files, id, format) = (self.files.clone(), id.clone(), original.format);
            self.pool
                .run(move || -> Result<(), PipelineError> {
                    let bytes = files.read(&id, format)?;
                    let pixels = Pixels::of(super::decode(&bytes, limits)?.pixels);
                    let encoded = pixels.render(rendition, quality)?;
                    Ok(files.write_rendition(&id, &rendition.file_name(), &encoded)?)
                })
                .await??;
            Ok::<_, PipelineError>(true)
        }
        .await?;
        Ok((path.clone(), rendered))
    }
}

/// Removes a finished render from the in-flight map. Callers still waiting on its gate find
/// the file stored; later callers find it before ever looking at the map.
struct Forget<'a> {
    rendering: &'a Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    path: &'a PathBuf,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.rendering.lock().unwrap_or_else(|poison| poison.into_inner()).remove(self.path);
    }
}

#[cfg(test)]
mod tests;
