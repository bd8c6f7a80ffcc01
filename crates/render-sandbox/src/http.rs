//! HTTP plumbing shared by the endpoints: auth, fault injection, request counting, the virtual
//! `Date` header, byte ranges and streamed bodies.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::clock::http_date;
use super::error::ApiFailure;
use super::faults::{Fault, Malformation};
use super::state::{SandboxState, lock};

/// Marks a response whose body bytes count as served content of this variant.
#[derive(Clone, Copy, Debug)]
pub struct Served(pub &'static str);

/// Auth, faults and counting around every `/v1` request.
pub async fn observe(
    State(state): State<Arc<SandboxState>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let endpoint = match request.extensions().get::<MatchedPath>() {
        Some(matched) => format!("{method} {}", matched.as_str()),
        None => format!("{method} {path}"),
    };
    let in_progress = InProgress::begin(&state, endpoint);
    let mut response = match check_auth(&state, request.headers()) {
        Err(failure) => reshape(&state, failure.into_response()),
        Ok(()) => with_faults(&state, &method, &path, request, next).await,
    };
    lock(&state.stats).count_request(in_progress.endpoint.clone(), response.status().as_u16());
    if let Some(Served(variant)) = response.extensions().get::<Served>().copied() {
        response = count_served(response, state, variant, in_progress);
    }
    response
}

/// A request counted in progress until this is dropped: with the answer, or with the end of
/// a streamed body.
struct InProgress {
    state: Arc<SandboxState>,
    endpoint: String,
}

impl InProgress {
    fn begin(state: &Arc<SandboxState>, endpoint: String) -> InProgress {
        lock(&state.stats).request_began(&endpoint);
        InProgress {
            state: state.clone(),
            endpoint,
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        lock(&self.state.stats).request_ended(&self.endpoint);
    }
}

async fn with_faults(
    state: &Arc<SandboxState>,
    method: &str,
    path: &str,
    mut request: Request,
    next: Next,
) -> Response {
    let decision = lock(&state.faults).decide(method, path);
    for name in &decision.applied {
        state.count_fault(name);
    }
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    if decision.ignore_range {
        request.headers_mut().remove(header::RANGE);
    }
    let mut response = match &decision.respond {
        Some(Fault::RateLimit { retry_after_ms }) => {
            ApiFailure::rate_limited(*retry_after_ms).into_response()
        }
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            ApiFailure::server_error(status).into_response()
        }
        Some(Fault::Unavailable { retry_after_ms }) => {
            ApiFailure::unavailable(*retry_after_ms).into_response()
        }
        Some(Fault::NotFound) => not_found(state, method, path).into_response(),
        Some(Fault::ShouldRetry { status, retry }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut failure = if status.is_server_error() {
                ApiFailure::server_error(status)
            } else {
                ApiFailure::invalid(None, None, "The request was refused (sandbox fault).")
            };
            failure.status = status;
            let value = HeaderValue::from_static(if *retry { "true" } else { "false" });
            failure.headers.insert("x-should-retry", value);
            failure.into_response()
        }
        _ => next.run(request).await,
    };
    // Before any damage: a malformed answer is the dialect's answer, damaged.
    response = reshape(state, response);
    if let Some(shape) = decision.malform {
        response = malform(response, shape).await;
    }
    if let Some((after, silence)) = decision.stall {
        response = stall_after(response, after, silence);
    }
    match decision.drop_after {
        Some(after) => cut_after(response, after),
        None => response,
    }
}

/// Writes a failure built in OpenAI's words in the dialect's shape.
fn reshape(state: &SandboxState, response: Response) -> Response {
    match response
        .extensions()
        .get::<ApiFailure>()
        .and_then(|failure| state.profile.reshape(failure))
    {
        Some(reshaped) => reshaped.into_response(),
        None => response,
    }
}

/// The `not_found` fault: the 404 the server answers for an unknown object at `path`.
fn not_found(state: &SandboxState, method: &str, path: &str) -> ApiFailure {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["v1", "videos", id, ..] => state.profile.video_not_found(id),
        ["v1", "files", id, ..] => ApiFailure::not_found("File", id),
        ["v1", "batches", id, ..] => ApiFailure::not_found("Batch", id),
        _ => state.profile.route_not_found(method, path),
    }
}

