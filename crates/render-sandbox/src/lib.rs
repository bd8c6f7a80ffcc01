//! `render sandbox`: a faithful local server of the OpenAI Files, Batch and Videos API, and of
//! the other servers that speak `/v1/videos`.
//!
//! Built like cargo's test registry: a [`SandboxConfig`] builder with fault knobs, an axum
//! [`app`], [`serve`] for the command line and [`spawn`] for tests (its own thread and runtime on
//! a free port, stopped when the [`SandboxHandle`] drops). Time is virtual ([`clock`]): one
//! `day` of real time is 24 hours of API time, so a night renders in seconds.
//!
//! Behaviour worth knowing:
//! - A batch's videos are delivered when the batch ends: their `completed_at` is the batch's end
//!   and `expires_at` is 24 h later. After that, `GET /v1/videos/{id}/content` answers 404 with
//!   code `video_expired` (the video object itself stays retrievable).
//! - Prompts naming a public figure or copyrighted character ([`policy::BLOCKLIST`]) are refused
//!   with 400 `moderation_blocked`; the `moderation` fault adds random refusals.
//! - `/sandbox/*` (stats, faults, clock, digests, restart) needs no key.
//! - [`SandboxConfig::dialect`] makes it speak another server's contract (SGLang, vllm-omni, a
//!   LiteLLM proxy): routes, auth, ids, bodies, errors and downloads as [`dialect::Profile`]
//!   says, from the facts the client reads too ([`render_wire::dialect::DialectFacts`]).

pub mod media;

mod batches;
pub mod clock;
mod control;
mod create;
pub mod dialect;
mod engine;
pub mod error;
pub mod faults;
mod files;
mod http;
pub mod policy;
mod state;
pub mod stats;
mod videos;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};

pub use dialect::Dialect;
/// Moves batches and renders on the virtual clock; [`serve`] and [`spawn`] run it next to
/// [`app`], and anyone mounting [`app`] elsewhere must spawn it too.
pub use engine::run as run_engine;
pub use faults::{Fault, FaultConfig, FaultRule, FaultSpecError, Malformation, Trigger};
use render_wire::catalog::Catalog;
pub use state::SandboxState;
pub use stats::Stats;

/// Largest request body accepted (batch input files may reach 200 MB).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// The batch input limits the real service enforces (the same type the client splits by);
/// small values let tests exercise splitting.
pub use render_wire::api::BatchLimits;

/// Everything that shapes a sandbox. `SandboxConfig::default()` then chained setters.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Seeds ids, video bytes and faults: the same seed replays the same run.
    pub seed: u64,
    /// The accepted key; any non-empty key when `None`.
    pub api_key: Option<String>,
    /// Length of every MP4.
    pub video_bytes: u64,
    /// Real time one render takes.
    pub render_time: Duration,
    /// Real time of 24 virtual hours.
    pub day: Duration,
    /// Renders in progress at once.
    pub concurrency: usize,
    pub limits: BatchLimits,
    pub catalog: Catalog,
    pub faults: FaultConfig,
    /// Virtual unix time at start (real now when `None`).
    pub start_time: Option<i64>,
    /// Forget every batch's `metadata`, as some gateways do.
    pub drop_metadata: bool,
    /// Write result files as a hostile lookalike does: a line that is not JSON, a line for a
    /// request of nobody's, the first rendered request answered again as a failure, and the
    /// key the client sent echoed in every failure's message.
    pub hostile_results: bool,
    /// Which server's contract the sandbox speaks (see [`dialect::Profile`]).
    pub dialect: Dialect,
    /// The one model a self-hosted server serves (`None`: every model of the catalog).
    /// `GET /v1/models` lists it; vllm-omni refuses any other, SGLang echoes it by default.
    pub served_model: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            seed: 0,
            api_key: None,
            video_bytes: 256 * 1024,
            render_time: Duration::from_millis(100),
            day: Duration::from_secs(60),
            concurrency: 16,
            limits: BatchLimits::default(),
            catalog: Catalog::builtin(),
            faults: FaultConfig::default(),
            start_time: None,
            drop_metadata: false,
            hostile_results: false,
            dialect: Dialect::Openai,
            served_model: None,
        }
    }
}

impl SandboxConfig {
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    pub fn video_bytes(mut self, bytes: u64) -> Self {
        self.video_bytes = bytes;
        self
    }

    pub fn render_time(mut self, real: Duration) -> Self {
        self.render_time = real;
        self
    }

    pub fn day(mut self, real: Duration) -> Self {
        self.day = real;
        self
    }

    pub fn concurrency(mut self, renders: usize) -> Self {
        self.concurrency = renders.max(1);
        self
    }

    pub fn limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn max_batch_requests(mut self, requests: usize) -> Self {
        self.limits.max_requests = requests;
        self
    }

    pub fn max_batch_bytes(mut self, bytes: u64) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    pub fn hostile_results(mut self, hostile: bool) -> Self {
        self.hostile_results = hostile;
        self
    }

    pub fn drop_metadata(mut self, drop: bool) -> Self {
        self.drop_metadata = drop;
        self
    }

