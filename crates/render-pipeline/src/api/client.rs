//! The one HTTP client of the program: files, batches and videos, with retries in one place
//! ([`super::retry`]) and errors a user can act on ([`super::error`]).
//!
//! Built once and shared (it is cheap to clone: the connection pool is shared). The API key
//! travels only in the `Authorization` header, marked sensitive; it is never logged, and
//! [`ApiKey`]'s `Debug`/`Display` print `sk-…redacted`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use super::retry::{self, Next, RetryDecision, RetryPolicy, RetryState, TransportFailure};
use render_wire::api::{
    Batch, ContentVariant, CreateBatch, CreateVideo, Deleted, ErrorBody, FileObject, FilePurpose,
    InputReference, List, Video,
};
use render_wire::dialect::{Dialect, DialectFacts};

pub use crate::provider::DEFAULT_BASE_URL;

/// A 20-second 1080p video at a generous 100 Mbit/s is 250 MB; eight times that is no video.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The largest JSON answer read (a page of 100 batches is a few hundred kilobytes): a server
/// that sends more is not answering the question.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// How much of an unexpected body an error quotes.
const EXCERPT_CHARS: usize = 300;

// ---------------------------------------------------------------- configuration

/// An API key. Shown as `sk-…redacted` everywhere; only [`ApiKey::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The secret itself: only for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sk-…redacted")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sk-…redacted")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timeouts {
    /// Establishing a connection (TCP + TLS).
    pub connect: Duration,
    /// The longest silence while waiting for or reading an answer.
    pub read: Duration,
    /// The whole of a JSON call (not uploads or downloads, whose length depends on size).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(120),
            request: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// e.g. `https://api.openai.com/v1` or the sandbox's `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// The most bytes one download may bring (a body that never ends must not fill the disk).
    pub max_download_bytes: u64,
    /// No `Authorization` header at all when `None` (SGLang and vllm-omni have no auth).
    pub api_key: Option<ApiKey>,
    /// How the server differs from OpenAI's contract.
    pub dialect: Dialect,
    /// Retries after the first attempt (the SDK's 2 is too few for an unattended night).
    pub max_retries: u32,
    /// The first backoff delay (doubles per retry, capped at 8 s); tests make it tiny.
    pub retry_base_delay: Duration,
    pub timeouts: Timeouts,
    pub user_agent: String,
}

