//! A real LiteLLM proxy (`litellm[proxy]==1.108.7`) started in front of an OpenAI-compatible
//! `/v1/videos` upstream, usually `render sandbox`, so a test sees exactly what a client of a
//! LiteLLM deployment sees.
//!
//! ```ignore
//! let proxy = litellm::LiteLlm::start(&sandbox.base_url(), API_KEY, &["sora-2"])?;
//! // point the client at proxy.base_url() ("http://127.0.0.1:PORT/v1") with proxy.master_key()
//! ```
//!
//! The executable is `$RENDER_LITELLM`, else `target/litellm-venv/bin/litellm` under the crate
//! root, which `tests/litellm/install` creates (`.ci/run` runs it and exports `RENDER_LITELLM`).
//! When neither exists, [`LiteLlm::start`] returns an error that says how to install it: a test
//! must fail on it, never skip.
//!
//! Each proxy is its own Python process (about 8 s to start on 2 cores, CPU-bound): share one
//! per upstream across the steps of a test rather than starting one per assertion.
//!
//! What LiteLLM 1.108.7 does to `/v1/videos` (verified by hand against `render sandbox`):
//! - Create (`POST /v1/videos`, JSON or multipart) routes by the body's `model`, which must be one
//!   of `models`; upstream it always sends multipart. JSON `input_reference: {"file_id"|"image_url"}`
//!   fails with 400 before anything reaches the upstream: send the image as a multipart file.
//! - Ids are rewritten: `video_` + standard base64 (with `=` padding) of
//!   `litellm:custom_llm_provider:openai;model_id:MODEL;video_id:UPSTREAM_ID;deployment_id:HASH`,
//!   about 240-250 characters. Retrieve and content route by decoding that id; an id LiteLLM did
//!   not mint (the upstream's own) has no deployment and is sent to api.openai.com instead.
//! - Content is buffered and re-served as `video/mp4`: `variant` is dropped (a thumbnail request
//!   returns the MP4), `Range` is ignored (200 with the whole body, no `Accept-Ranges`).
//! - `GET /v1/videos` (list) and `DELETE /v1/videos/{id}` cannot reach the upstream: list has no
//!   deployment (400, or a call to api.openai.com with `custom-llm-provider: openai`), delete has
//!   no route (405).
//! - Upstream errors keep their HTTP status, but the body is LiteLLM's: `error.code` is the status
//!   as a string ("400"), `error.param` is null, and the upstream's JSON error is embedded in
//!   `error.message` after `OpenAIException - `. `Retry-After` comes back as
//!   `llm_provider-retry-after` (and `llm_provider-retry-after-ms`).
//! - A key other than the master key is 400 `{"type":"no_db_connection"}` (no database), not 401.
//!
//! Every call that would leave the machine (the api.openai.com fallbacks above) is sent through an
//! HTTP proxy on a closed loopback port instead, so it fails fast with a 500 and reaches no one.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The only LiteLLM release these tests run (1.107.0, 1.82.7 and 1.82.8 were compromised).
pub const LITELLM_VERSION: &str = "1.108.7";

/// The key clients send to the proxy. LiteLLM insists master keys start with `sk-`.
pub const MASTER_KEY: &str = "sk-litellm-test-master-0123456789";

/// How long `start` waits for the proxy to answer `/health/readiness`; `RENDER_LITELLM_START_SECS`
/// overrides it.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where calls that LiteLLM would send to the internet go instead: a closed loopback port.
const EGRESS_TRAP: &str = "http://127.0.0.1:9";

/// Inherited variables that would change what the proxy talks to or how it authenticates.
const SCRUBBED_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_ORGANIZATION",
    "OPENAI_PROJECT",
    "LITELLM_MASTER_KEY",
    "LITELLM_SALT_KEY",
    "LITELLM_LICENSE",
    "LITELLM_LOG",
    "LITELLM_CONFIG",
    "CONFIG_FILE_PATH",
    "DATABASE_URL",
    "DIRECT_URL",
    "STORE_MODEL_IN_DB",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "ALL_PROXY",
    "all_proxy",
    "HOST",
    "PORT",
];

