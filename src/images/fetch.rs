//! [`ImageFetcher`]: the one way offstage downloads an image from a URL a model supplied.
//!
//! A URL from a model is untrusted input. Fetching it naively would let a prompt reach the
//! metadata service or a loopback admin port (SSRF), fill memory with an endless body, or hand
//! a decoder a "bomb" whose header claims billions of pixels. Every hop is vetted here with
//! [`crate::netguard`], the body is capped while it streams, and the bytes are sniffed and
//! measured from their header before anyone decodes them. This module knows nothing of tools
//! or MCP; callers relay [`FetchError::speakable`] to the user.

use std::{io::Cursor, net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, header::LOCATION, redirect::Policy};
use url::{Host, Url};

use crate::netguard::{self, GuardError, GuardedResolver};

/// Bounds for one fetch; the defaults suit a photo a user wants edited.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Largest body accepted, checked against `Content-Length` and again while streaming.
    pub max_bytes: usize,
    /// Deadline for the whole fetch, redirects and body included, so a trickling server
    /// cannot hold a voice turn hostage.
    pub timeout: Duration,
    /// Redirects followed before giving up; each hop is vetted like the first URL.
    pub max_redirects: u32,
    /// Largest width x height accepted, read from the header before any decoding.
    pub max_pixels: u64,
    /// Lets private, loopback and link-local destinations through (development only).
    pub allow_private: bool,
    /// Exact private `ip:port` destinations allowed even when `allow_private` is false, such as
    /// an operator's own image store. Only literal-IP URLs can match: a DNS name resolving to
    /// one of these is still refused by the resolver, which sees no port.
    pub private_allowlist: Vec<SocketAddr>,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            max_redirects: 3,
            max_pixels: 40_000_000,
            allow_private: false,
            private_allowlist: Vec::new(),
        }
    }
}

/// A downloaded image whose format was sniffed from its bytes and whose size is within limits.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    pub bytes: Bytes,
    pub format: image::ImageFormat,
    /// Where the bytes came from after redirects.
    pub final_url: Url,
    pub width: u32,
    pub height: u32,
}

/// Why an image URL could not be fetched; every message is safe to read out to the user.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    #[error("only http and https URLs can be fetched, not {scheme}")]
    NotHttp { scheme: String },
    #[error("URLs with a user name or password are not fetched")]
    Credentials,
    #[error("{host} is a private, loopback or link-local address")]
    PrivateAddress { host: String },
    #[error("more than {limit} redirects")]
    TooManyRedirects { limit: u32 },
    #[error("the image is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the content is not a PNG, JPEG or WebP image")]
    NotAnImage,
    #[error("the image is {width}x{height}, over the pixel limit")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image header cannot be read: {0}")]
    Corrupt(String),
    #[error("the fetch took too long")]
    Timeout,
    #[error("the server answered with status {0}")]
    Status(u16),
    #[error("cannot connect: {0}")]
    Connect(String),
}

impl FetchError {
    /// A stable machine-readable name for logs and tool results.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::NotHttp { .. } => "not_http",
            FetchError::Credentials => "credentials_in_url",
            FetchError::PrivateAddress { .. } => "private_address",
            FetchError::TooManyRedirects { .. } => "too_many_redirects",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::NotAnImage => "not_an_image",
            FetchError::TooManyPixels { .. } => "too_many_pixels",
            FetchError::Corrupt(_) => "corrupt_image",
            FetchError::Timeout => "timeout",
            FetchError::Status(_) => "http_status",
            FetchError::Connect(_) => "connect",
        }
    }

    /// One short sentence a voice model can say as is; it names no internal address.
    pub fn speakable(&self) -> String {
        match self {
            FetchError::InvalidUrl(_) => "That link is not a valid web address.".to_owned(),
            FetchError::NotHttp { .. } => "I can only fetch images from web links.".to_owned(),
            FetchError::Credentials => {
                "That link contains a password, so I won't fetch it.".to_owned()
            }
            FetchError::PrivateAddress { .. } => {
                "That link points to a private network, so I can't fetch it.".to_owned()
            }
            FetchError::TooManyRedirects { .. } => "That link redirects too many times.".to_owned(),
            FetchError::TooLarge { limit } => {
                format!("That image is too large; the limit is {} megabytes.", limit / 1_048_576)
            }
            FetchError::NotAnImage => "That link is not a PNG, JPEG or WebP image.".to_owned(),
            FetchError::TooManyPixels { width, height } => {
                format!("That image is {width} by {height} pixels, which is too big to edit.")
            }
            FetchError::Corrupt(_) => "That image appears to be damaged.".to_owned(),
            FetchError::Timeout => "Fetching that image took too long.".to_owned(),
            FetchError::Status(status) => format!("The image server answered with error {status}."),
            FetchError::Connect(_) => "I couldn't reach the image server.".to_owned(),
        }
    }
}

