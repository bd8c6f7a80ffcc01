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

mod batches;
mod download;
mod files;
mod http;
mod videos;

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
mod tests;
