//! The API client against a real HTTP server on 127.0.0.1 that misbehaves on cue: rate limits,
//! 5xx, connections cut mid-body, Range requests, stalls. The server counts and records hits.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use render_pipeline::api::client::{ApiClient, ApiKey, ClientConfig, DownloadOutcome};
use render_pipeline::api::error::ApiError;
use render_pipeline::cache::LocalStore;
use render_wire::api::{ContentVariant, CreateBatch, FilePurpose};
use render_wire::key::Sha256Hex;
use serde_json::json;

const KEY: &str = "sk-test-TOPSECRET-0123456789";

#[derive(Clone)]
enum Reply {
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// A 200 JSON answer whose connection is cut after `keep` bytes.
    CutJson { body: String, keep: usize },
    /// The script's content, honouring `Range: bytes=N-` if asked; cut after `cut_after` bytes.
    Content {
        cut_after: Option<usize>,
        honour_range: bool,
    },
    /// Parses a multipart upload and answers with a file object.
    Upload,
    /// Answers only after a pause (to trip the client's timeout).
    Stall(Duration),
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    range: Option<String>,
    auth: Option<String>,
}

struct Script {
    replies: Mutex<VecDeque<Reply>>,
    fallback: Reply,
    content: Vec<u8>,
    seen: Mutex<Vec<Seen>>,
    uploads: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl Script {
    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct TestServer {
    base: String,
    script: Arc<Script>,
}

async fn serve(replies: Vec<Reply>, fallback: Reply, content: Vec<u8>) -> TestServer {
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into()),
        fallback,
        content,
        seen: Mutex::new(Vec::new()),
        uploads: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer {
        base: format!("http://{addr}/v1"),
        script,
    }
}

async fn handle(State(script): State<Arc<Script>>, req: Request) -> Response {
    let seen = seen_of(&req);
    let range = seen.range.clone();
    script.seen.lock().unwrap().push(seen);
    let reply = script
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| script.fallback.clone());
    match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => {
            let mut resp = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/json");
            for (name, value) in headers {
                resp = resp.header(name, value);
            }
            resp.body(Body::from(body)).unwrap()
        }
        Reply::CutJson { body, keep } => {
            let mut resp = cut_response(StatusCode::OK, Bytes::from(body), keep, Vec::new());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Reply::Content {
            cut_after,
            honour_range,
        } => content_response(&script.content, range.as_deref(), cut_after, honour_range),
        Reply::Upload => upload_response(&script, req).await,
        Reply::Stall(pause) => {
            tokio::time::sleep(pause).await;
            Response::new(Body::from("{}"))
        }
    }
}

fn seen_of(req: &Request) -> Seen {
    let header_text = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        range: header_text(header::RANGE),
        auth: header_text(header::AUTHORIZATION),
    }
}

/// Announces the whole body's length, sends the first `keep` bytes, then drops the connection.
fn cut_response(
    status: StatusCode,
    body: Bytes,
    keep: usize,
    headers: Vec<(header::HeaderName, String)>,
) -> Response {
    let full = body.len();
    let sent = body.slice(..keep.min(full));
    let chunks: Vec<Result<Bytes, std::io::Error>> = sent
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    // Let the bytes reach the client before the cut, as a real dropped connection would.
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("connection cut on purpose"))
    });
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, full);
    for (name, value) in headers {
        resp = resp.header(name, value);
    }
    resp.body(Body::from_stream(futures_util::StreamExt::chain(
        futures_util::stream::iter(chunks),
        cut,
    )))
    .unwrap()
}

