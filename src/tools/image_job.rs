//! The image-job code every image tool shares: drawing along the provider route while showing
//! partial images, the pipeline check of each image a provider returns, the failure a route
//! that gave up becomes, finishing from an image an earlier attempt stored, and the output a
//! completed image job stores ([`super::image_record::ImageJobOutput`]).

use futures::{FutureExt as _, future::BoxFuture};
use serde_json::{Value, json};

use super::{
    Services,
    image_record::{ImageJobOutput, RESUMED_PROVIDER},
};
use crate::{
    images::{
        ImageFormat,
        files::Stored,
        pipeline::{Ingested, PipelineError},
    },
    jobs::{Job, JobId, runner::JobFailure},
    providers::{
        GeneratedImage, ImageRequest, PartialImage, Partials,
        router::{Rejected, RouteError, RouteFailure, Routed},
    },
};

/// Partial images waiting to be shown; the newest wins, so a slow disk never holds a provider.
const PARTIALS_QUEUED: usize = 4;

/// Draws along the route while showing each partial image the provider streams: it becomes
/// the placeholder at `image_url` and a `job.progress` event. Partials stop with the drawing.
pub async fn generate_showing_partials(
    services: &Services,
    job: &Job,
    request: &ImageRequest,
) -> Result<Routed<Kept>, RouteFailure<JobFailure>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<PartialImage>(PARTIALS_QUEUED);
    let partials = Partials::new(move |partial| {
        // A full queue means the disk is behind; dropping this partial loses nothing lasting.
        let _ = sender.try_send(partial);
    });
    let drawing = async move {
        let routed =
            services.router.generate_checked(request, &partials, check(services, job)).await;
        drop(partials);
        routed
    };
    let showing = async {
        let mut shown = 0_u32;
        while let Some(partial) = receiver.recv().await {
            if show_partial(services, job, partial, shown + 1).await {
                shown += 1;
            }
        }
    };
    let (routed, ()) = tokio::join!(drawing, showing);
    services.pipeline.files().delete_partial(&job.id).await;
    routed
}

/// Checks one partial image, stores it as the job's placeholder and reports it. False when it
/// was not shown (unusable bytes, or the job ended meanwhile).
async fn show_partial(services: &Services, job: &Job, partial: PartialImage, number: u32) -> bool {
    match services.pipeline.store_partial(&job.id, partial.bytes).await {
        Ok(()) => {}
        Err(PipelineError::Image(_)) => {
            tracing::debug!(job = %job.id, index = partial.index, "skipping an unusable partial image");
            return false;
        }
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "could not store a partial image");
            return false;
        }
    }
    match services.runner.progress(&job.id, &json!({ "partial_images": number })).await {
        Ok(shown) => shown,
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "could not record a partial image");
            false
        }
    }
}

/// What an image job's attempt ends with: the output of the image the route kept, or the
/// failure of a route that gave up.
pub fn finished(
    job: &Job,
    routed: Result<Routed<Kept>, RouteFailure<JobFailure>>,
) -> Result<Value, JobFailure> {
    routed.map(output).map_err(|failure| route_failure(job, failure))
}

