//! `edit_image`: a job tool that changes an earlier picture (by job id) or one at a URL as
//! instructed. The call answers at once; fetching, editing and storing happen in the job.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    images::{
        ImageFormat, ImageSize,
        fetch::{FetchError, FetchedImage},
        files::Stored,
    },
    jobs::{Job, JobId, JobOutput, JobStatus, runner::JobFailure},
    providers::EditRequest,
    tools::{
        Annotations, Caller, Services, ToolError,
        image_job::{self, check, discard, finished, stored_earlier},
        image_record::{ImageJobInput, ImageJobOutput},
        typed::JobTool,
    },
};

pub const NAME: &str = "edit_image";
/// Instructions are short by nature; a long one is a new picture, not an edit.
pub const MAX_INSTRUCTION_CHARS: usize = 1000;
/// How often a job whose source picture is still being made looks at it again.
const SOURCE_POLL: Duration = Duration::from_millis(200);

pub const DESCRIPTION: &str = "Change a picture made earlier (its job_id) or at a link. Use \
when the user asks to alter or restyle an image. Returns at once; the result comes later.";

/// Arguments of `edit_image`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditImageInput {
    /// A job_id or an image URL.
    pub image: String,
    /// What to change, in plain words.
    pub instruction: String,
}

/// Where the picture to edit comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A job of this owner that produces an image; it may still be working.
    Job(JobId),
    /// An http(s) URL, fetched through the guarded client when the job runs.
    Url(String),
}

/// What an edit job stores. `prompt` and `size` let every image view treat it like a
/// `generate_image` job (placeholder size, announcement).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EditJobInput {
    /// The instruction.
    pub prompt: String,
    pub size: ImageSize,
    pub source: Source,
}

#[derive(Debug)]
pub struct EditImage {
    services: Arc<Services>,
}

impl EditImage {
    pub fn new(services: Arc<Services>) -> EditImage {
        EditImage { services }
    }

    /// The source picture's bytes, waiting for a source job still at work.
    async fn source(&self, source: &Source, job: &Job) -> Result<FetchedImage, JobFailure> {
        match source {
            Source::Url(url) => self.services.fetcher.fetch(url).await.map_err(fetch_failure),
            Source::Job(id) => self.finished_source(id, job).await,
        }
    }

    async fn finished_source(&self, id: &JobId, job: &Job) -> Result<FetchedImage, JobFailure> {
        let gone = || failure("source_missing", "The picture to edit no longer exists.", false);
        let source = loop {
            let found = self.services.runner.get(id).await.map_err(|error| {
                tracing::warn!(job = %job.id, %error, "could not read the source job");
                failure("storage", "I couldn't read the picture to edit; please try again.", true)
            })?;
            let source = found.filter(|source| source.owner == job.owner).ok_or_else(gone)?;
            match source.status {
                JobStatus::Working => tokio::time::sleep(SOURCE_POLL).await,
                JobStatus::Completed => break source,
                JobStatus::Failed | JobStatus::Cancelled => {
                    return Err(failure(
                        "source_failed",
                        "The picture to edit was never made, so there is nothing to change.",
                        false,
                    ));
                }
            }
        };
        let output = ImageJobOutput::of(&source).ok_or_else(gone)?;
        let original = Stored::Original(output.image.format);
        let bytes = self.services.pipeline.files().read(id, &original).await.map_err(|error| {
            tracing::warn!(job = %job.id, %error, "source image file is missing");
            gone()
        })?;
        Ok(FetchedImage {
            bytes,
            format: match output.image.format {
                ImageFormat::Png => image::ImageFormat::Png,
                ImageFormat::Jpeg => image::ImageFormat::Jpeg,
                ImageFormat::Webp => image::ImageFormat::WebP,
            },
            final_url: url::Url::parse(&self.services.links.image_url(id)).map_err(|_| gone())?,
            width: output.image.width,
            height: output.image.height,
        })
    }
}

fn failure(code: &str, message: &str, retryable: bool) -> JobFailure {
    JobFailure {
        code: code.to_owned(),
        message: message.to_owned(),
        retryable,
        retry_after: None,
        detail: None,
    }
}

fn fetch_failure(error: FetchError) -> JobFailure {
    let retryable = matches!(error, FetchError::Timeout | FetchError::Connect(_));
    let mut failure = failure(error.code(), &error.speakable(), retryable);
    failure.code = format!("fetch_{}", error.code());
    failure
}

/// The shape nearest the source's, so an edit keeps its picture's proportions.
fn nearest_size(width: u32, height: u32) -> ImageSize {
    let ratio = f64::from(width.max(1)) / f64::from(height.max(1));
    match ratio {
        r if r > 1.2 => ImageSize::Landscape,
        r if r < 1.0 / 1.2 => ImageSize::Portrait,
        _ => ImageSize::Square,
    }
}

