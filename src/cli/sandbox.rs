//! `render sandbox`: serve the local API until Ctrl-C. Prints the base URL (ending in `/v1`) as
//! the first line on stdout so a script or test can read it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{GlobalArgs, Outcome};
use render_sandbox::{self as sandbox, Dialect, FaultConfig, SandboxConfig, Trigger};
use render_wire::catalog::Catalog;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Boxed: the command enum stays small.
    #[command(flatten)]
    pub options: Box<Options>,
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Seeds ids, video bytes and faults: the same seed replays the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The only API key accepted (default: any non-empty key).
    #[arg(long, env = "RENDER_SANDBOX_API_KEY")]
    pub api_key: Option<String>,
    /// Size of every generated MP4 in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub video_bytes: u64,
    /// Real time one render takes (e.g. 100ms, 2s).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub render_time: Duration,
    /// Real time of 24 virtual hours (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub day: Duration,
    /// Renders in progress at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Most requests in one batch input file.
    #[arg(long, default_value_t = 50_000)]
    pub max_batch_requests: usize,
    /// Most bytes in one batch input file.
    #[arg(long, default_value_t = 200 * 1024 * 1024)]
    pub max_batch_bytes: u64,
    /// User catalogs merged over the built-in one (models, sizes, durations).
    #[arg(long = "catalog")]
    pub catalogs: Vec<PathBuf>,
    /// An HTTP fault: `[METHOD /path:] KIND [key=value]...`, KIND one of rate_limit
    /// (retry_after_ms), server_error (status), unavailable (retry_after_ms: a 503 with
    /// Retry-After), should_retry (status, retry: an error carrying
    /// `x-should-retry`), not_found (a 404 in the dialect's shape), drop (after_bytes), slow
    /// (delay_ms), stall (after_bytes, stall_ms: silence, then a cut), ignore_range (a Range
    /// answered 200 with the whole body), malformed
    /// (shape=truncated_json|longer_content_length|unknown_status); trigger keys rate, nth (1,2,…),
    /// limit. E.g. `GET /v1/videos/*/content: drop after_bytes=65536 rate=0.1`.
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// A whole fault configuration as JSON (the body of POST /sandbox/faults), or @FILE.
    #[arg(long)]
    pub faults_json: Option<String>,
    /// Share of batch requests that render then fail with a 500 error line.
    #[arg(long)]
    pub batch_failure_rate: Option<f64>,
    /// Share of batches that expire when half their requests are done.
    #[arg(long)]
    pub batch_expire_rate: Option<f64>,
    /// Share of renders refused by moderation (on top of the prompt blocklist).
    #[arg(long)]
    pub moderation_rate: Option<f64>,
    /// Virtual unix time to start at (default: now).
    #[arg(long)]
    pub start_time: Option<i64>,
    /// The server whose contract to speak: openai, sglang, vllm-omni or litellm (routes, auth,
    /// ids, request bodies, errors and downloads as that server has them).
    #[arg(long, default_value = "openai")]
    pub dialect: Dialect,
    /// The one model served (default: every model of the catalog). vllm-omni refuses any
    /// other; SGLang echoes it when a request names none.
    #[arg(long)]
    pub served_model: Option<String>,
}

pub fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let addr = args.options.addr;
    let config = config_from(*args.options)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        crate::report::output::print_text(&format!("{}\n", sandbox::base_url(local)))?;
        tracing::info!("sandbox listening on {local}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("sandbox stopping");
        };
        sandbox::serve(config, listener, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}

fn config_from(args: Options) -> anyhow::Result<SandboxConfig> {
    let paths: Vec<&std::path::Path> = args.catalogs.iter().map(PathBuf::as_path).collect();
    let catalog = Catalog::load(&paths)?;
    let mut faults = match &args.faults_json {
        Some(text) => read_faults_json(text)?,
        None => FaultConfig::default(),
    };
    for spec in &args.faults {
        faults.http.push(sandbox::faults::parse_rule(spec)?);
    }
    if let Some(rate) = args.batch_failure_rate {
        faults.batch_request_failure = Trigger::rate(rate);
    }
    if let Some(rate) = args.batch_expire_rate {
        faults.batch_expire = Trigger::rate(rate);
    }
    if let Some(rate) = args.moderation_rate {
        faults.moderation = Trigger::rate(rate);
    }
    faults.validate()?;
    let mut config = SandboxConfig::default()
        .seed(args.seed)
        .video_bytes(args.video_bytes)
        .render_time(args.render_time)
        .day(args.day)
        .concurrency(args.concurrency)
        .max_batch_requests(args.max_batch_requests)
        .max_batch_bytes(args.max_batch_bytes)
        .catalog(catalog)
        .faults(faults)
        .dialect(args.dialect);
    if let Some(model) = args.served_model {
        config = config.served_model(model);
    }
    if let Some(key) = args.api_key {
        config = config.api_key(key);
    }
    if let Some(start) = args.start_time {
        config = config.start_time(start);
    }
    Ok(config)
}

fn read_faults_json(text: &str) -> anyhow::Result<FaultConfig> {
    let json = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read fault configuration {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&json).context("invalid --faults-json")
}

/// `250ms`, `2s`, `1.5s`, `10m`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 100ms, 2s, 10m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}
