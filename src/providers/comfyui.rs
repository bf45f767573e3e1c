//! The ComfyUI image provider, for local GPUs: fills the prompt into an API-format workflow,
//! queues it with `POST /prompt`, follows `GET /history/{prompt_id}` until it has finished and
//! fetches the saved image from `GET /view`. A dropped generation takes its prompt back.
//!
//! The wire format follows ComfyUI's `server.py` and its `script_examples/`: `POST /prompt`
//! takes `{"prompt": workflow, "client_id", "prompt_id"}` (current ComfyUI keeps a prompt id the
//! client chose; older servers choose their own) and answers `{"prompt_id", "number",
//! "node_errors"}`, or 400 with the validation errors (`answers.rs`); `/history/{prompt_id}` is
//! `{}` until the prompt has run; `/view?filename=&subfolder=&type=` serves the file. ComfyUI
//! has no authentication of its own; an optional key is sent as a bearer token for a proxy.

mod answers;
mod cancel;
mod settings;
mod workflow;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{
    RequestBuilder, StatusCode,
    header::AUTHORIZATION,
};
use serde::Deserialize;
use serde_json::{Value, json};
use url::{Host, Url};

use self::{
    answers::ImageRef,
    cancel::{CancelOnDrop, Canceller},
    workflow::Fill,
};
pub use self::settings::ComfyUiConfig;
use self::settings::{check_workflow, mentions, read_workflow};
use super::{
    GeneratedImage, ImageProvider, ImageRequest, ProviderError,
    http::{Api, parse_retry_after, read_capped, transport_error, truncate},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// The built-in text-to-image workflow (checkpoint, two prompts, empty latent, KSampler, VAE
/// decode, SaveImage), in ComfyUI's API format with placeholders.
const DEFAULT_WORKFLOW: &str = include_str!("comfyui/default_workflow.json");

/// `POST /prompt` answers and rejections are small, but a rejection lists every installed
/// checkpoint; more than this is not ComfyUI.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A history entry repeats the whole workflow; even large workflows stay far below this.
const MAX_HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// Random seeds stay below 2^53, so that every JSON reader keeps them exact.
const MAX_RANDOM_SEED: u64 = (1 << 53) - 1;

/// Draws images with whatever a ComfyUI server's workflow does.
#[derive(Debug)]
pub struct ComfyUiProvider {
    /// The client, the proxy's key if any, the per-request timeout and the image cap.
    api: Api,
    endpoints: Endpoints,
    /// The base URL without any credentials, for messages that say where we looked.
    shown_url: String,
    /// The template every generation copies and fills in.
    workflow: Value,
    checkpoint: String,
    negative_prompt: String,
    /// What the job record names as the model that drew.
    model: String,
    /// Sent with each prompt; ComfyUI routes progress messages for it to a websocket we do not
    /// open, and shows it as the prompt's owner.
    client_id: String,
    poll_interval: Duration,
    typical_latency: Duration,
    /// False for loopback, where the GPU is this machine's.
    remote: bool,
}

/// The registry's entry: `[providers.comfyui]`, and `COMFYUI_API_KEY` for an authenticating
/// proxy in front of it (ComfyUI has no keys of its own). `auto` never picks it.
impl ProviderSpec for ComfyUiProvider {
    const NAME: &'static str = "comfyui";
    type Settings = ComfyUiConfig;
    const ENV: &'static [EnvVar] = &[EnvVar::plain("COMFYUI_API_KEY", "api_key")];

    fn check(settings: &ComfyUiConfig) -> Result<(), SetupError> {
        settings.check()
    }

    /// Checks the base URL, the key and the workflow once, so that a bad configuration fails
    /// at start.
    fn build(config: &ComfyUiConfig, context: &Context) -> Result<Self, SetupError> {
        let provider = Self::NAME;
        let bad_url = || SetupError::base_url(provider, &config.base_url);
        let endpoint =
            |path: &str| super::http::endpoint_url(&config.base_url, path).ok_or_else(bad_url);
        let endpoints = Endpoints {
            prompt: endpoint("prompt")?,
            history: endpoint("history")?,
            view: endpoint("view")?,
            queue: endpoint("queue")?,
            interrupt: endpoint("interrupt")?,
        };
        // ComfyUI has no keys; one is only there for an authenticating proxy in front of it.
        let credential = match config.api_key.as_ref().filter(|key| !key.is_blank()) {
            Some(key) => Some(spec::credential_of::<Self>(key, AUTHORIZATION, Some("Bearer"))?),
            None => None,
        };
        let bad_workflow = |message: String| SetupError::invalid(provider, "workflow", message);
        let (workflow, source) = match &config.workflow {
            Some(path) => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (read_workflow(path).map_err(bad_workflow)?, name)
            }
            None => {
                let workflow = serde_json::from_str(DEFAULT_WORKFLOW)
                    .map_err(|error| bad_workflow(format!("built-in workflow: {error}")))?;
                check_workflow(&workflow).map_err(bad_workflow)?;
                (workflow, None)
            }
        };
        let checkpoint = config.checkpoint.trim().to_owned();
        let uses_checkpoint = mentions(&workflow, "{{checkpoint}}");
        if uses_checkpoint && checkpoint.is_empty() {
            return Err(bad_workflow(
                "the workflow loads `{{checkpoint}}` but `checkpoint` is empty".to_owned(),
            ));
        }
        let model = match source {
            _ if uses_checkpoint => checkpoint.clone(),
            Some(name) => format!("comfyui:{name}"),
            None => "comfyui".to_owned(),
        };
        let base = Url::parse(config.base_url.trim()).map_err(|_| bad_url())?;
        Ok(Self {
            api: Api::new(context.http.clone(), credential, *config.request_timeout),
            endpoints,
            shown_url: shown_url(&base),
            workflow,
            checkpoint,
            negative_prompt: config.negative_prompt.clone(),
            model,
            client_id: random_uuid(),
            poll_interval: *config.poll_interval,
            typical_latency: *config.typical_latency,
            remote: !is_loopback(&base),
        })
    }
}