fn validate(input: EditImageInput) -> Result<EditJobInput, ToolError> {
    let instruction = input.instruction.trim();
    if instruction.is_empty() {
        return Err(ToolError::InvalidArguments(
            "The instruction is empty. Say what to change, e.g. \"make the sky pink\".".to_owned(),
        ));
    }
    let chars = instruction.chars().count();
    if chars > MAX_INSTRUCTION_CHARS {
        return Err(ToolError::InvalidArguments(format!(
            "The instruction is {chars} characters long; keep it under {MAX_INSTRUCTION_CHARS} \
             by naming only what should change."
        )));
    }
    let image = input.image.trim();
    let source = if let Some(id) = JobId::parse(image) {
        Source::Job(id)
    } else {
        let url = url::Url::parse(image).map_err(|_| {
            ToolError::InvalidArguments(
                "`image` must be the job_id of an earlier picture or an http(s) link to one."
                    .to_owned(),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(ToolError::InvalidArguments(format!(
                "`image` must be an http(s) link or a job_id, not a {} URL.",
                url.scheme()
            )));
        }
        Source::Url(url.to_string())
    };
    Ok(EditJobInput { prompt: instruction.to_owned(), size: ImageSize::Square, source })
}

#[async_trait]
impl JobTool for EditImage {
    type Input = EditImageInput;
    type Stored = EditJobInput;
    const NAME: &'static str = NAME;
    const DESCRIPTION: &'static str = DESCRIPTION;
    const PRODUCES: JobOutput = JobOutput::Image;

    fn annotations(&self) -> Annotations {
        // It may fetch any public URL, and providers may be remote.
        Annotations::creates(true)
    }

    fn prepare(&self, input: EditImageInput) -> Result<EditJobInput, ToolError> {
        validate(input)
    }

    /// A job id must name one of the caller's own picture jobs that has not failed; its shape
    /// becomes the edit's shape.
    async fn admit(
        &self,
        mut stored: EditJobInput,
        caller: &Caller,
    ) -> Result<EditJobInput, ToolError> {
        let Source::Job(id) = &stored.source else { return Ok(stored) };
        let source = self.services.job_for(caller, id.as_str()).await?;
        // What the job produces, as recorded with it: any image job's picture can be edited.
        if source.produces != JobOutput::Image {
            return Err(ToolError::InvalidArguments(format!(
                "Job {id} is a {} job, not a picture; pass the job_id of generate_image or \
                 edit_image.",
                source.tool
            )));
        }
        if matches!(source.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(ToolError::InvalidArguments(format!(
                "Job {id} ended without a picture ({}), so there is nothing to edit.",
                source.status.as_str()
            )));
        }
        if let Some(size) = ImageJobInput::of(&source).map(|input| input.size) {
            stored.size = size;
        }
        Ok(stored)
    }

    fn same_call(&self, input: &EditJobInput) -> Value {
        json!([image_job::same_words(&input.prompt), input.source])
    }

    fn started(&self, _input: &EditJobInput) -> String {
        "Changing the picture now".to_owned()
    }

    async fn run(&self, input: EditJobInput, job: &Job) -> Result<Value, JobFailure> {
        if let Some(output) = stored_earlier(&self.services, job).await {
            return Ok(output);
        }
        let source = self.source(&input.source, job).await?;
        let size = match input.source {
            Source::Job(_) => input.size,
            Source::Url(_) => nearest_size(source.width, source.height),
        };
        let format = match source.format {
            image::ImageFormat::Jpeg => ImageFormat::Jpeg,
            image::ImageFormat::WebP => ImageFormat::Webp,
            _ => ImageFormat::Png,
        };
        let (width, height) = size.dimensions();
        let request = EditRequest {
            image: source.bytes,
            format,
            instruction: input.prompt,
            width,
            height,
            seed: 0,
        };
        let routed = self.services.router.edit_checked(&request, check(&self.services, job));
        finished(job, routed.await)
    }

    async fn discard(&self, id: &JobId) {
        discard(&self.services, id).await;
    }

    fn typical_duration(&self) -> Duration {
        self.services.router.typical_edit_latency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(image: &str, instruction: &str) -> EditImageInput {
        EditImageInput { image: image.to_owned(), instruction: instruction.to_owned() }
    }

    #[test]
    fn sources_are_job_ids_or_web_links() {
        let id = JobId::generate();
        let stored = validate(input(&format!(" {id} "), " make it blue ")).unwrap();
        assert_eq!((stored.source, stored.prompt.as_str()), (Source::Job(id), "make it blue"));
        let stored = validate(input("https://example.com/a.png", "x")).unwrap();
        assert_eq!(stored.source, Source::Url("https://example.com/a.png".to_owned()));
        for bad in ["file:///etc/passwd", "job-1", "data:image/png;base64,AAAA", ""] {
            let error = validate(input(bad, "x")).unwrap_err();
            assert!(
                matches!(error, ToolError::InvalidArguments(ref m) if m.contains("`image`")),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn instructions_are_trimmed_and_bounded() {
        let url = "https://example.com/a.png";
        assert!(
            matches!(validate(input(url, "  ")), Err(ToolError::InvalidArguments(m)) if m.contains("empty"))
        );
        let long = "é".repeat(MAX_INSTRUCTION_CHARS + 1);
        assert!(
            matches!(validate(input(url, &long)), Err(ToolError::InvalidArguments(m)) if m.contains("1001"))
        );
    }

    #[test]
    fn edits_keep_the_nearest_shape() {
        assert_eq!(nearest_size(1920, 1080), ImageSize::Landscape);
        assert_eq!(nearest_size(1080, 1920), ImageSize::Portrait);
        assert_eq!(nearest_size(1000, 1100), ImageSize::Square);
    }
}