/// Downloads user-supplied image URLs under [`FetchLimits`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageFetcher {
    client: reqwest::Client,
    limits: Arc<FetchLimits>,
}

impl ImageFetcher {
    pub fn new(limits: FetchLimits) -> Result<ImageFetcher, FetchError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("offstage-images/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by hand so each hop is vetted before it is requested.
            .redirect(Policy::none())
            // A proxy would resolve names itself, out of the guarded resolver's sight.
            .no_proxy()
            .dns_resolver(GuardedResolver { allow_private: limits.allow_private }.shared())
            .build()
            .map_err(|error| FetchError::Connect(error.to_string()))?;
        Ok(ImageFetcher { client, limits: Arc::new(limits) })
    }

    /// Fetches `url`, following up to `max_redirects` vetted redirects, all within `timeout`.
    pub async fn fetch(&self, url: &str) -> Result<FetchedImage, FetchError> {
        let url = Url::parse(url).map_err(|error| FetchError::InvalidUrl(error.to_string()))?;
        let (bytes, final_url) = tokio::time::timeout(self.limits.timeout, self.download(url))
            .await
            .map_err(|_elapsed| FetchError::Timeout)??;
        let max_pixels = self.limits.max_pixels;
        let (format, bytes, (width, height)) = tokio::task::spawn_blocking(move || {
            sniff(&bytes, max_pixels).map(|v| (v.0, bytes, v.1))
        })
        .await
        .map_err(|error| FetchError::Corrupt(error.to_string()))??;
        Ok(FetchedImage { bytes, format, final_url, width, height })
    }

    async fn download(&self, mut url: Url) -> Result<(Bytes, Url), FetchError> {
        let mut redirects = 0;
        loop {
            self.vet(&url).await?;
            let response = self.client.get(url.clone()).send().await.map_err(request_error)?;
            let status = response.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > self.limits.max_redirects {
                    return Err(FetchError::TooManyRedirects { limit: self.limits.max_redirects });
                }
                url = redirect_target(&url, &response)?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let bytes = self.read_body(response).await?;
            return Ok((bytes, url));
        }
    }

    /// Scheme, credentials and destination, checked before every request, redirects included.
    async fn vet(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::NotHttp { scheme: url.scheme().to_owned() });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Credentials);
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(ip.into()),
            Some(Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        let port = url.port_or_known_default().unwrap_or(443);
        if let Some(ip) = literal
            && self.limits.private_allowlist.contains(&SocketAddr::new(ip, port))
        {
            return Ok(());
        }
        // Resolves names here to say why a URL is refused; the client's resolver enforces the
        // same rule at connect time, in case DNS answers differently the second time.
        netguard::check_url(url, self.limits.allow_private).await.map_err(|error| match error {
            GuardError::Private { host, .. } => FetchError::PrivateAddress { host },
            GuardError::Unresolvable { host, reason } => {
                FetchError::Connect(format!("cannot resolve {host}: {reason}"))
            }
            GuardError::NoHost(url) => FetchError::InvalidUrl(format!("{url} has no host")),
        })
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, FetchError> {
        let limit = self.limits.max_bytes;
        // A declared length is only a hint (it can lie), but an honest one saves the download.
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn redirect_target(from: &Url, response: &reqwest::Response) -> Result<Url, FetchError> {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(FetchError::Status(status))?;
    from.join(location).map_err(|error| FetchError::InvalidUrl(error.to_string()))
}

fn request_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::Timeout;
    }
    // reqwest's top-level message is generic ("error sending request"); the cause is below.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Connect(message)
}

/// Trusts the bytes, never `Content-Type`: the format comes from magic numbers and the size
/// from the header alone, so a decompression bomb is refused before anything is decoded.
fn sniff(bytes: &[u8], max_pixels: u64) -> Result<(image::ImageFormat, (u32, u32)), FetchError> {
    use image::ImageFormat;
    let format = image::guess_format(bytes).map_err(|_| FetchError::NotAnImage)?;
    let (width, height) = match format {
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP => {
            image::ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|error| FetchError::Corrupt(error.to_string()))?
                .into_dimensions()
                .map_err(|error| FetchError::Corrupt(error.to_string()))?
        }
        // Only what the pipeline can decode: a GIF (or anything else) could not be edited.
        _ => return Err(FetchError::NotAnImage),
    };
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(FetchError::TooManyPixels { width, height });
    }
    Ok((format, (width, height)))
}

#[cfg(test)]
mod tests;