    pub fn start_time(mut self, unix: i64) -> Self {
        self.start_time = Some(unix);
        self
    }

    /// Speaks `dialect`'s contract instead of OpenAI's.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Serves only `model` (it must be in the catalog to render by its rules).
    pub fn served_model(mut self, model: impl Into<String>) -> Self {
        self.served_model = Some(model.into());
        self
    }
}

/// SHA-256 and length of a video's full content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoDigest {
    pub id: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The router: the API under `/v1` (auth, faults, counting) and the harness under `/sandbox`.
/// Which `/v1` routes exist is the dialect's (see [`dialect::Profile`]).
pub fn app(state: Arc<SandboxState>) -> Router {
    let profile = state.profile;
    let mut api = Router::new()
        .route("/v1/models", get(control::models))
        .route("/v1/videos", post(videos::create).get(videos::list))
        .route("/v1/videos/{id}/content", get(videos::content));
    api = if profile.deletes {
        api.route(
            "/v1/videos/{id}",
            get(videos::retrieve).delete(videos::delete),
        )
    } else {
        api.route("/v1/videos/{id}", get(videos::retrieve))
    };
    if profile.files_and_batches {
        api = api
            .route("/v1/files", post(files::create).get(files::list))
            .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
            .route("/v1/files/{id}/content", get(files::content))
            .route("/v1/batches", post(batches::create).get(batches::list))
            .route("/v1/batches/{id}", get(batches::retrieve))
            .route("/v1/batches/{id}/cancel", post(batches::cancel));
    }
    api = api.fallback(http::fallback);
    if profile.errors != dialect::ErrorStyle::OpenAi {
        api = api.method_not_allowed_fallback(http::method_not_allowed);
    }
    let api = api.layer(from_fn_with_state(state.clone(), http::observe));
    let harness = Router::new()
        .route("/sandbox/stats", get(control::stats))
        .route(
            "/sandbox/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route("/sandbox/clock", get(control::clock))
        .route("/sandbox/clock/advance", post(control::advance))
        .route("/sandbox/restart", post(control::restart))
        .route("/sandbox/videos/{id}/digest", get(control::digest));
    harness
        .merge(api)
        .layer(from_fn_with_state(state.clone(), http::virtual_date))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Faults(#[from] FaultSpecError),
    #[error("sandbox server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the sandbox on `listener` until `shutdown` resolves.
pub async fn serve(
    config: SandboxConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let state = SandboxState::new(config)?;
    serve_state(state, listener, shutdown).await
}

async fn serve_state(
    state: Arc<SandboxState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let engine = tokio::spawn(engine::run(state.clone()));
    // Without TCP_NODELAY a streamed answer (headers, then body) waits for the client's delayed
    // ACK between the two writes: ~40 ms added to every download and JSON answer.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!("sandbox: cannot set TCP_NODELAY: {err}");
        }
    });
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    engine.abort();
    Ok(result?)
}

/// The base URL (ending in `/v1`) of a server listening on `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1")
}

/// A sandbox running on its own thread; stopped when dropped.
pub struct SandboxHandle {
    state: Arc<SandboxState>,
    addr: SocketAddr,
    base_url: String,
    root_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a sandbox on `127.0.0.1:0` in its own thread with its own tokio runtime.
pub fn spawn(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let state = SandboxState::new(config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sandbox")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_state = state.clone();
    let thread = std::thread::Builder::new()
        .name("sandbox".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!("sandbox listener: {err}");
                        return;
                    }
                };
                // Not graceful: a test that drops the handle must not wait for open downloads.
                tokio::select! {
                    result = serve_state(server_state, listener, std::future::pending()) => {
                        if let Err(err) = result {
                            tracing::error!("{err}");
                        }
                    }
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        })?;
    Ok(SandboxHandle {
        state,
        addr,
        base_url: base_url(addr),
        root_url: format!("http://{addr}"),
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://127.0.0.1:PORT`, where `/sandbox/*` lives.
    pub fn root_url(&self) -> &str {
        &self.root_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters, with the render slots' accounting as of now.
    pub fn stats(&self) -> Stats {
        self.state.stats_snapshot()
    }

    /// Restarts the server as one that keeps its jobs in memory (SGLang, vllm-omni): every
    /// video is forgotten and its id answers 404 from now on. Returns how many it forgot.
    pub fn restart(&self) -> usize {
        control::restart_now(&self.state)
    }

    /// The dialect the sandbox speaks.
    pub fn dialect(&self) -> Dialect {
        self.state.config.dialect
    }

    /// Replaces the fault configuration (counters and generator start afresh).
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), FaultSpecError> {
        control::replace_faults(&self.state, faults)
    }

    /// Jumps virtual time forward by `seconds`, applying every transition due by then.
    pub fn advance_clock(&self, seconds: u64) {
        self.state.clock.advance(seconds as f64);
        engine::tick(&self.state);
    }

    /// Current virtual unix time.
    pub fn now(&self) -> i64 {
        self.state.clock.now()
    }

    /// SHA-256 and length of a video's full content (`None` for an unknown id).
    pub fn video_digest(&self, id: &str) -> Option<VideoDigest> {
        videos::digest(&self.state, id)
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