/// A prompt as a repeat of the call would be recognised: case and spacing do not make a
/// different picture.
pub fn same_words(prompt: &str) -> String {
    prompt.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Deletes what an image job stored (its placeholder, partials and image), when the job is
/// cancelled before it ends or purged after.
pub async fn discard(services: &Services, id: &JobId) {
    services.pipeline.files().delete(id).await;
}

/// The job failure for a route that gave up: the spoken sentence of the error chosen, and every
/// attempt kept with the job. The router already retried; the runner does not retry again.
fn route_failure(job: &Job, failure: RouteFailure<JobFailure>) -> JobFailure {
    let RouteFailure { error, attempts } = failure;
    let detail = Some(json!({ "attempts": attempts }));
    match error {
        RouteError::Provider(error) => {
            tracing::warn!(job = %job.id, code = error.code(), attempts = attempts.len(), "no provider made the image");
            JobFailure {
                code: error.code().to_owned(),
                message: error.speakable(),
                retryable: false,
                retry_after: None,
                detail,
            }
        }
        // Ours, not the providers': the runner's retry policy applies.
        RouteError::Aborted(failure) => JobFailure { detail, ..failure },
    }
}

fn permanent(code: &str, message: &str) -> JobFailure {
    JobFailure {
        detail: None,
        code: code.to_owned(),
        message: message.to_owned(),
        retryable: false,
        retry_after: None,
    }
}

/// An image that passed the pipeline: stored once, previewed, prerendered.
#[derive(Debug)]
pub struct Kept {
    ingested: Ingested,
    bytes: u64,
}

/// The route's check of a provider's image: the pipeline (validate, store once, preview,
/// prerender). An image it cannot use is that provider's failure, so the route tries the
/// next one; a storage failure is ours and stops the route. Shared by every image tool.
pub fn check<'a>(
    services: &'a Services,
    job: &'a Job,
) -> impl Fn(GeneratedImage) -> BoxFuture<'a, Result<Kept, Rejected<JobFailure>>> + 'a {
    move |image: GeneratedImage| {
        async move {
            let bytes = image.bytes.len() as u64;
            match services.pipeline.ingest(&job.id, image.bytes).await {
                Ok(ingested) => Ok(Kept { ingested, bytes }),
                Err(PipelineError::Image(error)) => {
                    tracing::warn!(job = %job.id, %error, "provider returned an unusable image");
                    Err(Rejected::Unusable(error.to_string()))
                }
                Err(PipelineError::Storage(error)) => {
                    tracing::error!(job = %job.id, %error, "could not store image");
                    Err(Rejected::Abort(JobFailure {
                        detail: None,
                        code: "storage".to_owned(),
                        message: "I couldn't save the image; please try again.".to_owned(),
                        retryable: true,
                        retry_after: None,
                    }))
                }
                Err(PipelineError::Pool(error)) => {
                    tracing::error!(job = %job.id, %error, "image pipeline failed");
                    Err(Rejected::Abort(permanent(
                        "internal",
                        "Something went wrong checking the image.",
                    )))
                }
            }
        }
        .boxed()
    }
}

/// The output of a job whose earlier attempt stored its image and then died (its process
/// killed between storing the image and committing the job): the job finishes from that
/// image instead of asking a provider for another one. A stored original is whole (written
/// last, atomically), so it is the image that attempt made. Only later attempts look.
pub async fn stored_earlier(services: &Services, job: &Job) -> Option<Value> {
    if job.attempts < 2 {
        return None;
    }
    let files = services.pipeline.files();
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp] {
        let stored = Stored::Original(format);
        if !files.exists(&job.id, &stored).await {
            continue;
        }
        let bytes = files.read(&job.id, &stored).await.ok()?;
        let size = bytes.len() as u64;
        // Again through the pipeline: its preview and renditions were not recorded either.
        let ingested = services.pipeline.ingest(&job.id, bytes).await.ok()?;
        tracing::info!(job = %job.id, "finishing from the image an earlier attempt stored");
        let output = ImageJobOutput {
            image: ingested.info,
            bytes: size,
            preview: ingested.preview,
            provider: RESUMED_PROVIDER.to_owned(),
            model: String::new(),
            attempts: Vec::new(),
        };
        return serde_json::to_value(output).ok();
    }
    None
}

/// The job's output for an image the route kept.
fn output(routed: Routed<Kept>) -> Value {
    let output = ImageJobOutput {
        image: routed.value.ingested.info,
        bytes: routed.value.bytes,
        preview: routed.value.ingested.preview,
        provider: routed.provider.to_owned(),
        model: routed.model,
        attempts: routed.attempts,
    };
    serde_json::to_value(output).unwrap_or_default()
}