/// A running LiteLLM proxy; dropping it stops the process (and anything it started).
pub struct LiteLlm {
    base_url: String,
    master_key: String,
    port: u16,
    child: Child,
    log_path: PathBuf,
    config_path: PathBuf,
    /// Holds the config and the log; removed on drop unless `RENDER_LITELLM_KEEP` is set.
    dir: Option<tempfile::TempDir>,
}

impl LiteLlm {
    /// Starts a proxy on a free 127.0.0.1 port whose deployments `models` (e.g. `sora-2`) all go
    /// to `upstream_base_url` (with its `/v1`, e.g. `http://127.0.0.1:PORT/v1`) as an OpenAI
    /// upstream with `upstream_key`, and waits until it is ready.
    pub fn start(
        upstream_base_url: &str,
        upstream_key: &str,
        models: &[&str],
    ) -> Result<LiteLlm, String> {
        let executable = executable()?;
        if models.is_empty() {
            return Err("LiteLlm::start needs at least one model name (e.g. \"sora-2\")".into());
        }
        let timeout = std::env::var("RENDER_LITELLM_START_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(START_TIMEOUT);

        // The port is picked, released, then bound by LiteLLM: another process can take it in
        // between, so a lost race is retried on a fresh port.
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("render-litellm-")
                .tempdir()
                .map_err(|e| format!("a scratch folder for LiteLLM: {e}"))?;
            match LiteLlm::spawn(&executable, dir, upstream_base_url, upstream_key, models)?
                .wait_ready(timeout)
            {
                Ok(proxy) => return Ok(proxy),
                Err((error, port_taken)) => {
                    last_error = error;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    fn spawn(
        executable: &Path,
        dir: tempfile::TempDir,
        upstream_base_url: &str,
        upstream_key: &str,
        models: &[&str],
    ) -> Result<LiteLlm, String> {
        let port = free_port()?;
        let config_path = dir.path().join("litellm.yaml");
        let log_path = dir.path().join("litellm.log");
        fs::write(
            &config_path,
            config_yaml(upstream_base_url, upstream_key, models, MASTER_KEY),
        )
        .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;

        let mut command = Command::new(executable);
        command
            .arg("--config")
            .arg(&config_path)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                "1",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so drop can stop whatever it starts.
            .process_group(0);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Offline: bundled cost map and catalogues, never fetched at start.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_LOCAL_BLOG_POSTS", "True")
            .env("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
            .env("LITELLM_LOCAL_POLICY_TEMPLATES", "True")
            .env("LITELLM_LOCAL_AUTOROUTER_PRESETS", "True")
            .env("DISABLE_ADMIN_UI", "True")
            // The egress trap: loopback goes direct, everything else to a closed port.
            .env("HTTP_PROXY", EGRESS_TRAP)
            .env("HTTPS_PROXY", EGRESS_TRAP)
            .env("http_proxy", EGRESS_TRAP)
            .env("https_proxy", EGRESS_TRAP)
            .env("NO_PROXY", "127.0.0.1,localhost,::1")
            .env("no_proxy", "127.0.0.1,localhost,::1");
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}. {}", executable.display(), install_hint()))?;

        let dir = if std::env::var_os("RENDER_LITELLM_KEEP").is_some() {
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(LiteLlm {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            master_key: MASTER_KEY.to_string(),
            port,
            child,
            log_path,
            config_path,
            dir,
        })
    }

    /// Polls `GET /health/readiness` (no key, no upstream call) until it answers 200. On failure
    /// the proxy is stopped (dropped) and the error carries the log's tail; the flag says whether
    /// the port was taken (worth a retry).
    fn wait_ready(mut self, timeout: Duration) -> Result<LiteLlm, (String, bool)> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let log = self.logs();
                    let port_taken =
                        log.contains("address already in use") || log.contains("Errno 98");
                    return Err((
                        format!(
                            "LiteLLM exited ({status}) before it was ready on port {}; the end of its log ({}, kept when RENDER_LITELLM_KEEP is set):\n{}",
                            self.port,
                            self.log_path.display(),
                            tail(&log, 60)
                        ),
                        port_taken,
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err((format!("waiting for LiteLLM: {e}"), false)),
            }
            if readiness(self.port) {
                return Ok(self);
            }
            if started.elapsed() > timeout {
                return Err((
                    format!(
                        "LiteLLM was not ready on port {} after {:?}; the end of its log ({}, kept when RENDER_LITELLM_KEEP is set):\n{}",
                        self.port,
                        timeout,
                        self.log_path.display(),
                        tail(&self.logs(), 60)
                    ),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT/v1`: the base URL an OpenAI client is given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://127.0.0.1:PORT`, for the proxy's own routes (`/health/readiness`, ...).
    pub fn root_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bearer key the proxy accepts.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's stdout and stderr, one file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What the proxy has logged so far (an access line per request, tracebacks of errors).
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The config it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let group = self.child.id();
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group("TERM", group);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever is left of the group, the proxy itself included if SIGTERM did not do it.
        signal_group("KILL", group);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `litellm` executable: `$RENDER_LITELLM`, else the venv `tests/litellm/install` makes.
pub fn executable() -> Result<PathBuf, String> {
    let (path, source) = match std::env::var_os("RENDER_LITELLM").filter(|value| !value.is_empty())
    {
        Some(value) => (PathBuf::from(value), "RENDER_LITELLM"),
        None => (
            default_venv().join("bin").join("litellm"),
            "the default venv",
        ),
    };
    if !is_executable(&path) {
        return Err(format!(
            "no LiteLLM executable at {} ({source}). {}",
            path.display(),
            install_hint()
        ));
    }
    if let Some(version) = installed_version(&path)
        && version != LITELLM_VERSION
    {
        return Err(format!(
            "{} is litellm {version}, these tests run exactly {LITELLM_VERSION}. {}",
            path.display(),
            install_hint()
        ));
    }
    Ok(path)
}

/// `target/litellm-venv` under the crate root (a fixed path, whatever `CARGO_TARGET_DIR` says).
pub fn default_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("litellm-venv")
}

pub fn install_hint() -> String {
    format!(
        "Install the pinned proxy with `tests/litellm/install` (python3 -m venv {venv} && \
         {venv}/bin/pip install -c tests/litellm/constraints.txt 'litellm[proxy]=={LITELLM_VERSION}'), \
         or set RENDER_LITELLM to a litellm {LITELLM_VERSION} executable. .ci/run does this itself.",
        venv = default_venv().display()
    )
}

/// The proxy config: one OpenAI deployment per model, all to the same upstream, no retries
/// (the client under test owns retrying), and the master key. Strings are written as JSON, which
/// YAML reads as double-quoted scalars.
pub fn config_yaml(
    upstream_base_url: &str,
    upstream_key: &str,
    models: &[&str],
    master_key: &str,
) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut yaml = String::from("model_list:\n");
    for model in models {
        yaml.push_str(&format!(
            "  - model_name: {}\n    litellm_params:\n      model: {}\n      api_base: {}\n      api_key: {}\n",
            quote(model),
            quote(&format!("openai/{model}")),
            quote(upstream_base_url.trim_end_matches('/')),
            quote(upstream_key),
        ));
    }
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {}\nlitellm_settings:\n  num_retries: 0\n  request_timeout: 600\n",
        quote(master_key)
    ));
    yaml
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// One `GET /health/readiness` over a plain socket: 200 and `"healthy"` mean ready.
fn readiness(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET /health/readiness HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    response.starts_with("HTTP/1.1 200") && response.contains("healthy")
}

/// `kill -s SIGNAL -- -GROUP`: the proxy's process group, by its id.
fn signal_group(signal: &str, group: u32) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{group}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The litellm version installed next to a venv's executable (`VENV/bin/litellm` →
/// `VENV/lib/python3.*/site-packages/litellm-X.dist-info`); None when it cannot be told.
fn installed_version(executable: &Path) -> Option<String> {
    let venv = executable.parent()?.parent()?;
    for python in fs::read_dir(venv.join("lib")).ok()?.flatten() {
        let Ok(entries) = fs::read_dir(python.path().join("site-packages")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(version) = dist_info_version(&name) {
                return Some(version);
            }
        }
    }
    None
}

fn dist_info_version(name: &OsStr) -> Option<String> {
    let name = name.to_str()?;
    let version = name.strip_prefix("litellm-")?.strip_suffix(".dist-info")?;
    // `litellm-enterprise-…`, `litellm-proxy-extras-…` are other packages.
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_string())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
