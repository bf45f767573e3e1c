//! `generate_image`: a job tool. The call answers at once with a job handle and an image URL
//! that already works; the provider draws in the background and the result is pushed.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{FutureExt as _, future::BoxFuture};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Annotations, Services, ToolError, typed::JobTool};
use crate::{
    images::{
        ImageFormat, ImageInfo, ImageSize,
        files::Stored,
        pipeline::{Ingested, PipelineError},
    },
    jobs::{Job, JobId, runner::JobFailure},
    providers::{
        GeneratedImage, ImageRequest, PartialImage, Partials,
        router::{Attempt, Rejected, RouteError, RouteFailure, Routed},
    },
};

pub const NAME: &str = "generate_image";
/// Prompts beyond this are truncated by providers anyway and cost the model tokens to write.
pub const MAX_PROMPT_CHARS: usize = 4000;

pub const DESCRIPTION: &str = "Make a picture from a description. Use when the user asks to draw, \
create or show an image. Returns at once; the image is ready later, so tell the user it is on \
its way and do not call again for the same picture.";

/// Arguments of `generate_image`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateImageInput {
    /// What to draw, in plain words.
    pub prompt: String,
    /// Square if omitted.
    pub size: Option<ImageSize>,
}

/// What the job stores as input, and what the image views read back (the requested size).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageJobInput {
    pub prompt: String,
    pub size: ImageSize,
}

impl ImageJobInput {
    pub fn of(job: &Job) -> Option<ImageJobInput> {
        serde_json::from_value(job.input.clone()).ok()
    }
}

/// What a completed job stores as output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageJobOutput {
    #[serde(flatten)]
    pub image: ImageInfo,
    pub bytes: u64,
    /// ThumbHash (base64) of the image, for a blurred stand-in while it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    pub provider: String,
    pub model: String,
    /// Every provider call the job made, the successful one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

impl ImageJobOutput {
    pub fn of(job: &Job) -> Option<ImageJobOutput> {
        job.output.as_ref().and_then(|output| serde_json::from_value(output.clone()).ok())
    }
}

/// Draws one image through the configured providers and stores it beside the job store.
#[derive(Debug)]
pub struct GenerateImage {
    services: Arc<Services>,
}

impl GenerateImage {
    pub fn new(services: Arc<Services>) -> GenerateImage {
        GenerateImage { services }
    }
}

/// Partial images waiting to be shown; the newest wins, so a slow disk never holds a provider.
const PARTIALS_QUEUED: usize = 4;

/// Draws along the route while showing each partial image the provider streams: it becomes
/// the placeholder at `image_url` and a `job.progress` event. Partials stop with the drawing.
pub(super) async fn generate_showing_partials(
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

/// The job failure for a route that gave up: the spoken sentence of the error chosen, and every
/// attempt kept with the job. The router already retried; the runner does not retry again.
pub fn route_failure(job: &Job, failure: RouteFailure<JobFailure>) -> JobFailure {
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

fn validate(input: GenerateImageInput) -> Result<ImageJobInput, ToolError> {
    let prompt = input.prompt.trim();
    if prompt.is_empty() {
        return Err(ToolError::InvalidArguments(
            "The prompt is empty. Describe the picture in a few words, e.g. \"a red fox in the \
             snow\"."
                .to_owned(),
        ));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ToolError::InvalidArguments(format!(
            "The prompt is {chars} characters long; keep it under {MAX_PROMPT_CHARS} by \
             describing only the main subject and style."
        )));
    }
    Ok(ImageJobInput { prompt: prompt.to_owned(), size: input.size.unwrap_or_default() })
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

#[async_trait]
impl JobTool for GenerateImage {
    type Input = GenerateImageInput;
    type Stored = ImageJobInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;

    fn annotations(&self) -> Annotations {
        Annotations {
            read_only: false,
            destructive: false,
            idempotent: false,
            // Truthful per deployment: the built-in sketch provider never leaves the machine.
            open_world: self.services.router.is_remote(),
        }
    }

    fn prepare(&self, input: GenerateImageInput) -> Result<ImageJobInput, ToolError> {
        validate(input)
    }

    /// Case and spacing of the prompt do not make a different picture.
    fn same_call(&self, input: &ImageJobInput) -> Value {
        let prompt = input.prompt.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        json!([prompt, input.size])
    }

    fn started(&self, _input: &ImageJobInput) -> String {
        "Making the image now".to_owned()
    }

    async fn run(&self, input: ImageJobInput, job: &Job) -> Result<Value, JobFailure> {
        if let Some(output) = stored_earlier(&self.services, job).await {
            return Ok(output);
        }
        let (width, height) = input.size.dimensions();
        let request = ImageRequest { prompt: input.prompt, width, height, seed: 0 };
        let routed = generate_showing_partials(&self.services, job, &request)
            .await
            .map_err(|failure| route_failure(job, failure))?;
        Ok(output(routed))
    }

    async fn discard(&self, id: &JobId) {
        self.services.pipeline.files().delete(id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.services.router.typical_latency()
    }
}

/// An image that passed the pipeline: stored once, previewed, prerendered.
#[derive(Debug)]
pub(super) struct Kept {
    ingested: Ingested,
    bytes: u64,
}

/// The route's check of a provider's image: the pipeline (validate, store once, preview,
/// prerender). An image it cannot use is that provider's failure, so the route tries the
/// next one; a storage failure is ours and stops the route. Shared by every image tool.
pub(super) fn check<'a>(
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

/// What the provider named for an image a resumed job found stored: the attempt that made it
/// died before it could record who did.
pub const RESUMED_PROVIDER: &str = "resumed";

/// The output of a job whose earlier attempt stored its image and then died (its process
/// killed between storing the image and committing the job): the job finishes from that
/// image instead of asking a provider for another one. A stored original is whole (written
/// last, atomically), so it is the image that attempt made. Only later attempts look.
pub(super) async fn stored_earlier(services: &Services, job: &Job) -> Option<Value> {
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
pub(super) fn output(routed: Routed<Kept>) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prompt: &str) -> GenerateImageInput {
        GenerateImageInput { prompt: prompt.to_owned(), size: None }
    }

    #[test]
    fn prompts_are_trimmed_and_bounded() {
        assert_eq!(validate(input("  a fox  ")).unwrap().prompt, "a fox");
        assert!(
            matches!(validate(input(" \n ")), Err(ToolError::InvalidArguments(m)) if m.contains("empty"))
        );
        let long = "é".repeat(MAX_PROMPT_CHARS + 1);
        assert!(
            matches!(validate(input(&long)), Err(ToolError::InvalidArguments(m)) if m.contains("4001"))
        );
        assert!(validate(input(&"é".repeat(MAX_PROMPT_CHARS))).is_ok());
    }
}