fn check_auth(state: &SandboxState, headers: &HeaderMap) -> Result<(), ApiFailure> {
    // Self-hosted servers (SGLang, vllm-omni) take any request, with or without a key.
    if !state.profile.facts.requires_key {
        return Ok(());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = match (&state.config.api_key, presented) {
        (_, None) | (_, Some("")) => false,
        (Some(expected), Some(key)) => key == expected,
        (None, Some(_)) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(state.profile.unauthorized(presented))
    }
}

/// Sends the headers and the first `after` bytes of the body, then aborts the connection
/// (the body stream errors, so hyper resets it mid-body).
fn cut_after(response: Response, after: u64) -> Response {
    // The pause lets hyper flush what was sent before the cut, or the client would see less.
    cut(response, after, FLUSH_GRACE, ShortBody::Ends)
}

/// Sends the headers and the first `after` bytes of the body, then nothing for `silence` (the
/// connection stays open, as a hung upstream's does), then aborts the connection.
fn stall_after(response: Response, after: u64, silence: std::time::Duration) -> Response {
    cut(response, after, silence, ShortBody::Stalls)
}

/// What a body shorter than `after` does: ends whole (nothing to cut), or stalls before its
/// end all the same.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ShortBody {
    Ends,
    Stalls,
}

/// The first `after` bytes of the body, a pause, then an aborted connection.
fn cut(response: Response, after: u64, pause: std::time::Duration, short: ShortBody) -> Response {
    let (parts, body) = response.into_parts();
    let state = (body.into_data_stream(), after, false);
    let cut = futures_util::stream::unfold(state, move |(mut stream, left, done)| async move {
        let abort = |stream| async move {
            tokio::time::sleep(pause).await;
            Some((Err(dropped()), (stream, 0, true)))
        };
        if done {
            return None;
        }
        if left == 0 {
            return abort(stream).await;
        }
        match stream.next().await {
            Some(Ok(chunk)) if chunk.len() as u64 >= left => {
                Some((Ok(chunk.slice(..left as usize)), (stream, 0, false)))
            }
            Some(Ok(chunk)) => {
                let left = left - chunk.len() as u64;
                Some((Ok(chunk), (stream, left, false)))
            }
            Some(Err(e)) => Some((Err(io::Error::other(e)), (stream, 0, true))),
            None if short == ShortBody::Stalls => abort(stream).await,
            None => None,
        }
    });
    Response::from_parts(parts, Body::from_stream(cut))
}

/// Largest answer a `malformed` fault buffers to damage it; longer ones pass unharmed.
const MALFORM_MAX_BODY: usize = 64 * 1024 * 1024;

/// Damages an answer the way `shape` says (see [`Malformation`]).
async fn malform(response: Response, shape: Malformation) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MALFORM_MAX_BODY).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "sandbox: answer too large to malform",
        )
            .into_response();
    };
    let body = match shape {
        Malformation::TruncatedJson => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(bytes.slice(..bytes.len() / 2))
        }
        Malformation::LongerContentLength => {
            let announced = bytes.len() as u64 + 64;
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
            // A stream, so the server trusts the header instead of the body's own length.
            let once = futures_util::stream::once(async move { Ok::<Bytes, io::Error>(bytes) });
            Body::from_stream(once)
        }
        Malformation::UnknownStatus => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(with_unknown_status(bytes))
        }
    };
    Response::from_parts(parts, body)
}

/// The JSON answer with every `status` (its own and its `data` items') made unknown.
fn with_unknown_status(bytes: Bytes) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    let mut objects = vec![&mut value];
    while let Some(object) = objects.pop() {
        if let Some(status) = object.get_mut("status").filter(|s| s.is_string()) {
            *status = Malformation::UNKNOWN_STATUS.into();
        }
        if let Some(serde_json::Value::Array(items)) = object.get_mut("data") {
            objects.extend(items.iter_mut());
        }
    }
    serde_json::to_vec(&value).map_or(bytes, Bytes::from)
}

