//! `generate_image`: answers at once with a job handle and a working image URL; the provider
//! draws in the background ([`GenerateImageJob`]) and the result is pushed when it lands.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Annotations, JobView, Links, Mode, ResourceLink, Services, Tool, ToolCall, ToolDefinition,
    ToolError, ToolOutput, parse_arguments,
};
use crate::{
    images::{ImageInfo, ImageLimits, ImageSize, files::ImageFiles},
    jobs::{
        Job, JobContext, JobId, JobStatus,
        runner::{Dedupe, JobFailure, JobHandler, NewJob, SubmitError},
    },
    providers::{ImageProvider, ImageRequest},
};

pub const NAME: &str = "generate_image";
const MODE: Mode = Mode::Job;
/// Prompts beyond this are truncated by providers anyway and cost the model tokens to write.
pub const MAX_PROMPT_CHARS: usize = 4000;

const DESCRIPTION: &str = "Make a picture from a description. Use when the user asks to draw, \
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
}

impl ImageJobOutput {
    pub fn of(job: &Job) -> Option<ImageJobOutput> {
        job.output.as_ref().and_then(|output| serde_json::from_value(output.clone()).ok())
    }
}

#[derive(Debug)]
pub struct GenerateImage {
    services: Arc<Services>,
    definition: ToolDefinition,
}

impl GenerateImage {
    pub fn new(services: Arc<Services>) -> GenerateImage {
        let definition = ToolDefinition::typed::<GenerateImageInput>(
            NAME,
            DESCRIPTION,
            Annotations {
                read_only: false,
                destructive: false,
                idempotent: false,
                // Truthful per deployment: the built-in sketch provider never leaves the machine.
                open_world: services.provider.is_remote(),
            },
            MODE,
        );
        GenerateImage { services, definition }
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

/// Same tool, same normalised arguments (case and spacing of the prompt ignored), same
/// conversation.
fn dedupe_key(conversation: &str, input: &ImageJobInput) -> String {
    use sha2::Digest;
    let prompt = input.prompt.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let canonical = json!([NAME, conversation, prompt, input.size]).to_string();
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The reply to a repeated call: it is under way already, do not call again.
fn already_line(id: &JobId, eta: Duration) -> String {
    let seconds = eta.as_secs_f64().round().max(1.0);
    format!(
        "That image is already being made, about {seconds} s left; don't call {NAME} again for \
         it. Job {id}."
    )
}

/// The one line the model reads: it is being made, roughly when, and not to call again.
fn started_line(id: &JobId, eta: Duration) -> String {
    let seconds = eta.as_secs_f64().round().max(1.0);
    format!(
        "Making the image now, ready in about {seconds} s. Tell the user it's on its way; \
         don't call {NAME} again for it. Job {id}."
    )
}

#[async_trait]
impl Tool for GenerateImage {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let input = validate(parse_arguments(NAME, call.arguments)?)?;
        let caller = call.caller;
        let services = &self.services;
        let dedupe = caller.conversation.as_ref().map(|conversation| Dedupe {
            key: dedupe_key(conversation, &input),
            window: services.push.dedupe_window,
        });
        let new = NewJob {
            tool: NAME.to_owned(),
            input: serde_json::to_value(&input).unwrap_or_default(),
            context: JobContext {
                delivery: Some(services.delivery_for(NAME, &caller).as_str().to_owned()),
                conversation: caller.conversation,
                call_id: caller.call_id,
            },
            owner: caller.owner,
            dedupe,
        };
        let submitted = services.runner.submit(new).await.map_err(|error| match error {
            SubmitError::Busy { retry_after, .. } => ToolError::Busy { retry_after },
            SubmitError::ShuttingDown => ToolError::Busy { retry_after: Duration::from_secs(5) },
            other => ToolError::Internal(other.to_string()),
        })?;
        let job = submitted.job;
        let view = JobView::of(&job, &services.links);
        let eta = Duration::from_millis(view.eta_ms.unwrap_or(0));
        let text = match (submitted.duplicate, job.status) {
            (false, _) => started_line(&job.id, eta),
            (true, JobStatus::Working) => already_line(&job.id, eta),
            (true, _) => format!("That image was just made: {}", services.links.image_url(&job.id)),
        };
        let mut structured = json!({
            "job_id": job.id,
            "status": job.status,
            "image_url": services.links.image_url(&job.id),
            "eta_ms": view.eta_ms.unwrap_or(0),
        });
        if submitted.duplicate {
            structured["duplicate"] = json!(true);
        }
        Ok(ToolOutput {
            text,
            structured,
            links: vec![ResourceLink {
                uri: Links::resource_uri(&job.id),
                name: format!("image job {}", job.id),
                mime_type: "application/json",
            }],
            job: Some(job),
        })
    }
}

/// Draws one image through the configured provider and stores it beside the job store.
#[derive(Debug)]
pub struct GenerateImageJob {
    provider: Arc<dyn ImageProvider>,
    files: ImageFiles,
    limits: ImageLimits,
}

impl GenerateImageJob {
    pub fn new(provider: Arc<dyn ImageProvider>, files: ImageFiles) -> GenerateImageJob {
        GenerateImageJob { provider, files, limits: ImageLimits::default() }
    }
}

fn permanent(code: &str, message: &str) -> JobFailure {
    JobFailure {
        code: code.to_owned(),
        message: message.to_owned(),
        retryable: false,
        retry_after: None,
    }
}

#[async_trait]
impl JobHandler for GenerateImageJob {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let input = ImageJobInput::of(job).ok_or_else(|| {
            permanent("invalid_input", "This image request was stored in a form I can't read.")
        })?;
        let (width, height) = input.size.dimensions();
        let request = ImageRequest { prompt: input.prompt, width, height, seed: 0 };
        let image = self.provider.generate(&request).await.map_err(|error| {
            tracing::warn!(job = %job.id, provider = self.provider.name(), %error, "provider failed");
            JobFailure {
                code: error.code().to_owned(),
                message: error.speakable(),
                retryable: error.is_retryable(),
                retry_after: error.retry_after(),
            }
        })?;
        // Decoding is CPU work: keep it off the async workers that answer requests.
        let limits = self.limits;
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
        self.files.write(&job.id, info.format, &image.bytes).await.map_err(|error| {
            tracing::error!(job = %job.id, %error, "could not store image");
            JobFailure {
                code: "storage".to_owned(),
                message: "I couldn't save the image; please try again.".to_owned(),
                retryable: true,
                retry_after: None,
            }
        })?;
        let output = ImageJobOutput {
            image: info,
            bytes: image.bytes.len() as u64,
            provider: self.provider.name().to_owned(),
            model: image.model,
        };
        Ok(serde_json::to_value(output).unwrap_or_default())
    }

    async fn discard(&self, id: &JobId) {
        self.files.delete(id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.provider.typical_latency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prompt: &str) -> GenerateImageInput {
        GenerateImageInput { prompt: prompt.to_owned(), size: None }
    }

    #[test]
    fn started_line_is_short_and_says_not_to_call_again() {
        let line = started_line(&JobId::generate(), Duration::from_millis(25_400));
        assert!(line.chars().count() <= 200, "{} chars: {line}", line.chars().count());
        assert!(line.contains("don't call generate_image again"));
        assert!(line.contains("about 25 s"));
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
