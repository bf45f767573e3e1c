//! `generate_image`: a job tool. The call answers at once with a job handle and an image URL
//! that already works; the provider draws in the background and the result is pushed.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    images::ImageSize,
    jobs::{Job, JobId, JobOutput, runner::JobFailure},
    providers::ImageRequest,
    tools::{
        Annotations, Services, ToolError,
        image_job::{self, discard, finished, generate_showing_partials, stored_earlier},
        image_record::ImageJobInput,
        typed::JobTool,
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

#[async_trait]
impl JobTool for GenerateImage {
    type Input = GenerateImageInput;
    type Stored = ImageJobInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;
    const PRODUCES: JobOutput = JobOutput::Image;

    fn annotations(&self) -> Annotations {
        // Truthful per deployment: the built-in sketch provider never leaves the machine.
        Annotations::creates(self.services.router.is_remote())
    }

    fn prepare(&self, input: GenerateImageInput) -> Result<ImageJobInput, ToolError> {
        validate(input)
    }

    /// Case and spacing of the prompt do not make a different picture.
    fn same_call(&self, input: &ImageJobInput) -> Value {
        json!([image_job::same_words(&input.prompt), input.size])
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
        finished(job, generate_showing_partials(&self.services, job, &request).await)
    }

    async fn discard(&self, id: &JobId) {
        discard(&self.services, id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.services.router.typical_latency()
    }
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