fn content_response(
    content: &[u8],
    range: Option<&str>,
    cut_after: Option<usize>,
    honour_range: bool,
) -> Response {
    let start = range
        .filter(|_| honour_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let total = content.len();
    let (status, body, mut headers) = match start {
        Some(start) if start >= total => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(Body::empty())
                .unwrap();
        }
        Some(start) => (
            StatusCode::PARTIAL_CONTENT,
            Bytes::copy_from_slice(&content[start..]),
            vec![(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", total - 1),
            )],
        ),
        None => (StatusCode::OK, Bytes::copy_from_slice(content), Vec::new()),
    };
    headers.push((header::CONTENT_TYPE, "video/mp4".to_string()));
    let keep = cut_after.unwrap_or(usize::MAX);
    if keep >= body.len() {
        let mut resp = Response::builder().status(status);
        for (name, value) in headers {
            resp = resp.header(name, value);
        }
        return resp.body(Body::from(body)).unwrap();
    }
    cut_response(status, body, keep, headers)
}

async fn upload_response(script: &Script, req: Request) -> Response {
    let mut form = match Multipart::from_request(req, &()).await {
        Ok(form) => form,
        Err(e) => return json_reply(400, json!({"error": {"message": e.body_text()}})),
    };
    let (mut purpose, mut filename, mut data) = (String::new(), String::new(), Vec::new());
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.unwrap_or_default(),
            Some("file") => {
                filename = field.file_name().unwrap_or_default().to_string();
                data = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            }
            _ => {}
        }
    }
    let answer = json!({
        "id": format!("file-{}", script.uploads.lock().unwrap().len() + 1),
        "object": "file", "bytes": data.len(), "created_at": 1, "filename": filename,
        "purpose": purpose, "status": "processed"
    });
    script
        .uploads
        .lock()
        .unwrap()
        .push((purpose, filename, data));
    json_reply(200, answer)
}

fn json_reply(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

// ---------------------------------------------------------------- helpers for the tests

fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Json {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

fn json_with(status: u16, headers: &[(&'static str, &str)], body: serde_json::Value) -> Reply {
    Reply::Json {
        status,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.to_string(),
    }
}

fn error_body(message: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": "test_error", "param": null, "code": null}})
}

fn batch_json(id: &str) -> serde_json::Value {
    json!({
        "id": id, "object": "batch", "endpoint": "/v1/videos", "input_file_id": "file-1",
        "completion_window": "24h", "status": "in_progress", "created_at": 1_700_000_000
    })
}

fn client(server: &TestServer, max_retries: u32) -> ApiClient {
    let mut config = ClientConfig::new(server.base.clone(), ApiKey::new(KEY));
    config.max_retries = max_retries;
    config.retry_base_delay = Duration::from_millis(1);
    ApiClient::new(config).unwrap()
}

fn video_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7919) % 251) as u8).collect()
}

/// Collects every log line written while `f` runs.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let server = serve(
        vec![json_with(
            429,
            &[("retry-after", "1")],
            error_body("slow down"),
        )],
        json(200, batch_json("batch_1")),
        Vec::new(),
    )
    .await;
    let started = Instant::now();
    let batch = client(&server, 4).get_batch("batch_1").await.unwrap();
    assert_eq!(batch.id, "batch_1");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.script.hits(), 2);
}

#[tokio::test]
async fn retry_after_ms_is_honoured() {
    let server = serve(
        vec![
            json_with(429, &[("retry-after-ms", "300")], error_body("slow down")),
            json_with(503, &[("retry-after-ms", "200")], error_body("busy")),
        ],
        json(200, batch_json("batch_1")),
        Vec::new(),
    )
    .await;
    let started = Instant::now();
    client(&server, 4).get_batch("batch_1").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.script.hits(), 3);
}