#[derive(Debug, Clone)]
struct Endpoints {
    prompt: Url,
    /// `{base}/history`, to which the prompt id is appended as a path segment.
    history: Url,
    view: Url,
    queue: Url,
    interrupt: Url,
}

impl ComfyUiProvider {

    /// Replaces the image size cap; tests use it to reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }

    /// Queues the filled-in workflow and returns the id ComfyUI runs it under.
    async fn submit(
        &self,
        workflow: Value,
        prompt_id: &str,
        guard: &mut CancelOnDrop,
    ) -> Result<String, ProviderError> {
        let body =
            json!({ "prompt": workflow, "client_id": self.client_id, "prompt_id": prompt_id });
        let mut response =
            self.send(self.api.http.post(self.endpoints.prompt.clone()).json(&body)).await?;
        if !response.status().is_success() {
            // A rejection is a decision: nothing was queued, so there is nothing to take back.
            guard.disarm();
            return Err(self.answer_error(&mut response).await);
        }
        let body = read_capped(&mut response, MAX_ANSWER_BYTES).await?.ok_or_else(|| {
            ProviderError::InvalidResponse("the queued-prompt answer is too large".to_owned())
        })?;
        let accepted: Accepted = serde_json::from_slice(&body).map_err(|error| {
            ProviderError::InvalidResponse(format!(
                "POST /prompt answered unexpected JSON: {error}"
            ))
        })?;
        if accepted.node_errors.as_object().is_some_and(|errors| !errors.is_empty()) {
            // Some outputs failed validation and will not run; the others will.
            tracing::debug!(node_errors = %accepted.node_errors, "ComfyUI queued part of the workflow");
        }
        Ok(accepted.prompt_id)
    }

