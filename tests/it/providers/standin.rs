//! What every provider stand-in shares: a loopback server that stops when dropped, a script of
//! replies (the last one repeats), a log of the requests received, a reply that hangs until
//! the stand-in is dropped, and real images to answer with. Each provider's stand-in
//! (`providers/<name>/standin.rs`) adds only its routes, its validation and its answers.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// Bytes that are valid base64 and valid HTTP, but no image: the providers pass them on and
/// the image checks refuse them.
pub(crate) const NOT_AN_IMAGE: &[u8] = b"this is certainly not a PNG";

/// A running stand-in whose state is `S`. Dropping it stops the server and wakes hanging
/// replies. It derefs to its state, where each provider puts what tests may inspect.
pub(crate) struct StandIn<S: Send + Sync + 'static> {
    /// `http://127.0.0.1:{port}`, without any API prefix, like the providers' `base_url`.
    pub base_url: String,
    shared: Arc<Shared<S>>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl<S: Send + Sync + 'static> Deref for StandIn<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.shared.state
    }
}

impl<S: Send + Sync + 'static> Drop for StandIn<S> {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.server.abort();
    }
}

/// What the handlers of a stand-in see: its state, its own address and the shutdown signal.
pub(crate) struct Shared<S> {
    pub base_url: String,
    pub state: S,
    shutdown: watch::Receiver<bool>,
}

impl<S> Deref for Shared<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

impl<S> Shared<S> {
    /// Never answers: sleeps for an hour, or until the stand-in is dropped.
    pub(crate) async fn hang(&self) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => {}
        }
    }
}

/// Starts a stand-in on an ephemeral loopback port with the state `state(base_url)` and the
/// routes of `app`.
pub(crate) async fn spawn<S: Send + Sync + 'static>(
    state: impl FnOnce(&str) -> S,
    app: Router<Arc<Shared<S>>>,
) -> StandIn<S> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
    let base_url = format!("http://{}", listener.local_addr().expect("stand-in address"));
    let (shutdown, mut stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: state(&base_url),
        base_url: base_url.clone(),
        shutdown: stop.clone(),
    });
    let app = app.with_state(Arc::clone(&shared));
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
    });
    StandIn { base_url, shared, shutdown, server }
}

/// The replies a stand-in plays in order; once down to one, that one repeats.
pub(crate) struct Script<R>(Mutex<VecDeque<R>>);

impl<R: Clone> Script<R> {
    pub(crate) fn new(replies: Vec<R>) -> Self {
        assert!(!replies.is_empty(), "the stand-in needs at least one reply");
        Script(Mutex::new(replies.into()))
    }

    pub(crate) fn next(&self) -> R {
        let mut script = lock(&self.0);
        let reply = if script.len() > 1 { script.pop_front() } else { script.front().cloned() };
        reply.expect("the script is never empty")
    }
}

/// Every request a stand-in received, rejected ones and unknown paths included.
pub(crate) struct Log<Q>(Mutex<Vec<Q>>);

impl<Q> Default for Log<Q> {
    fn default() -> Self {
        Log(Mutex::new(Vec::new()))
    }
}

impl<Q: Clone> Log<Q> {
    pub(crate) fn push(&self, request: Q) {
        lock(&self.0).push(request);
    }

    pub(crate) fn all(&self) -> Vec<Q> {
        lock(&self.0).clone()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

/// The common state: a script of replies and the log of requests.
pub(crate) struct Scripted<R, Q = Recorded> {
    pub script: Script<R>,
    pub log: Log<Q>,
}

impl<R: Clone, Q: Clone> Scripted<R, Q> {
    pub(crate) fn new(replies: Vec<R>) -> Self {
        Scripted { script: Script::new(replies), log: Log::default() }
    }

    /// Every request received so far.
    pub(crate) fn requests(&self) -> Vec<Q> {
        self.log.all()
    }

    pub(crate) fn hits(&self) -> usize {
        self.log.len()
    }
}

/// One request as a stand-in received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: Method,
    pub path: String,
    /// The raw query string, if the URL had one.
    pub query: Option<String>,
    /// The query string decoded.
    pub params: BTreeMap<String, String>,
    pub headers: HeaderMap,
    /// The parsed JSON body; `Value::Null` when the body was not JSON.
    pub body: Value,
    /// Multipart text fields in order; empty when the body was not multipart.
    pub fields: Vec<(String, String)>,
    /// Multipart file parts in order.
    pub files: Vec<RecordedFile>,
    /// The body as it came.
    pub raw: Bytes,
}

/// A handler's whole request, recorded: what most stand-in routes take, beside their state.
impl<S: Send + Sync> FromRequest<S> for Recorded {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Recorded, Response> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|error| (StatusCode::BAD_REQUEST, error.to_string()).into_response())?;
        Ok(Recorded::new(&parts.method, &parts.uri, &parts.headers, &body))
    }
}

impl Recorded {
    pub(crate) fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Recorded {
        let query = uri.query().map(str::to_owned);
        let params = query
            .iter()
            .flat_map(|query| url::form_urlencoded::parse(query.as_bytes()).into_owned())
            .collect();
        Recorded {
            method: method.clone(),
            path: uri.path().to_owned(),
            query,
            params,
            headers: headers.clone(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            fields: Vec::new(),
            files: Vec::new(),
            raw: Bytes::copy_from_slice(body),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub(crate) fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// A multipart file part as received.
#[derive(Debug, Clone)]
pub(crate) struct RecordedFile {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// The text fields and file parts of a multipart body.
pub(crate) type Parts = (Vec<(String, String)>, Vec<RecordedFile>);

/// Reads a whole multipart body into its fields and files.
pub(crate) async fn read_parts(mut multipart: axum::extract::Multipart) -> Result<Parts, String> {
    let (mut fields, mut files) = (Vec::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|error| error.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        if file_name.is_some() {
            let bytes = field.bytes().await.map_err(|error| error.to_string())?.to_vec();
            files.push(RecordedFile { name, file_name, content_type, bytes });
        } else {
            fields.push((name, field.text().await.map_err(|error| error.to_string())?));
        }
    }
    Ok((fields, files))
}

/// A JSON error answer with this status and body, and a raw `Retry-After` when given.
pub(crate) fn json_error(status: u16, body: Value, retry_after: Option<&'static str>) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid scripted status");
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(value));
    }
    response
}

/// A real PNG: a smooth gradient, cheap to encode even at 1536 pixels.
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    encode(width, height, image::ImageFormat::Png)
}

/// A real image of this size in `format`.
pub(crate) fn encode(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let red = (x * 255 / width.max(1)) as u8;
        let green = (y * 255 / height.max(1)) as u8;
        image::Rgb([red, green, 128])
    });
    let mut encoded = std::io::Cursor::new(Vec::new());
    image.write_to(&mut encoded, format).expect("encode the stand-in image");
    encoded.into_inner()
}

/// The pixel size of PNG bytes, failing the test when they are not a PNG.
pub(crate) fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("the bytes are a PNG");
    (decoded.width(), decoded.height())
}

/// A loopback URL nothing listens on: a free port taken and released.
pub(crate) fn refused_url() -> (String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    (format!("http://127.0.0.1:{port}"), port)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
