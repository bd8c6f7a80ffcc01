//! The API client against the sandbox misbehaving on cue through its faults: rate limits, 5xx,
//! `x-should-retry`, connections cut mid-body, stalls, Range requests answered whole. The
//! sandbox counts every request by endpoint and status, and the bytes it served.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::sandbox::{KEY, fast, jsonl, line, prompt};
use render_pipeline::api::client::{ApiClient, ApiKey, ClientConfig, DownloadOutcome};
use render_pipeline::api::error::ApiError;
use render_pipeline::cache::LocalStore;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule};
use render_sandbox::{SandboxConfig, SandboxHandle};
use render_wire::api::{ContentVariant, CreateBatch, CreateVideo, FilePurpose, VideoStatus};
use render_wire::key::Sha256Hex;

const LIST: &str = "GET /v1/batches";
/// Where the sandbox counts content downloads, and the fault pattern that matches them.
const CONTENT: &str = "GET /v1/videos/{id}/content";
const CONTENT_RULE: &str = "GET /v1/videos/*/content";

fn sandbox(config: SandboxConfig) -> SandboxHandle {
    render_sandbox::spawn(config).expect("the sandbox starts")
}

/// A fast sandbox with these faults.
fn with_faults(faults: FaultConfig) -> SandboxHandle {
    sandbox(fast().faults(faults))
}

fn rule(endpoint: &str, fault: Fault) -> FaultRule {
    FaultRule::new(endpoint, fault)
}

fn config(sandbox: &SandboxHandle, max_retries: u32) -> ClientConfig {
    let mut config = ClientConfig::new(sandbox.base_url(), ApiKey::new(KEY));
    config.max_retries = max_retries;
    config.retry_base_delay = Duration::from_millis(1);
    config
}

fn client(sandbox: &SandboxHandle, max_retries: u32) -> ApiClient {
    ApiClient::new(config(sandbox, max_retries)).unwrap()
}

/// Requests the sandbox answered on `endpoint` (`GET /v1/batches/{id}`), by status.
fn answered(sandbox: &SandboxHandle, endpoint: &str) -> Vec<(u16, u64)> {
    let stats = sandbox.stats();
    stats
        .requests
        .get(endpoint)
        .map(|by_status| by_status.iter().map(|(s, n)| (*s, *n)).collect())
        .unwrap_or_default()
}

fn hits(sandbox: &SandboxHandle, endpoint: &str) -> u64 {
    answered(sandbox, endpoint).iter().map(|(_, n)| n).sum()
}