    /// Polls the prompt's history entry until it appears, which ComfyUI writes once the prompt
    /// has run (or failed). The job's timeout, not this loop, bounds the wait.
    async fn finished(&self, prompt_id: &str) -> Result<Value, ProviderError> {
        let mut url = self.endpoints.history.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::BadRequest("the base URL cannot take a path".to_owned()))?
            .push(prompt_id);
        loop {
            tokio::time::sleep(self.poll_interval).await;
            let mut response = self.send(self.api.http.get(url.clone())).await?;
            if !response.status().is_success() {
                return Err(self.answer_error(&mut response).await);
            }
            let body = read_capped(&mut response, MAX_HISTORY_BYTES).await?.ok_or_else(|| {
                ProviderError::InvalidResponse("the history entry is too large".to_owned())
            })?;
            let mut history: Value = serde_json::from_slice(&body).map_err(|error| {
                ProviderError::InvalidResponse(format!(
                    "/history answered unexpected JSON: {error}"
                ))
            })?;
            if let Some(entry) = history.as_object_mut().and_then(|h| h.remove(prompt_id)) {
                return Ok(entry);
            }
        }
    }

    /// Downloads one saved image.
    async fn download(&self, image: &ImageRef) -> Result<Bytes, ProviderError> {
        let mut url = self.endpoints.view.clone();
        url.query_pairs_mut()
            .append_pair("filename", &image.filename)
            .append_pair("subfolder", &image.subfolder)
            .append_pair("type", &image.kind);
        let mut response = self.send(self.api.http.get(url)).await?;
        if !response.status().is_success() {
            return Err(match self.answer_error(&mut response).await {
                // ComfyUI named the file a moment ago; if it cannot serve it, its answer was wrong.
                ProviderError::BadRequest(message) => ProviderError::InvalidResponse(format!(
                    "ComfyUI could not serve `{}`: {message}",
                    image.filename
                )),
                other => other,
            });
        }
        let limit = self.api.body_limit;
        let body = read_capped(&mut response, limit).await?.ok_or_else(|| {
            ProviderError::InvalidResponse(format!("the image exceeds {limit} bytes"))
        })?;
        if body.is_empty() {
            return Err(ProviderError::InvalidResponse("an empty image body".to_owned()));
        }
        Ok(body.into())
    }

    /// Sends with the proxy key and the per-request timeout; a failed connection says where.
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ProviderError> {
        self.api.prepare(request).send().await.map_err(|error| match transport_error(error) {
            ProviderError::Connect(cause) => {
                ProviderError::Connect(format!("ComfyUI at {}: {cause}", self.shown_url))
            }
            other => other,
        })
    }

    /// The error a non-2xx answer stands for, its body read (capped) for ComfyUI's message.
    async fn answer_error(&self, response: &mut reqwest::Response) -> ProviderError {
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let body = read_capped(response, MAX_ANSWER_BYTES).await.ok().flatten().unwrap_or_default();
        // ComfyUI never sees the key, but the proxy that checks it might echo it.
        let message = answers::rejection_message(&body).map(|message| match &self.api.credential {
            Some(credential) => credential.secret.scrub(&message),
            None => message,
        });
        status_error(status, retry_after, message)
    }

    fn canceller(&self) -> Canceller {
        Canceller {
            api: self.api.clone(),
            queue: self.endpoints.queue.clone(),
            interrupt: self.endpoints.interrupt.clone(),
        }
    }
}

#[async_trait]
impl ImageProvider for ComfyUiProvider {
    fn name(&self) -> &'static str {
        "comfyui"
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }

    fn is_remote(&self) -> bool {
        self.remote
    }

    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        // Seed 0 means "any picture" to callers; to KSampler it is one fixed picture.
        let seed = match request.seed {
            0 => rand::random_range(1..=MAX_RANDOM_SEED),
            seed => seed,
        };
        let filled = workflow::fill(
            &self.workflow,
            &Fill {
                prompt: &request.prompt,
                negative: &self.negative_prompt,
                checkpoint: &self.checkpoint,
                width: request.width,
                height: request.height,
                seed,
            },
        );
        // Choosing the id ourselves lets a drop during `POST /prompt` take the prompt back.
        let chosen_id = random_uuid();
        let mut guard = CancelOnDrop::arm(self.canceller(), chosen_id.clone());
        let prompt_id = self.submit(filled, &chosen_id, &mut guard).await?;
        guard.track(&prompt_id);
        tracing::debug!(%prompt_id, seed, "ComfyUI queued the prompt");
        let entry = self.finished(&prompt_id).await?;
        guard.disarm();
        let image = answers::finished_image(&entry)?;
        let bytes = self.download(&image).await?;
        Ok(GeneratedImage { bytes, model: self.model.clone() })
    }
}

