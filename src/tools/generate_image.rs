//! `generate_image`: a job tool. The call answers at once with a job handle and an image URL
//! that already works; the provider draws in the background and the result is pushed.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Annotations, ToolError, typed::JobTool};
use crate::{
    images::{ImageInfo, ImageLimits, ImageSize, files::ImageFiles},
    jobs::{Job, JobId, runner::JobFailure},
    providers::{
        ImageRequest, Partials,
        router::{Attempt, RouteFailure, Routed, Router},
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
    router: Arc<Router>,
    files: ImageFiles,
    limits: ImageLimits,
}

impl GenerateImage {
    pub fn new(router: Arc<Router>, files: ImageFiles) -> GenerateImage {
        GenerateImage { router, files, limits: ImageLimits::default() }
    }
}

/// The job failure for a route that gave up: the spoken sentence of the error chosen, and every
/// attempt kept with the job. The router already retried; the runner does not retry again.
pub fn route_failure(job: &Job, failure: RouteFailure) -> JobFailure {
    let RouteFailure { error, attempts } = failure;
    tracing::warn!(job = %job.id, code = error.code(), attempts = attempts.len(), "no provider made the image");
    JobFailure {
        code: error.code().to_owned(),
        message: error.speakable(),
        retryable: false,
        retry_after: None,
        detail: Some(json!({ "attempts": attempts })),
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
            open_world: self.router.is_remote(),
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
        let (width, height) = input.size.dimensions();
        let request = ImageRequest { prompt: input.prompt, width, height, seed: 0 };
        let routed = self
            .router
            .generate(&request, &Partials::default())
            .await
            .map_err(|failure| route_failure(job, failure))?;
        keep(&self.files, self.limits, job, routed).await
    }

    async fn discard(&self, id: &JobId) {
        self.files.delete(id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.router.typical_latency()
    }
}

/// Validates a routed image, stores it as the job's image and returns the job's output.
/// Shared by every tool that produces an image.
pub(super) async fn keep(
    files: &ImageFiles,
    limits: ImageLimits,
    job: &Job,
    routed: Routed,
) -> Result<Value, JobFailure> {
    let image = routed.image;
    // Decoding is CPU work: keep it off the async workers that answer requests.
    let bytes = image.bytes.clone();
    let info = tokio::task::spawn_blocking(move || crate::images::inspect(&bytes, limits))
        .await
        .map_err(|_| permanent("internal", "Something went wrong checking the image."))?
        .map_err(|error| {
            tracing::warn!(job = %job.id, %error, "provider returned an unusable image");
            permanent(
                "invalid_image",
                "The image service sent back a broken image; please try again.",
            )
        })?;
    files.write(&job.id, info.format, &image.bytes).await.map_err(|error| {
        tracing::error!(job = %job.id, %error, "could not store image");
        JobFailure {
            detail: None,
            code: "storage".to_owned(),
            message: "I couldn't save the image; please try again.".to_owned(),
            retryable: true,
            retry_after: None,
        }
    })?;
    let output = ImageJobOutput {
        image: info,
        bytes: image.bytes.len() as u64,
        provider: routed.provider.to_owned(),
        model: image.model,
        attempts: routed.attempts,
    };
    Ok(serde_json::to_value(output).unwrap_or_default())
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