/// A rendered video of the sandbox's `video_bytes` and its exact bytes (fetched clean, before
/// any fault is set).
async fn rendered_video(sandbox: &SandboxHandle) -> (String, Vec<u8>) {
    let api = client(sandbox, 0);
    let body = CreateVideo {
        prompt: "a lighthouse at dusk".into(),
        model: Some("sora-2".into()),
        size: Some("1280x720".into()),
        seconds: Some("4".into()),
        input_reference: None,
    };
    let video = api.create_video(&body, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.get_video(&video.id).await.unwrap().status != VideoStatus::Completed {
        assert!(Instant::now() < deadline, "the video never completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut content = Vec::new();
    api.download_content(&video.id, ContentVariant::Video, &mut content, 0)
        .await
        .unwrap();
    assert!(!content.is_empty());
    (video.id, content)
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
async fn retry_after_is_honoured() {
    let sandbox = with_faults(
        FaultConfig::none().rule(
            rule(
                LIST,
                Fault::RateLimit {
                    retry_after_ms: 1000,
                },
            )
            .nth([1]),
        ),
    );
    let started = Instant::now();
    client(&sandbox, 4).list_batches(None, None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answered(&sandbox, LIST), [(200, 1), (429, 1)]);
}

#[tokio::test]
async fn retry_after_ms_is_honoured_on_every_retry() {
    let sandbox = with_faults(
        FaultConfig::none()
            .rule(
                rule(
                    LIST,
                    Fault::RateLimit {
                        retry_after_ms: 300,
                    },
                )
                .nth([1]),
            )
            .rule(
                rule(
                    LIST,
                    Fault::RateLimit {
                        retry_after_ms: 200,
                    },
                )
                .nth([2]),
            ),
    );
    let started = Instant::now();
    client(&sandbox, 4).list_batches(None, None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hits(&sandbox, LIST), 3);
}

#[tokio::test]
async fn a_retry_after_beyond_two_minutes_is_not_waited_for() {
    let sandbox = with_faults(FaultConfig::none().rule(rule(
        "GET /v1/batches/*",
        Fault::RateLimit {
            retry_after_ms: 300_000,
        },
    )));
    let started = Instant::now();
    let err = client(&sandbox, 4).get_batch("batch_1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(hits(&sandbox, "GET /v1/batches/{id}"), 1);
    match &err {
        ApiError::RateLimited {
            attempts,
            retry_after,
            message,
            ..
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(*retry_after, Some(Duration::from_secs(300)));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(err.to_string().contains("300 s"), "{err}");
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let sandbox = with_faults(
        FaultConfig::none()
            .rule(rule(LIST, Fault::ServerError { status: 500 }).nth([1]))
            .rule(rule(LIST, Fault::ServerError { status: 502 }).nth([2]))
            .rule(rule(LIST, Fault::ServerError { status: 503 }).nth([3])),
    );
    client(&sandbox, 4).list_batches(None, None).await.unwrap();
    assert_eq!(
        answered(&sandbox, LIST),
        [(200, 1), (500, 1), (502, 1), (503, 1)]
    );
}

#[tokio::test]
async fn exhausted_retries_report_attempts_and_the_servers_message() {
    let sandbox = with_faults(FaultConfig::none().rule(rule(
        "GET /v1/batches/*",
        Fault::ServerError { status: 503 },
    )));
    let err = client(&sandbox, 2).get_batch("batch_1").await.unwrap_err();
    assert_eq!(hits(&sandbox, "GET /v1/batches/{id}"), 3);
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
    let overloaded = "The server is overloaded or not ready yet.";
    assert_eq!(err.server_message(), Some(overloaded));
    let shown = err.to_string();
    assert!(
        shown.contains(overloaded) && shown.contains("3 attempt"),
        "{shown}"
    );
    assert!(shown.contains("GET /batches/batch_1"), "{shown}");
}

#[tokio::test]
async fn the_server_can_forbid_or_demand_a_retry() {
    let forbid = Fault::ShouldRetry {
        status: 500,
        retry: false,
    };
    let sandbox = with_faults(FaultConfig::none().rule(rule(LIST, forbid).nth([1])));
    let err = client(&sandbox, 4)
        .list_batches(None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Server { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(hits(&sandbox, LIST), 1);

    let demand = Fault::ShouldRetry {
        status: 400,
        retry: true,
    };
    let sandbox = with_faults(FaultConfig::none().rule(rule(LIST, demand).nth([1])));
    client(&sandbox, 4).list_batches(None, None).await.unwrap();
    assert_eq!(answered(&sandbox, LIST), [(200, 1), (400, 1)]);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_their_meaning() {
    let sandbox = sandbox(fast());
    let err = client(&sandbox, 4).get_batch("batch_x").await.unwrap_err();
    assert!(
        matches!(err, ApiError::NotFound { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(err.server_message().unwrap().contains("batch_x"), "{err}");
    assert_eq!(hits(&sandbox, "GET /v1/batches/{id}"), 1);

    let api = client(&sandbox, 4);
    let file = api
        .upload_bytes(
            jsonl(&[line("a", prompt("a kite"))]).into(),
            "night.jsonl",
            FilePurpose::Batch,
        )
        .await
        .unwrap();
    let body = CreateBatch {
        input_file_id: file.id,
        endpoint: "/v1/nope".into(),
        completion_window: "24h".into(),
        metadata: None,
    };
    let err = api.create_batch(&body).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::BadRequest {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.server_message().unwrap().contains("/v1/nope"), "{err}");
    assert_eq!(hits(&sandbox, "POST /v1/batches"), 1);
}

#[tokio::test]
async fn a_connection_cut_mid_json_is_retried() {
    let sandbox =
        with_faults(FaultConfig::none().rule(rule(LIST, Fault::Drop { after_bytes: 20 }).nth([1])));
    let page = client(&sandbox, 4).list_batches(None, None).await.unwrap();
    assert!(page.data.is_empty());
    assert_eq!(hits(&sandbox, LIST), 2);
    assert_eq!(sandbox.stats().faults_injected.get("drop"), Some(&1));
}

#[tokio::test]
async fn a_stalled_server_times_out_and_is_retried() {
    // Headers at once, then silence: only the client's own timeout ends the wait.
    let stall = Fault::Stall {
        after_bytes: 0,
        stall_ms: 5_000,
    };
    let sandbox = with_faults(FaultConfig::none().rule(rule(LIST, stall)));
    let mut config = config(&sandbox, 1);
    config.timeouts.request = Duration::from_millis(200);
    let started = Instant::now();
    let err = ApiClient::new(config)
        .unwrap()
        .list_batches(None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(hits(&sandbox, LIST), 2);
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

const SECRET: &str = "sk-test-TOPSECRET-0123456789";

#[tokio::test]
async fn unauthorized_says_what_to_check_and_never_shows_the_key() {
    let sandbox = sandbox(fast());
    let mut config = config(&sandbox, 4);
    config.api_key = Some(ApiKey::new(SECRET));
    let api = ApiClient::new(config).unwrap();
    let err = api.get_file("file-1").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Unauthorized { attempts: 1, .. }),
        "{err:?}"
    );
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("OPENAI_API_KEY"), "{shown}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert!(!format!("{api:?}").contains("TOPSECRET"));
}

#[tokio::test]
async fn a_key_the_server_echoes_is_scrubbed_from_errors_and_logs() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    // This sandbox takes any key, and says which file it does not know: the key, here.
    let sandbox = sandbox(
        SandboxConfig::default().faults(
            FaultConfig::none()
                .rule(rule("POST /v1/batches", Fault::ServerError { status: 500 }).nth([1])),
        ),
    );
    let mut config = config(&sandbox, 4);
    config.api_key = Some(ApiKey::new(SECRET));
    let body = CreateBatch {
        input_file_id: SECRET.into(),
        endpoint: "/v1/videos".into(),
        completion_window: "24h".into(),
        metadata: None,
    };
    let err = ApiClient::new(config)
        .unwrap()
        .create_batch(&body)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::NotFound { attempts: 2, .. }),
        "{err:?}"
    );
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    let log_text = logs.text();
    assert!(
        log_text.contains("retrying"),
        "the 500 was logged: {log_text}"
    );
    assert!(!log_text.contains("TOPSECRET"), "{log_text}");
}

/// Ids are the server's text, and can carry the key it was sent: the error that names the call
/// (`GET /videos/{id}`) shows it masked.
#[tokio::test]
async fn an_id_that_carries_the_key_is_masked_where_errors_name_the_call() {
    let sandbox = sandbox(SandboxConfig::default());
    let mut config = config(&sandbox, 4);
    config.api_key = Some(ApiKey::new(SECRET));
    let api = ApiClient::new(config).unwrap();
    let err = api.get_video(&format!("video_{SECRET}")).await.unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("GET /videos/video_sk-…redacted"), "{shown}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_with_an_excerpt() {
    let sandbox = with_faults(
        FaultConfig::none().rule(
            rule(
                LIST,
                Fault::Malformed {
                    shape: Default::default(),
                },
            )
            .nth([1]),
        ),
    );
    let api = client(&sandbox, 4);
    let err = api.list_batches(None, None).await.unwrap_err();
    match &err {
        ApiError::Decode {
            excerpt, attempts, ..
        } => {
            assert!(excerpt.contains(r#""object""#), "{excerpt}");
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    // The next answer is whole: a decode error is not retried, and the next call is fine.
    assert!(api.list_batches(None, None).await.is_ok());
    assert_eq!(hits(&sandbox, LIST), 2);
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn listing_all_batches_walks_every_page() {
    let sandbox = sandbox(fast().render_time(Duration::from_secs(600)));
    let api = client(&sandbox, 0);
    let file = api
        .upload_bytes(
            jsonl(&[line("a", prompt("a kite"))]).into(),
            "night.jsonl",
            FilePurpose::Batch,
        )
        .await
        .unwrap();
    let body = CreateBatch {
        input_file_id: file.id,
        endpoint: "/v1/videos".into(),
        completion_window: "24h".into(),
        metadata: None,
    };
    let mut created = Vec::new();
    for _ in 0..205 {
        created.push(api.create_batch(&body).await.unwrap().id);
    }
    let all = api.list_all_batches().await.unwrap();
    let mut listed: Vec<_> = all.iter().map(|b| b.id.clone()).collect();
    assert_eq!(listed.len(), 205, "every batch once");
    listed.sort();
    created.sort();
    assert_eq!(listed, created);
    assert_eq!(hits(&sandbox, LIST), 3, "pages of 100");
}

#[tokio::test]
async fn uploads_stream_the_file_and_survive_a_retry() {
    let sandbox = with_faults(
        FaultConfig::none()
            .rule(rule("POST /v1/files", Fault::ServerError { status: 502 }).nth([1])),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.jsonl");
    // A little over 3 MiB of batch input lines.
    let lines: Vec<_> = (0..12_000)
        .map(|i| {
            line(
                &format!("req-{i:05}"),
                prompt(&format!("shot {i} {}", "x".repeat(200))),
            )
        })
        .collect();
    let data = jsonl(&lines).into_bytes();
    assert!(data.len() > 3 * 1024 * 1024);
    std::fs::write(&path, &data).unwrap();
    let api = client(&sandbox, 4);
    let file = api
        .upload_file(&path, "batch.jsonl", FilePurpose::Batch)
        .await
        .unwrap();
    assert_eq!(file.bytes, data.len() as u64);
    assert_eq!(file.purpose, FilePurpose::Batch);
    assert_eq!(file.filename, "batch.jsonl");
    let stats = sandbox.stats();
    assert_eq!(stats.files_uploaded.get("batch"), Some(&1));
    assert_eq!(stats.uploaded_sha256, [Sha256Hex::of(&data).to_string()]);
    assert_eq!(answered(&sandbox, "POST /v1/files"), [(200, 1), (502, 1)]);

    let small = client(&sandbox, 0)
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

/// The first download of a video's content meets `fault`; the later ones are served whole.
fn on_first_download(sandbox: &SandboxHandle, fault: Fault) {
    sandbox
        .set_faults(FaultConfig::none().rule(rule(CONTENT_RULE, fault).nth([1])))
        .unwrap();
}

#[tokio::test]
async fn a_download_cut_mid_body_resumes_with_range_to_the_exact_bytes() {
    let sandbox = sandbox(fast().video_bytes(1_500_000));
    let (id, content) = rendered_video(&sandbox).await;
    on_first_download(
        &sandbox,
        Fault::Drop {
            after_bytes: 600_000,
        },
    );
    let served_before = sandbox.stats().bytes_served["video"];
    let mut dest = Vec::new();
    let outcome = client(&sandbox, 4)
        .download_content(&id, ContentVariant::Video, &mut dest, 0)
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
    // The clean download, then the cut one, then the rest by Range, not all over again.
    assert_eq!(answered(&sandbox, CONTENT), [(200, 2), (206, 1)]);
    let served = sandbox.stats().bytes_served["video"] - served_before;
    assert_eq!(served, content.len() as u64, "each byte sent once");
}

#[tokio::test]
async fn a_download_that_stalls_mid_body_times_out_and_resumes() {
    let sandbox = sandbox(fast().video_bytes(400_000));
    let (id, content) = rendered_video(&sandbox).await;
    on_first_download(
        &sandbox,
        Fault::Stall {
            after_bytes: 150_000,
            stall_ms: 10_000,
        },
    );
    let mut config = config(&sandbox, 2);
    config.timeouts.read = Duration::from_millis(300);
    let started = Instant::now();
    let mut dest = Vec::new();
    ApiClient::new(config)
        .unwrap()
        .download_content(&id, ContentVariant::Video, &mut dest, 0)
        .await
        .unwrap();
    assert!(dest == content, "downloaded bytes differ");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answered(&sandbox, CONTENT), [(200, 2), (206, 1)]);
}

#[tokio::test]
async fn a_later_run_resumes_a_partial_in_the_cache() {
    let sandbox = sandbox(fast().video_bytes(900_000));
    let (id, content) = rendered_video(&sandbox).await;
    on_first_download(
        &sandbox,
        Fault::Drop {
            after_bytes: 400_000,
        },
    );
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();

    // First run: no retries allowed, so the cut ends the run with a partial on disk.
    let mut partial = store.resume_partial(&id).await.unwrap();
    let err = client(&sandbox, 0)
        .download_content(&id, ContentVariant::Video, &mut partial, 0)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    partial.sync().await.unwrap();
    drop(partial);

    // Second run: continue from what the partial holds.
    let mut partial = store.resume_partial(&id).await.unwrap();
    let have = partial.len();
    assert!(have > 0 && have <= 400_000, "{have}");
    let outcome = client(&sandbox, 0)
        .download_content(&id, ContentVariant::Video, &mut partial, have)
        .await
        .unwrap();
    assert_eq!(have + outcome.bytes, outcome.total_len.unwrap());
    let key = partial.finish(outcome.total_len).await.unwrap();
    assert_eq!(key, Sha256Hex::of(&content));
    assert!(store.has(&key));
    assert_eq!(answered(&sandbox, CONTENT), [(200, 2), (206, 1)]);
}

#[tokio::test]
async fn a_server_ignoring_range_still_yields_the_exact_bytes() {
    let sandbox = sandbox(fast().video_bytes(300_000));
    let (id, content) = rendered_video(&sandbox).await;
    sandbox
        .set_faults(FaultConfig::none().rule(rule(CONTENT_RULE, Fault::IgnoreRange)))
        .unwrap();
    let mut dest = content[..100_000].to_vec();
    let outcome = client(&sandbox, 0)
        .download_content(&id, ContentVariant::Video, &mut dest, 100_000)
        .await
        .unwrap();
    assert!(dest == content, "bytes differ");
    assert_eq!(outcome.bytes, content.len() as u64 - 100_000);
    assert_eq!(outcome.total_len, Some(content.len() as u64));
    // Asked from byte 100000, answered whole.
    assert_eq!(answered(&sandbox, CONTENT), [(200, 2)]);
    assert_eq!(
        sandbox.stats().faults_injected.get("ignore_range"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_cut_download_from_a_server_ignoring_range_still_yields_the_exact_bytes() {
    let sandbox = sandbox(fast().video_bytes(500_000));
    let (id, content) = rendered_video(&sandbox).await;
    sandbox
        .set_faults(
            FaultConfig::none()
                .rule(rule(CONTENT_RULE, Fault::IgnoreRange))
                .rule(
                    rule(
                        CONTENT_RULE,
                        Fault::Drop {
                            after_bytes: 200_000,
                        },
                    )
                    .nth([1]),
                ),
        )
        .unwrap();
    let mut dest = Vec::new();
    client(&sandbox, 2)
        .download_content(&id, ContentVariant::Video, &mut dest, 0)
        .await
        .unwrap();
    assert!(dest == content, "bytes differ");
    assert_eq!(answered(&sandbox, CONTENT), [(200, 3)]);
}

#[tokio::test]
async fn resuming_a_finished_download_sends_nothing_more() {
    let sandbox = sandbox(fast().video_bytes(1000));
    let (id, content) = rendered_video(&sandbox).await;
    let mut dest = content.clone();
    let outcome = client(&sandbox, 0)
        .download_content(&id, ContentVariant::Video, &mut dest, content.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            bytes: 0,
            total_len: Some(content.len() as u64)
        }
    );
    assert!(dest == content);
    assert_eq!(answered(&sandbox, CONTENT), [(200, 1), (416, 1)]);
}

#[tokio::test]
async fn an_expired_video_is_an_error_not_an_empty_file() {
    let sandbox = sandbox(fast().video_bytes(1000));
    let (id, _) = rendered_video(&sandbox).await;
    sandbox.advance_clock(3 * 86_400);
    let mut dest = Vec::new();
    let err = client(&sandbox, 4)
        .download_content(&id, ContentVariant::Video, &mut dest, 0)
        .await
        .unwrap_err();
    assert!(err.says_expired(), "{err:?}");
    assert_eq!(err.attempts(), 1);
    assert!(dest.is_empty());
}