impl ClientConfig {
    /// Defaults for everything but where and who.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> ClientConfig {
        let policy = RetryPolicy::default();
        ClientConfig {
            base_url: base_url.into(),
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            api_key: Some(api_key),
            dialect: Dialect::Openai,
            max_retries: policy.max_retries,
            retry_base_delay: policy.base_delay,
            timeouts: Timeouts::default(),
            user_agent: format!("render/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// `OPENAI_BASE_URL` (default [`DEFAULT_BASE_URL`]) and `OPENAI_API_KEY` (required).
    pub fn from_env() -> Result<ClientConfig, ApiError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ClientConfig::from_env`] over any source of variables (tests, config files).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ClientConfig, ApiError> {
        let key = lookup("OPENAI_API_KEY")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::MissingApiKey)?;
        let base = lookup("OPENAI_BASE_URL")
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Ok(ClientConfig::new(base, ApiKey::new(key)))
    }
}

/// Hides credentials in a URL before it is logged: user, password, and key-like query values.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return "<unparseable URL>".to_string();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = ["key", "token", "secret", "sig", "password"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s));
                let v = if secret {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

// ---------------------------------------------------------------- the client

/// What a download wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadOutcome {
    /// Bytes written to the destination by this call (not counting `resume_from`).
    pub bytes: u64,
    /// The full length of the content as the server announced it, when it did.
    /// A complete download has `resume_from + bytes == total_len`.
    pub total_len: Option<u64>,
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    key: Option<ApiKey>,
    facts: DialectFacts,
    max_download_bytes: u64,
    /// The server's clock as its last `Date` header told it, and when that was heard: its
    /// deadlines are in its time, which may not be this machine's.
    server_date: std::sync::Arc<std::sync::Mutex<Option<(i64, std::time::Instant)>>>,
    retry: RetryPolicy,
    timeouts: Timeouts,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &mask_url(self.base.as_str()))
            .field("key", &self.key)
            .field("retry", &self.retry)
            .finish()
    }
}

/// One failed attempt, before the retry decision.
enum Failure {
    Status {
        status: StatusCode,
        headers: HeaderMap,
        message: String,
        /// The error body as sent (some servers describe a failed job in one).
        body: Bytes,
    },
    Transport(reqwest::Error),
    /// The body ended before the announced length without a transport error.
    ShortBody(String),
    /// Retrying cannot help (decode errors, local I/O, protocol violations).
    Fatal(ApiError),
}

impl ApiClient {
    pub fn new(config: ClientConfig) -> Result<ApiClient, ApiError> {
        // reqwest is built without a default crypto provider; another part of the program may
        // have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            ApiError::InvalidConfig {
                message: format!("base URL {}: {e}", mask_url(&config.base_url)),
            }
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ApiError::InvalidConfig {
                message: format!(
                    "base URL {} must be http(s)://host[/path]",
                    mask_url(&config.base_url)
                ),
            });
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.read)
            .build()
            .map_err(|e| ApiError::InvalidConfig {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(ApiClient {
            http,
            base,
            key: config.api_key,
            facts: config.dialect.facts(),
            max_download_bytes: config.max_download_bytes,
            server_date: Default::default(),
            retry: RetryPolicy {
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
                ..RetryPolicy::default()
            },
            timeouts: config.timeouts,
        })
    }

    /// The same client, answering the first failure instead of retrying it. For calls whose
    /// retry the caller must reconcile first (creating a batch twice costs twice).
    pub fn without_retries(&self) -> ApiClient {
        let mut client = self.clone();
        client.retry.max_retries = 0;
        client
    }

    /// How this client retries: loops above it that try again (after reconciling) use the same.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The base URL with credentials masked, for logs and reports.
    pub fn base_url_masked(&self) -> String {
        mask_url(self.base.as_str())
    }

    /// The server's "now" (unix seconds), from its last `Date` header plus the time since;
    /// `None` before any answer carried one.
    pub fn server_now(&self) -> Option<i64> {
        let heard = *self.server_date.lock().unwrap_or_else(|e| e.into_inner());
        heard.map(|(at, when)| at + when.elapsed().as_secs() as i64)
    }

    fn note_date(&self, headers: &HeaderMap) {
        let date = headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(date) = date {
            *self.server_date.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((date.as_secs() as i64, std::time::Instant::now()));
        }
    }

    /// The dialect's facts this client follows.
    pub fn facts(&self) -> DialectFacts {
        self.facts
    }

    // ------------------------------------------------------------ files

    /// Uploads a file from disk, streamed (never held in memory). Retries reopen the file.
    pub async fn upload_file(
        &self,
        path: &Path,
        filename: &str,
        purpose: FilePurpose,
    ) -> Result<FileObject, ApiError> {
        let endpoint = "POST /files";
        self.call_json(Method::POST, &["files"], false, |req| {
            let io_error = |source| ApiError::Io {
                endpoint: endpoint.to_string(),
                action: format!("cannot read {}", path.display()),
                source,
            };
            let file = std::fs::File::open(path).map_err(io_error)?;
            let len = file.metadata().map_err(io_error)?.len();
            let stream = ReaderStream::new(tokio::fs::File::from_std(file));
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                len,
            );
            Ok(req.multipart(upload_form(part, filename, purpose)?))
        })
        .await
    }

    /// Uploads bytes already in memory (batch JSONL files, small images).
    pub async fn upload_bytes(
        &self,
        bytes: Bytes,
        filename: &str,
        purpose: FilePurpose,
    ) -> Result<FileObject, ApiError> {
        self.call_json(Method::POST, &["files"], false, |req| {
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(bytes.clone()),
                bytes.len() as u64,
            );
            Ok(req.multipart(upload_form(part, filename, purpose)?))
        })
        .await
    }

    pub async fn get_file(&self, id: &str) -> Result<FileObject, ApiError> {
        self.call_json(Method::GET, &["files", id], true, Ok).await
    }

    pub async fn delete_file(&self, id: &str) -> Result<Deleted, ApiError> {
        self.call_json(Method::DELETE, &["files", id], true, Ok)
            .await
    }

    /// Streams a file's content (batch output and error files) into `dest`, resuming by
    /// Range after a drop; at most `max_bytes`. Memory stays flat however large the file.
    pub async fn file_content_to<W>(
        &self,
        id: &str,
        dest: &mut W,
        max_bytes: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.download(&["files", id, "content"], None, dest, 0, max_bytes)
            .await
    }

    pub async fn list_files(
        &self,
        purpose: Option<FilePurpose>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<FileObject>, ApiError> {
        let mut query: Vec<(&str, String)> = page_query(after, limit);
        if let Some(purpose) = purpose {
            query.push(("purpose", purpose.as_str().to_string()));
        }
        self.call_json(Method::GET, &["files"], true, |req| Ok(req.query(&query)))
            .await
    }

    // ------------------------------------------------------------ batches

    pub async fn create_batch(&self, body: &CreateBatch) -> Result<Batch, ApiError> {
        self.call_json(Method::POST, &["batches"], true, |req| Ok(req.json(body)))
            .await
    }

    pub async fn get_batch(&self, id: &str) -> Result<Batch, ApiError> {
        self.call_json(Method::GET, &["batches", id], true, Ok)
            .await
    }

    /// One page of batches, newest first.
    pub async fn list_batches(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<Batch>, ApiError> {
        let query = page_query(after, limit);
        self.call_json(Method::GET, &["batches"], true, |req| Ok(req.query(&query)))
            .await
    }

    /// Every batch, walking the pages until `has_more` is false.
    pub async fn list_all_batches(&self) -> Result<Vec<Batch>, ApiError> {
        let mut all: Vec<Batch> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_batches(after.as_deref(), Some(100)).await?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            let progressed = !page.data.is_empty();
            all.extend(page.data);
            // A server that says "more" without moving the cursor would loop forever.
            match next {
                Some(next) if page.has_more && progressed && after.as_ref() != Some(&next) => {
                    after = Some(next)
                }
                _ => return Ok(all),
            }
        }
    }

    pub async fn cancel_batch(&self, id: &str) -> Result<Batch, ApiError> {
        self.call_json(Method::POST, &["batches", id, "cancel"], true, Ok)
            .await
    }

    // ------------------------------------------------------------ videos

    /// A video (job). A job that failed is a video with status `failed`, even from a server
    /// that tells it as an HTTP error carrying the video object (vllm-omni answers 500).
    pub async fn get_video(&self, id: &str) -> Result<Video, ApiError> {
        let segments = ["videos", id];
        let endpoint = endpoint(&Method::GET, &segments);
        let url = self.url(&segments);
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let req = self.request(Method::GET, url.clone(), true);
            let failure = match self.send_and_read(req).await {
                Ok((_, body)) => return self.decode(&endpoint, &body, attempts),
                Err(failure) => failure,
            };
            if let Failure::Status { body, .. } = &failure
                && let Ok(video) = self.decode::<Video>(&endpoint, body, attempts)
                && video.status == render_wire::api::VideoStatus::Failed
            {
                return Ok(video);
            }
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    /// An answer's body as `T`, with the key redacted from whatever the server echoed.
    fn decode<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &[u8],
        attempts: u32,
    ) -> Result<T, ApiError> {
        let body = self.redact_bytes(body.to_vec());
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
            excerpt: self.excerpt(&body),
            attempts,
        })
    }

    /// One page of videos (jobs), newest first where the server orders them.
    pub async fn list_videos(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<Video>, ApiError> {
        let query = page_query(after, limit);
        self.call_json(Method::GET, &["videos"], true, |req| Ok(req.query(&query)))
            .await
    }

    pub async fn delete_video(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        self.call_json(Method::DELETE, &["videos", id], true, Ok)
            .await
    }

    /// `POST /videos`, the way the dialect takes it: JSON with a `file_id` reference, or a
    /// multipart form with the image itself (`image`: path, file name and MIME type).
    /// Retried like any call: use [`ApiClient::without_retries`] where a lost answer must be
    /// reconciled before sending again.
    pub async fn create_video(
        &self,
        body: &CreateVideo,
        image: Option<(&Path, &str, &str)>,
    ) -> Result<Video, ApiError> {
        match self.facts.create_body {
            render_wire::dialect::CreateBody::JsonWithFileId if image.is_none() => {
                self.call_json(Method::POST, &["videos"], true, |req| Ok(req.json(body)))
                    .await
            }
            _ => {
                let endpoint = "POST /videos";
                self.call_json(Method::POST, &["videos"], true, |req| {
                    Ok(req.multipart(video_form(endpoint, body, image)?))
                })
                .await
            }
        }
    }

    /// Streams a video's content into `dest`, starting at byte `resume_from` of the content
    /// (the caller has the bytes before it). Asks `Range: bytes=N-` when `N > 0`, checks the
    /// server's `Content-Range`, and resumes the same way after a connection drops mid-body.
    /// A server that ignores the range gets its first `N` bytes skipped. Memory stays flat.
    pub async fn download_content<W>(
        &self,
        video_id: &str,
        variant: ContentVariant,
        dest: &mut W,
        resume_from: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        // Each server names variants its own way (or not at all): ask the way it understands.
        let query = match variant {
            ContentVariant::Video => self.facts.video_variant(),
            ContentVariant::Thumbnail => {
                Some(self.facts.thumbnail_variant().unwrap_or("thumbnail"))
            }
            ContentVariant::Spritesheet => Some("spritesheet"),
        };
        let segments = ["videos", video_id, "content"];
        self.download(&segments, query, dest, resume_from, self.max_download_bytes)
            .await
    }

    /// The one streaming download: `segments` (with `variant` when given) into `dest` from
    /// byte `resume_from`, resuming by Range after drops, refusing more than `max_bytes`.
    async fn download<W>(
        &self,
        segments: &[&str],
        variant: Option<&str>,
        dest: &mut W,
        resume_from: u64,
        max_bytes: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let endpoint = endpoint(&Method::GET, segments);
        let mut url = self.url(segments);
        if let Some(variant) = variant {
            url.query_pairs_mut().append_pair("variant", variant);
        }
        let mut progress = Progress {
            offset: resume_from,
            written: 0,
            total: None,
            max: max_bytes,
        };
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let before = progress.offset;
            let failure = match self
                .download_attempt(&endpoint, url.clone(), &mut progress, dest, attempts)
                .await
            {
                Ok(()) => {
                    return Ok(DownloadOutcome {
                        bytes: progress.written,
                        total_len: progress.total,
                    });
                }
                Err(failure) => failure,
            };
            if progress.offset > before {
                // A long download that keeps moving is not failing: only stalls use the budget.
                retries.progressed();
            }
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    async fn download_attempt<W>(
        &self,
        endpoint: &str,
        url: Url,
        progress: &mut Progress,
        dest: &mut W,
        attempts: u32,
    ) -> Result<(), Failure>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut req = self
            .request(Method::GET, url, false)
            .header(header::ACCEPT, "application/binary");
        if progress.offset > 0 {
            req = req.header(header::RANGE, format!("bytes={}-", progress.offset));
        }
        let resp = req.send().await.map_err(Failure::Transport)?;
        self.note_date(resp.headers());
        let mut skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = content_range(resp.headers())
                    .filter(|r| r.start == Some(progress.offset))
                    .ok_or_else(|| {
                        protocol(
                            endpoint,
                            attempts,
                            format!(
                                "asked for bytes {}- but got Content-Range {:?}",
                                progress.offset,
                                resp.headers().get(header::CONTENT_RANGE)
                            ),
                        )
                    })?;
                progress.total = range.total.or(progress.total);
                0
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Asking for bytes past the end is fine when we already have them all.
                let total = content_range(resp.headers()).and_then(|r| r.total);
                return match total {
                    Some(total) if total == progress.offset => {
                        progress.total = Some(total);
                        Ok(())
                    }
                    _ => Err(protocol(
                        endpoint,
                        attempts,
                        format!(
                            "range from byte {} not satisfiable (content length {total:?})",
                            progress.offset
                        ),
                    )),
                };
            }
            status if status.is_success() => {
                if progress.offset > 0 {
                    tracing::warn!(
                        endpoint,
                        offset = progress.offset,
                        "server ignored the Range header; skipping bytes already held"
                    );
                }
                progress.total = resp.content_length().or(progress.total);
                progress.offset
            }
            _ => return Err(self.status_failure(resp).await),
        };
        if progress.total.is_some_and(|total| total > progress.max) {
            return Err(too_large(endpoint, progress.max));
        }
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(Failure::Transport)? {
            let mut chunk = &chunk[..];
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = &chunk[n as usize..];
            }
            dest.write_all(chunk)
                .await
                .map_err(|source| write_failure(endpoint, source))?;
            progress.offset += chunk.len() as u64;
            progress.written += chunk.len() as u64;
            if progress.offset > progress.max {
                return Err(too_large(endpoint, progress.max));
            }
        }
        dest.flush()
            .await
            .map_err(|source| write_failure(endpoint, source))?;
        match progress.total {
            Some(total) if progress.offset < total => Err(Failure::ShortBody(format!(
                "the body ended at byte {} of {total}",
                progress.offset
            ))),
            Some(total) if progress.offset > total => Err(protocol(
                endpoint,
                attempts,
                format!(
                    "received {} bytes of a {total}-byte content",
                    progress.offset
                ),
            )),
            _ => Ok(()),
        }
    }

    // ------------------------------------------------------------ plumbing

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Ids are percent-encoded segment by segment: an id cannot escape its path.
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url, whole_call_timeout: bool) -> RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(key) = &self.key {
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-key-characters"));
            auth.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, auth);
        }
        if whole_call_timeout {
            req.timeout(self.timeouts.request)
        } else {
            req
        }
    }

    /// A JSON call with retries: `build` adds the body to a fresh request for every attempt.
    async fn call_json<T, F>(
        &self,
        method: Method,
        segments: &[&str],
        whole_call_timeout: bool,
        build: F,
    ) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        F: Fn(RequestBuilder) -> Result<RequestBuilder, ApiError>,
    {
        let endpoint = endpoint(&method, segments);
        let url = self.url(segments);
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let req = build(self.request(method.clone(), url.clone(), whole_call_timeout))?;
            let failure = match self.send_and_read(req).await {
                // Whatever the server echoes (in a job's error, a batch's errors) is stored
                // and printed: the key goes before anything reads the answer.
                Ok((_, body)) => return self.decode(&endpoint, &body, attempts),
                Err(failure) => failure,
            };
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    /// Sends and reads the whole body; a non-success status becomes a failure with its message.
    async fn send_and_read(&self, req: RequestBuilder) -> Result<(StatusCode, Bytes), Failure> {
        let resp = req.send().await.map_err(Failure::Transport)?;
        self.note_date(resp.headers());
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_failure(resp).await);
        }
        let endpoint = resp.url().path().to_string();
        let body = read_capped(resp, MAX_ANSWER_BYTES, &endpoint).await?;
        Ok((status, body))
    }

    async fn status_failure(&self, resp: Response) -> Failure {
        let status = resp.status();
        let headers = resp.headers().clone();
        let (message, body) = match resp.bytes().await {
            Ok(body) => (self.server_message(status, &body), body),
            Err(_) => (status_reason(status), Bytes::new()),
        };
        Failure::Status {
            status,
            headers,
            message,
            body,
        }
    }

    /// Waits before the next attempt, or turns the failure into the final error.
    async fn pause_or_fail(
        &self,
        endpoint: &str,
        failure: Failure,
        retries: &mut RetryState,
    ) -> Result<(), ApiError> {
        let attempts = retries.attempts();
        let decision = match &failure {
            Failure::Status {
                status, headers, ..
            } => retry::classify_status(*status, headers),
            Failure::Transport(e) => retry::classify_transport(TransportFailure::of(e)),
            Failure::ShortBody(_) => retry::classify_transport(TransportFailure::Dropped),
            Failure::Fatal(_) => RetryDecision::Stop(retry::StopReason::NotRetryable),
        };
        match retries.next(decision) {
            Next::Wait(delay) => {
                tracing::warn!(
                    endpoint,
                    status = failure_status(&failure),
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    "request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Next::GiveUp(declined) => Err(self.final_error(endpoint, failure, attempts, declined)),
        }
    }

    fn final_error(
        &self,
        endpoint: &str,
        failure: Failure,
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> ApiError {
        match failure {
            Failure::Status {
                status,
                message,
                headers,
                ..
            } => {
                let asked = retry_after
                    .or_else(|| retry::server_delay(&headers, std::time::SystemTime::now()));
                // A LiteLLM proxy without a database answers a key it does not know with a 400
                // "No connected db.": that is a refused key, not a refused request.
                let refused_key = self.facts.dialect == Dialect::Litellm
                    && status == StatusCode::BAD_REQUEST
                    && message.contains("No connected db");
                let status = if refused_key { 401 } else { status.as_u16() };
                ApiError::from_status(endpoint, status, message, attempts, asked)
            }
            Failure::Transport(source) => {
                let source = source.without_url();
                ApiError::Transport {
                    endpoint: endpoint.to_string(),
                    detail: self.scrub(&error_chain(&source)),
                    attempts,
                    source,
                }
            }
            Failure::ShortBody(detail) => protocol_error(endpoint, attempts, detail),
            Failure::Fatal(error) => error,
        }
    }

    /// The server's `{"error":{"message"}}` (or FastAPI's `{"detail"}`), else an excerpt of
    /// the body, else the reason phrase.
    fn server_message(&self, status: StatusCode, body: &[u8]) -> String {
        if let Some(message) = error_message_of(body) {
            return self.scrub(&message);
        }
        let excerpt = self.excerpt(body);
        if excerpt.trim().is_empty() {
            status_reason(status)
        } else {
            excerpt
        }
    }

    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        if text.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        self.scrub(&excerpt)
    }

    /// `bytes` with every occurrence of the key masked (for text read outside `call_json`,
    /// such as batch result files).
    pub fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let Some(key) = self.key.as_ref().map(|k| k.expose().as_bytes()) else {
            return bytes;
        };
        if key.len() < 4 || !bytes.windows(key.len()).any(|w| w == key) {
            return bytes;
        }
        match String::from_utf8(bytes) {
            Ok(text) => self.scrub(&text).into_bytes(),
            Err(e) => e.into_bytes(),
        }
    }

    /// Servers sometimes echo the key they were given; it must not reach a log or a terminal.
    fn scrub(&self, text: &str) -> String {
        let Some(key) = &self.key else {
            return text.to_string();
        };
        let key = key.expose();
        if key.len() >= 4 && text.contains(key) {
            text.replace(key, "sk-…redacted")
        } else {
            text.to_string()
        }
    }
}

/// The message of an error body in any of the shapes servers use: OpenAI's
/// `{"error": {"message", "code"}}` (code a string, an integer, or absent), FastAPI's
/// `{"detail": "…"}` or `{"detail": [{"msg", "loc"}]}`, or a bare `{"message"}`.
pub fn error_message_of(body: &[u8]) -> Option<String> {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.error.message.is_empty()
    {
        return Some(match parsed.error.code {
            Some(code) if !parsed.error.message.contains(&code) && code.parse::<u16>().is_err() => {
                format!("{} ({code})", parsed.error.message)
            }
            _ => parsed.error.message,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    match value.get("detail") {
        Some(serde_json::Value::String(detail)) => return Some(detail.clone()),
        Some(serde_json::Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|item| {
                    let msg = item.get("msg").and_then(text)?;
                    let loc = item.get("loc").and_then(|l| l.as_array()).map(|l| {
                        l.iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(".")
                    });
                    Some(match loc {
                        Some(loc) if !loc.is_empty() => format!("{loc}: {msg}"),
                        _ => msg,
                    })
                })
                .collect();
            if !parts.is_empty() {
                return Some(parts.join("; "));
            }
        }
        _ => {}
    }
    value
        .get("error")
        .and_then(text)
        .or_else(|| value.get("message").and_then(text))
}

/// The multipart form of a `POST /videos`: the text fields, and the reference image as a file.
fn video_form(
    endpoint: &str,
    body: &CreateVideo,
    image: Option<(&Path, &str, &str)>,
) -> Result<reqwest::multipart::Form, ApiError> {
    let mut form = reqwest::multipart::Form::new().text("prompt", body.prompt.clone());
    for (name, value) in [
        ("model", &body.model),
        ("size", &body.size),
        ("seconds", &body.seconds),
    ] {
        if let Some(value) = value {
            form = form.text(name, value.clone());
        }
    }
    match (&body.input_reference, image) {
        (_, Some((path, filename, mime))) => {
            // Reference images are small (a first frame): read whole, so a retry can resend.
            let bytes = std::fs::read(path).map_err(|source| ApiError::Io {
                endpoint: endpoint.to_string(),
                action: format!("cannot read {}", path.display()),
                source,
            })?;
            let part = reqwest::multipart::Part::bytes(bytes)
                .file_name(filename.to_string())
                .mime_str(mime)
                .map_err(|e| ApiError::InvalidConfig {
                    message: format!("reference MIME type {mime}: {e}"),
                })?;
            form = form.part("input_reference", part);
        }
        (Some(InputReference::FileId { file_id }), None) => {
            form = form.text("input_reference[file_id]", file_id.clone());
        }
        (Some(InputReference::ImageUrl { image_url }), None) => {
            form = form.text("input_reference[image_url]", image_url.clone());
        }
        (None, None) => {}
    }
    Ok(form)
}

/// A whole answer, refused once it passes `max` bytes (announced or received).
async fn read_capped(mut resp: Response, max: usize, endpoint: &str) -> Result<Bytes, Failure> {
    if resp.content_length().is_some_and(|len| len > max as u64) {
        return Err(too_large(endpoint, max as u64));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(Failure::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(too_large(endpoint, max as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

struct Progress {
    /// The position in the content of the next byte to write.
    offset: u64,
    /// Bytes written by this call.
    written: u64,
    total: Option<u64>,
    /// The most the content may be.
    max: u64,
}

struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

/// Parses `bytes START-END/TOTAL`, `bytes START-END/*` and `bytes */TOTAL`.
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => Some(r.split_once('-')?.0.parse().ok()?),
    };
    Some(ContentRange { start, total })
}

fn upload_form(
    part: reqwest::multipart::Part,
    filename: &str,
    purpose: FilePurpose,
) -> Result<reqwest::multipart::Form, ApiError> {
    let mut part = part.file_name(filename.to_string());
    if let Some(mime) = part_mime(filename) {
        part = part.mime_str(mime).map_err(|e| ApiError::InvalidConfig {
            message: format!("MIME type {mime}: {e}"),
        })?;
    }
    Ok(reqwest::multipart::Form::new()
        .text("purpose", purpose.as_str())
        .part("file", part))
}

fn part_mime(filename: &str) -> Option<&'static str> {
    let ext = Path::new(filename)
        .extension()?
        .to_str()?
        .to_ascii_lowercase();
    Some(match ext.as_str() {
        "jsonl" => "application/jsonl",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => return None,
    })
}

fn page_query(after: Option<&str>, limit: Option<u32>) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(after) = after {
        query.push(("after", after.to_string()));
    }
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    query
}

fn endpoint(method: &Method, segments: &[&str]) -> String {
    format!("{method} /{}", segments.join("/"))
}

fn status_reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("no message from the server")
        .to_string()
}

fn failure_status(failure: &Failure) -> Option<u16> {
    match failure {
        Failure::Status { status, .. } => Some(status.as_u16()),
        _ => None,
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn too_large(endpoint: &str, limit: u64) -> Failure {
    Failure::Fatal(ApiError::TooLarge {
        endpoint: endpoint.to_string(),
        limit,
    })
}

fn protocol_error(endpoint: &str, attempts: u32, detail: String) -> ApiError {
    ApiError::Protocol {
        endpoint: endpoint.to_string(),
        detail,
        attempts,
    }
}

fn protocol(endpoint: &str, attempts: u32, detail: String) -> Failure {
    Failure::Fatal(protocol_error(endpoint, attempts, detail))
}

fn write_failure(endpoint: &str, source: std::io::Error) -> Failure {
    Failure::Fatal(ApiError::Io {
        endpoint: endpoint.to_string(),
        action: "cannot write the downloaded content".to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_never_shows_in_debug_or_display() {
        let config = ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new("sk-live-SECRET123"));
        assert!(!format!("{config:?}").contains("SECRET123"));
        assert_eq!(config.api_key.unwrap().to_string(), "sk-…redacted");
    }

    #[test]
    fn credentials_in_urls_are_masked() {
        let masked = mask_url("https://user:hunter2@example.com/v1?api_key=abc&limit=3");
        assert!(
            !masked.contains("hunter2") && !masked.contains("abc"),
            "{masked}"
        );
        assert!(masked.contains("limit=3"));
    }

    #[test]
    fn from_env_requires_a_key_and_defaults_the_base() {
        let missing = ClientConfig::from_lookup(|_| None).unwrap_err();
        assert!(matches!(missing, ApiError::MissingApiKey));
        assert!(missing.to_string().contains("OPENAI_API_KEY"));
        let config = ClientConfig::from_lookup(|name| {
            (name == "OPENAI_API_KEY").then(|| "sk-test".to_string())
        })
        .unwrap();
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn error_messages_come_out_of_every_servers_shape() {
        let cases: [(&str, &str); 6] = [
            (
                r#"{"error":{"message":"Video not found","code":"not_found"}}"#,
                "Video not found (not_found)",
            ),
            (r#"{"error":{"message":"boom","code":500}}"#, "boom"),
            (r#"{"error":{"message":"no code here"}}"#, "no code here"),
            (
                r#"{"detail":"Generation is still in-progress"}"#,
                "Generation is still in-progress",
            ),
            (
                r#"{"detail":[{"type":"missing","loc":["body","prompt"],"msg":"Field required"}]}"#,
                "body.prompt: Field required",
            ),
            (r#"{"message":"plain"}"#, "plain"),
        ];
        for (body, expected) in cases {
            assert_eq!(
                error_message_of(body.as_bytes()).as_deref(),
                Some(expected),
                "{body}"
            );
        }
        assert_eq!(error_message_of(b"Internal Server Error"), None);
    }

    #[test]
    fn content_range_forms_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 10-99/100"),
        );
        let r = content_range(&headers).unwrap();
        assert_eq!((r.start, r.total), (Some(10), Some(100)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */100"),
        );
        let r = content_range(&headers).unwrap();
        assert_eq!((r.start, r.total), (None, Some(100)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("items 1-2/3"),
        );
        assert!(content_range(&headers).is_none());
    }
}