#[tokio::test]
async fn a_retry_after_beyond_two_minutes_is_not_waited_for() {
    let server = serve(
        vec![],
        json_with(
            429,
            &[("retry-after", "300")],
            error_body("come back later"),
        ),
        Vec::new(),
    )
    .await;
    let started = Instant::now();
    let err = client(&server, 4).get_batch("batch_1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.script.hits(), 1);
    match &err {
        ApiError::RateLimited {
            attempts,
            retry_after,
            message,
            ..
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(*retry_after, Some(Duration::from_secs(300)));
            assert_eq!(message, "come back later");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(err.to_string().contains("300 s"), "{err}");
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = serve(
        vec![
            json(500, error_body("oops")),
            json(502, error_body("bad gateway")),
            json(503, error_body("unavailable")),
        ],
        json(200, batch_json("batch_9")),
        Vec::new(),
    )
    .await;
    let batch = client(&server, 4).get_batch("batch_9").await.unwrap();
    assert_eq!(batch.id, "batch_9");
    assert_eq!(server.script.hits(), 4);
}

#[tokio::test]
async fn exhausted_retries_report_attempts_and_the_servers_message() {
    let server = serve(
        vec![],
        json(503, error_body("the night shift is over")),
        Vec::new(),
    )
    .await;
    let err = client(&server, 2).get_batch("batch_1").await.unwrap_err();
    assert_eq!(server.script.hits(), 3);
    assert!(
        matches!(
            &err,
            ApiError::Server {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.server_message(), Some("the night shift is over"));
    let shown = err.to_string();
    assert!(
        shown.contains("the night shift is over") && shown.contains("3 attempt"),
        "{shown}"
    );
    assert!(shown.contains("GET /batches/batch_1"), "{shown}");
}

#[tokio::test]
async fn the_server_can_forbid_or_demand_a_retry() {
    let server = serve(
        vec![json_with(
            500,
            &[("x-should-retry", "false")],
            error_body("do not"),
        )],
        json(200, batch_json("batch_1")),
        Vec::new(),
    )
    .await;
    let err = client(&server, 4).get_batch("batch_1").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Server { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(server.script.hits(), 1);

    let server = serve(
        vec![json_with(
            400,
            &[("x-should-retry", "true")],
            error_body("again"),
        )],
        json(200, batch_json("batch_1")),
        Vec::new(),
    )
    .await;
    client(&server, 4).get_batch("batch_1").await.unwrap();
    assert_eq!(server.script.hits(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_their_meaning() {
    let server = serve(
        vec![],
        json(404, error_body("No batch with id batch_x")),
        Vec::new(),
    )
    .await;
    let err = client(&server, 4).get_batch("batch_x").await.unwrap_err();
    assert!(
        matches!(err, ApiError::NotFound { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(server.script.hits(), 1);

    let server = serve(vec![], json(400, error_body("bad endpoint")), Vec::new()).await;
    let body = CreateBatch {
        input_file_id: "file-1".into(),
        endpoint: "/v1/nope".into(),
        completion_window: "24h".into(),
        metadata: None,
    };
    let err = client(&server, 4).create_batch(&body).await.unwrap_err();
    assert!(
        matches!(err, ApiError::BadRequest { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(err.server_message(), Some("bad endpoint"));
}

#[tokio::test]
async fn a_connection_cut_mid_json_is_retried() {
    let body = batch_json("batch_cut").to_string();
    let server = serve(
        vec![Reply::CutJson {
            body: body.clone(),
            keep: 20,
        }],
        json(200, batch_json("batch_cut")),
        Vec::new(),
    )
    .await;
    let batch = client(&server, 4).get_batch("batch_cut").await.unwrap();
    assert_eq!(batch.id, "batch_cut");
    assert_eq!(server.script.hits(), 2);
}

#[tokio::test]
async fn a_stalled_server_times_out_and_is_retried() {
    let server = serve(vec![], Reply::Stall(Duration::from_secs(5)), Vec::new()).await;
    let mut config = ClientConfig::new(server.base.clone(), ApiKey::new(KEY));
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(1);
    config.timeouts.request = Duration::from_millis(200);
    let started = Instant::now();
    let err = ApiClient::new(config)
        .unwrap()
        .get_batch("batch_1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.script.hits(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = ClientConfig::new(format!("http://127.0.0.1:{port}/v1"), ApiKey::new(KEY));
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(1);
    let err = ApiClient::new(config)
        .unwrap()
        .get_video("video_1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
}

// ---------------------------------------------------------------- secrets and decoding

#[tokio::test]
async fn unauthorized_says_what_to_check_and_never_shows_the_key() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let echo = format!("Incorrect API key provided: {KEY}");
    let server = serve(
        vec![json(500, error_body(&format!("key {KEY} made me crash")))],
        json(401, error_body(&echo)),
        Vec::new(),
    )
    .await;
    let err = client(&server, 4).get_file("file-1").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Unauthorized { attempts: 2, .. }),
        "{err:?}"
    );
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("OPENAI_API_KEY"), "{shown}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    let seen = server.script.seen();
    assert_eq!(
        seen[0].auth.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    let log_text = logs.text();
    assert!(
        log_text.contains("retrying"),
        "the 500 was logged: {log_text}"
    );
    assert!(!log_text.contains("TOPSECRET"), "{log_text}");
    assert!(!format!("{:?}", client(&server, 0)).contains("TOPSECRET"));
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_with_an_excerpt() {
    let server = serve(
        vec![Reply::Json {
            status: 200,
            headers: Vec::new(),
            body: r#"{"id": "batch_1", "status": "#.to_string(),
        }],
        json(200, json!({"hello": "world"})),
        Vec::new(),
    )
    .await;
    let api = client(&server, 4);
    let err = api.get_batch("batch_1").await.unwrap_err();
    match &err {
        ApiError::Decode {
            excerpt, attempts, ..
        } => {
            assert!(excerpt.contains(r#""id": "batch_1""#), "{excerpt}");
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    // Valid JSON of the wrong shape is a decode error too, not a panic.
    let err = api.get_batch("batch_1").await.unwrap_err();
    assert!(matches!(&err, ApiError::Decode { excerpt, .. } if excerpt.contains("hello")));
    assert_eq!(server.script.hits(), 2);
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn listing_all_batches_walks_every_page() {
    let page = |ids: &[&str], more: bool| {
        let data: Vec<_> = ids.iter().map(|id| batch_json(id)).collect();
        json(
            200,
            json!({"object": "list", "data": data, "first_id": ids[0],
            "last_id": ids[ids.len() - 1], "has_more": more}),
        )
    };
    let server = serve(
        vec![page(&["b1", "b2"], true), page(&["b3", "b4"], true)],
        page(&["b5"], false),
        Vec::new(),
    )
    .await;
    let all = client(&server, 0).list_all_batches().await.unwrap();
    let ids: Vec<_> = all.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["b1", "b2", "b3", "b4", "b5"]);
    let queries: Vec<_> = server.script.seen().into_iter().map(|s| s.query).collect();
    assert_eq!(queries[1].as_deref(), Some("after=b2&limit=100"));
    assert_eq!(queries[2].as_deref(), Some("after=b4&limit=100"));
}

#[tokio::test]
async fn uploads_stream_the_file_and_survive_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.jsonl");
    let data = video_bytes(3 * 1024 * 1024 + 11);
    std::fs::write(&path, &data).unwrap();
    let server = serve(
        vec![json(502, error_body("hiccup"))],
        Reply::Upload,
        Vec::new(),
    )
    .await;
    let file = client(&server, 4)
        .upload_file(&path, "batch.jsonl", FilePurpose::Batch)
        .await
        .unwrap();
    assert_eq!(file.bytes, data.len() as u64);
    assert_eq!(file.purpose, FilePurpose::Batch);
    let uploads = server.script.uploads.lock().unwrap().clone();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].0, "batch");
    assert_eq!(uploads[0].1, "batch.jsonl");
    assert!(uploads[0].2 == data, "uploaded bytes differ");
    let seen = server.script.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.method == "POST" && s.path == "/v1/files")
    );

    let small = client(&server, 0)
        .upload_bytes(
            Bytes::from_static(b"fakepng"),
            "ref.png",
            FilePurpose::Vision,
        )
        .await
        .unwrap();
    assert_eq!((small.bytes, small.purpose), (7, FilePurpose::Vision));
}

// ---------------------------------------------------------------- downloads

#[tokio::test]
async fn a_download_cut_mid_body_resumes_with_range_to_the_exact_bytes() {
    let content = video_bytes(1_500_000);
    let server = serve(
        vec![Reply::Content {
            cut_after: Some(600_000),
            honour_range: true,
        }],
        Reply::Content {
            cut_after: None,
            honour_range: true,
        },
        content.clone(),
    )
    .await;
    let mut dest = Vec::new();
    let outcome = client(&server, 4)
        .download_content("video_1", ContentVariant::Video, &mut dest, 0)
        .await
        .unwrap();
    assert!(dest == content, "downloaded bytes differ");
    assert_eq!(
        outcome,
        DownloadOutcome {
            bytes: content.len() as u64,
            total_len: Some(content.len() as u64)
        }
    );
    let seen = server.script.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[0].path, "/v1/videos/video_1/content");
    assert_eq!(seen[0].query.as_deref(), Some("variant=video"));
    let resumed_at: u64 = seen[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .expect("the second request asks for a range");
    assert!(resumed_at > 0 && resumed_at <= 600_000, "{resumed_at}");
}

#[tokio::test]
async fn a_later_run_resumes_a_partial_in_the_cache() {
    let content = video_bytes(900_000);
    let server = serve(
        vec![Reply::Content {
            cut_after: Some(400_000),
            honour_range: true,
        }],
        Reply::Content {
            cut_after: None,
            honour_range: true,
        },
        content.clone(),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();

    // First run: no retries allowed, so the cut ends the run with a partial on disk.
    let mut partial = store.resume_partial("video_7").await.unwrap();
    let err = client(&server, 0)
        .download_content("video_7", ContentVariant::Video, &mut partial, 0)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    partial.sync().await.unwrap();
    drop(partial);

    // Second run: continue from what the partial holds.
    let mut partial = store.resume_partial("video_7").await.unwrap();
    let have = partial.len();
    assert!(have > 0 && have <= 400_000, "{have}");
    let outcome = client(&server, 0)
        .download_content("video_7", ContentVariant::Video, &mut partial, have)
        .await
        .unwrap();
    assert_eq!(have + outcome.bytes, outcome.total_len.unwrap());
    let id = partial.finish(outcome.total_len).await.unwrap();
    assert_eq!(id, Sha256Hex::of(&content));
    assert!(store.has(&id));
    assert_eq!(
        server.script.seen()[1].range.as_deref(),
        Some(format!("bytes={have}-").as_str())
    );
}

#[tokio::test]
async fn a_server_ignoring_range_still_yields_the_exact_bytes() {
    let content = video_bytes(300_000);
    let server = serve(
        vec![],
        Reply::Content {
            cut_after: None,
            honour_range: false,
        },
        content.clone(),
    )
    .await;
    let mut dest = content[..100_000].to_vec();
    let outcome = client(&server, 0)
        .download_content("video_2", ContentVariant::Thumbnail, &mut dest, 100_000)
        .await
        .unwrap();
    assert!(dest == content, "bytes differ");
    assert_eq!(outcome.bytes, 200_000);
    assert_eq!(
        server.script.seen()[0].range.as_deref(),
        Some("bytes=100000-")
    );
}

#[tokio::test]
async fn resuming_a_finished_download_sends_nothing_more() {
    let content = video_bytes(1000);
    let server = serve(
        vec![],
        Reply::Content {
            cut_after: None,
            honour_range: true,
        },
        content.clone(),
    )
    .await;
    let mut dest = content.clone();
    let outcome = client(&server, 0)
        .download_content("video_3", ContentVariant::Video, &mut dest, 1000)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            bytes: 0,
            total_len: Some(1000)
        }
    );
    assert!(dest == content);
}

#[tokio::test]
async fn an_expired_video_is_an_error_not_an_empty_file() {
    let server = serve(
        vec![],
        json(404, error_body("Video content expired")),
        Vec::new(),
    )
    .await;
    let mut dest = Vec::new();
    let err = client(&server, 4)
        .download_content("video_old", ContentVariant::Video, &mut dest, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    assert_eq!(err.server_message(), Some("Video content expired"));
    assert!(dest.is_empty());
}