/// `POST /prompt`'s answer; `number` (the queue position) is not needed.
#[derive(Deserialize)]
struct Accepted {
    prompt_id: String,
    #[serde(default)]
    node_errors: Value,
}

/// Maps a non-2xx answer. ComfyUI itself answers 400 (a rejected workflow, a bad `/view`
/// path), 403 (a cross-origin request), 404 and 500; proxies add 401, 429 and 502-504.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    message: Option<String>,
) -> ProviderError {
    let message = || message.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    match status.as_u16() {
        401 | 403 => ProviderError::Unauthorized,
        429 => ProviderError::RateLimited { retry_after },
        408 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        400..=499 => ProviderError::BadRequest(truncate(&message())),
        500..=599 => ProviderError::Unavailable { status: status.as_u16(), retry_after },
        other => ProviderError::InvalidResponse(format!("unexpected HTTP status {other}")),
    }
}

/// The base URL as messages show it: credentials in it (`http://user:pass@host`) left out.
fn shown_url(base: &Url) -> String {
    let mut shown = base.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_owned()
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 and `::1` are this machine.
fn is_loopback(base: &Url) -> bool {
    match base.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback())
        }
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    }
}

/// A random version-4 UUID, the form ComfyUI gives its own ids.
fn random_uuid() -> String {
    const VERSION_MASK: u128 = 0xf << 76;
    const VERSION_4: u128 = 0x4 << 76;
    const VARIANT_MASK: u128 = 0xc << 60;
    const VARIANT_RFC: u128 = 0x8 << 60;
    let bits = (rand::random::<u128>() & !VERSION_MASK & !VARIANT_MASK) | VERSION_4 | VARIANT_RFC;
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_local_and_others_remote() {
        let local = |url: &str| is_loopback(&Url::parse(url).unwrap());
        assert!(local("http://127.0.0.1:8188"));
        assert!(local("http://127.8.9.10"));
        assert!(local("http://localhost:8188/"));
        assert!(local("http://LocalHost.:8188"));
        assert!(local("http://gpu.localhost"));
        assert!(local("http://[::1]:8188"));
        assert!(!local("http://192.168.1.20:8188"), "the LAN is another machine");
        assert!(!local("https://comfy.example.com"));
        assert!(!local("http://localhost.example.com"));
    }

    #[test]
    fn shown_urls_leave_credentials_out() {
        let shown = |url: &str| shown_url(&Url::parse(url).unwrap());
        assert_eq!(shown("http://127.0.0.1:8188"), "http://127.0.0.1:8188");
        assert_eq!(shown("https://user:secret@gpu.lan/comfy/"), "https://gpu.lan/comfy");
    }

    #[test]
    fn uuids_have_the_version_4_form() {
        let id = random_uuid();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.as_bytes()[14], b'4', "{id}");
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{id}");
        assert_ne!(id, random_uuid());
    }

    #[test]
    fn statuses_map_onto_error_classes() {
        let error = |status: u16, message: Option<&str>| {
            let status = StatusCode::from_u16(status).unwrap();
            status_error(status, Some(Duration::from_secs(2)), message.map(str::to_owned))
        };
        let rejected = error(400, Some("CheckpointLoaderSimple (node 4): Value not in list"));
        assert!(matches!(&rejected, ProviderError::BadRequest(m) if m.contains("node 4")));
        assert!(matches!(error(404, None), ProviderError::BadRequest(m) if m == "HTTP 404"));
        assert!(matches!(error(401, None), ProviderError::Unauthorized));
        assert!(matches!(error(403, None), ProviderError::Unauthorized));
        assert_eq!(error(429, None).retry_after(), Some(Duration::from_secs(2)));
        assert!(matches!(error(500, None), ProviderError::Unavailable { status: 500, .. }));
        assert!(error(502, None).is_retryable());
    }
}
