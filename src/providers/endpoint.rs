//! The `endpoint` provider, the worked example of docs/providers.md ("Add a provider"): an
//! image service of your own that takes `POST {base_url}/generate` with the JSON body
//! `{"prompt", "width", "height", "seed"}` and answers 200 with the image bytes, or an error
//! status with an optional `{"error": "..."}` body.

mod settings;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, header::AUTHORIZATION};
use url::Url;

pub use self::settings::EndpointConfig;
use super::{
    GeneratedImage, ImageProvider, ImageRequest, ProviderError,
    http::{Api, endpoint_url, parse_retry_after},
    spec::{self, Context, EnvVar, ProviderSpec, SetupError},
};

/// The registry's entry: `[providers.endpoint]`. `auto` never picks it.
impl ProviderSpec for EndpointProvider {
    const NAME: &'static str = "endpoint";
    type Settings = EndpointConfig;
    const ENV: &'static [EnvVar] = &[EnvVar::plain("OFFSTAGE_ENDPOINT_API_KEY", "api_key")];

    fn check(settings: &EndpointConfig) -> Result<(), SetupError> {
        // Unset is fine until something routes to it; a typo is not.
        match settings.base_url.as_str() {
            "" => Ok(()),
            base_url => generate_url(base_url).map(|_| ()),
        }
    }

    fn build(config: &EndpointConfig, context: &Context) -> Result<Self, SetupError> {
        let url = generate_url(&config.base_url)?;
        // The key is optional: a service on this machine often has none.
        let credential = match &config.api_key {
            Some(key) if !key.is_blank() => {
                Some(spec::credential_of::<Self>(key, AUTHORIZATION, Some("Bearer"))?)
            }
            _ => None,
        };
        let api = Api::new(context.http.clone(), credential, *config.request_timeout);
        Ok(Self { api, url, typical_latency: *config.typical_latency })
    }
}

/// Draws images by asking the configured URL.
#[derive(Debug)]
pub struct EndpointProvider {
    api: Api,
    url: Url,
    typical_latency: Duration,
}

impl EndpointProvider {

    /// Replaces the response size cap; tests use it to reach the cap without 64 MiB bodies.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api.body_limit = limit;
        self
    }
}

/// Where requests go: `{base_url}/generate`.
fn generate_url(base_url: &str) -> Result<Url, SetupError> {
    if base_url.trim().is_empty() {
        return Err(SetupError::invalid(EndpointProvider::NAME, "base_url", "set it to your service's URL"));
    }
    endpoint_url(base_url, "generate").ok_or_else(|| SetupError::base_url(EndpointProvider::NAME, base_url))
}

#[async_trait]
impl ImageProvider for EndpointProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn typical_latency(&self) -> Duration {
        self.typical_latency
    }


    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let body = serde_json::json!({
            "prompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "seed": request.seed,
        });
        let mut response = self.api.send(self.api.http.post(self.url.clone()).json(&body)).await?;
        let status = response.status();
        if status.is_success() {
            let bytes = self.api.read_body(&mut response).await?;
            if bytes.is_empty() {
                return Err(ProviderError::InvalidResponse("an empty image body".to_owned()));
            }
            return Ok(GeneratedImage { bytes: bytes.into(), model: Self::NAME.to_owned() });
        }
        let retry_after = parse_retry_after(response.headers());
        let body = self.api.read_error(&mut response).await?;
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|answer| answer["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = self.api.scrub(&message);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited { retry_after },
            status if status.is_server_error() => {
                ProviderError::Unavailable { status: status.as_u16(), retry_after }
            }
            _ => ProviderError::BadRequest(message),
        })
    }
}