/// Pause between the last bytes sent and the cut of a dropped connection.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(30);

fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "sandbox fault: connection dropped",
    )
}

/// Counts body bytes as they are sent (so a dropped download counts only what left).
fn count_served(
    response: Response,
    state: Arc<SandboxState>,
    variant: &'static str,
    in_progress: InProgress,
) -> Response {
    let (parts, body) = response.into_parts();
    // The body holds the request's place in progress until it ends or is dropped.
    let counted = body.into_data_stream().inspect(move |item| {
        let _ = &in_progress;
        if let Ok(chunk) = item {
            lock(&state.stats).count_bytes(variant, chunk.len() as u64);
        }
    });
    Response::from_parts(parts, Body::from_stream(counted))
}

/// Adds `Date` in virtual time (so a client can compute time left) and a request id.
pub async fn virtual_date(
    State(state): State<Arc<SandboxState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let date = http_date(state.clock.now());
    if let Ok(value) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, value);
    }
    let request_id = lock(&state.store).new_request_id();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// 404 in the dialect's shape for paths it does not have.
pub async fn fallback(State(state): State<Arc<SandboxState>>, request: Request) -> ApiFailure {
    state
        .profile
        .route_not_found(request.method().as_str(), request.uri().path())
}

/// 405 in the dialect's shape for a method a path does not take.
pub async fn method_not_allowed(State(state): State<Arc<SandboxState>>) -> ApiFailure {
    state.profile.method_not_allowed()
}

/// The requested byte range: `Ok(None)` for the whole body, `Err` when unsatisfiable.
/// Supports `bytes=N-`, `bytes=N-M` and `bytes=-S`; other forms are ignored (whole body),
/// as HTTP allows.
pub fn parse_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let Ok(suffix) = end.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let Ok(first) = start.parse::<u64>() else {
            return Ok(None);
        };
        let last = if end.is_empty() {
            len.saturating_sub(1)
        } else {
            match end.parse::<u64>() {
                Ok(last) if last >= first => last.min(len.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if first >= len {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

/// Headers and status of a (possibly partial) content answer; `Err` is the 416 answer.
fn content_head(
    headers: &HeaderMap,
    len: u64,
    content_type: &str,
) -> Result<(StatusCode, HeaderMap, u64, u64), Box<Response>> {
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        out.insert(header::CONTENT_TYPE, value);
    }
    let (status, start, end) = match parse_range(headers, len) {
        Err(()) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Err(Box::new(response));
        }
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((first, last))) => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                out.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, first, last + 1)
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    Ok((status, out, start, end))
}

/// Serves bytes held in memory, honouring `Range`.
pub fn ranged_bytes(
    content: Bytes,
    content_type: &str,
    headers: &HeaderMap,
    served: Served,
) -> Result<Response, ApiFailure> {
    let (status, head, start, end) = match content_head(headers, content.len() as u64, content_type)
    {
        Ok(head) => head,
        Err(response) => return Ok(*response),
    };
    let body = content.slice(start as usize..end as usize);
    let mut response = (status, head, body).into_response();
    response.extensions_mut().insert(served);
    Ok(response)
}

/// Serves `len` bytes produced by `stream_from(start, end)`, honouring `Range`.
pub fn ranged_stream<S>(
    len: u64,
    content_type: &str,
    headers: &HeaderMap,
    served: Served,
    stream_from: impl FnOnce(u64, u64) -> S,
) -> Response
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
{
    let (status, head, start, end) = match content_head(headers, len, content_type) {
        Ok(head) => head,
        Err(response) => return *response,
    };
    let mut response = (status, head, Body::from_stream(stream_from(start, end))).into_response();
    response.extensions_mut().insert(served);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        parse_range(&headers, len)
    }

    #[test]
    fn ranges_parse_like_http_says() {
        assert_eq!(range("bytes=10-", 100), Ok(Some((10, 99))));
        assert_eq!(range("bytes=10-19", 100), Ok(Some((10, 19))));
        assert_eq!(range("bytes=90-200", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-5", 100), Ok(Some((95, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=1-2", 100), Ok(None));
        assert_eq!(range("bytes=5-2", 100), Ok(None));
    }
}
