//! The command line: flags, wiring and exit codes. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::terminal::ColorChoice;
pub use errors::{Outcome, UsageError};

mod cache;
mod cancel;
mod errors;
mod harvest;
mod nightly;
mod plan;
mod report;
mod retry;
mod sandbox;
mod spend;
mod state;
mod status;
mod submit;

#[derive(Debug, Parser)]
#[command(name = "render", version, about, after_help = errors::exit_codes_help())]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Where the ledger, the cache and logs live.
    #[arg(
        long,
        global = true,
        env = "RENDER_STATE_DIR",
        default_value = ".render"
    )]
    pub state_dir: PathBuf,
    /// Output for people (tables, progress) or for scripts (JSON on stdout; CSV for `spend`).
    #[arg(long = "format", value_name = "FORMAT", global = true, value_enum,
          default_value_t = FormatChoice::Human)]
    pub format_choice: FormatChoice,
    /// `--format` as the commands read it: CSV is `spend`'s alone and refused elsewhere.
    #[arg(skip = Format::Human)]
    pub format: Format,
    /// A providers file (default: `<state-dir>/providers.yaml` when it exists); the server of
    /// OPENAI_BASE_URL is always there too, as `default`.
    #[arg(long, global = true, env = "RENDER_PROVIDERS", value_name = "FILE")]
    pub providers: Option<PathBuf>,
    /// The studio's shared cache on object storage (s3://bucket/prefix, gs://…, az://…,
    /// file:///…): what one machine rendered, no other pays for.
    #[arg(long, global = true, env = "RENDER_CACHE_URL", value_name = "URL")]
    pub cache: Option<String>,
    /// How long a machine's claim on a request in the shared cache holds without news from it,
    /// before another machine takes the request over.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = render_pipeline::shared::DEFAULT_LEASE.as_secs())]
    pub cache_lease: u64,
    /// Colour on stderr: auto (a terminal, unless NO_COLOR; CLICOLOR_FORCE forces it).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// More log output (-v info, -vv debug); RENDER_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress on stderr, only warnings and errors (results still go to stdout).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl GlobalArgs {
    /// How long work shows its progress: bars or lines for people, JSON lines for scripts.
    pub fn progress(&self) -> crate::report::progress::Progress {
        crate::report::progress::Progress::new(self.format, self.quiet)
    }
}

pub use crate::report::output::Format;

/// What `--format` accepts: every command's two, and the spreadsheet `spend` also writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatChoice {
    Human,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and price shot lists per provider and lane, showing what is already cached.
    Plan(plan::Args),
    /// Upload references once, compile the JSONL batches and create them, exactly once.
    Submit(submit::Args),
    /// Each run and batch: status, request counts, time left before the videos expire.
    Status(status::Args),
    /// Download every finished video into the cache; lay out outputs and a manifest.
    Harvest(harvest::Args),
    /// Resubmit a run's failed-but-retryable and lost requests, and only those.
    Retry(retry::Args),
    /// Cancel a run's batches and jobs at their providers, keeping what already finished.
    Cancel(cancel::Args),
    /// The whole night in one resumable command: plan, submit, wait, harvest, lay out.
    Nightly(nightly::Args),
    /// Inspect and maintain the content-addressed cache.
    Cache(cache::Args),
    /// The bill: each run's planned and billed cost, and what Batch saved (human, json, csv).
    Spend(spend::Args),
    /// Write a run's contact sheet (index.html) again, from the ledger and the cache alone.
    Report(report::Args),
    /// Serve a local, OpenAI-compatible Files + Batch + Videos API for tests and rehearsals.
    Sandbox(sandbox::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    restore_sigpipe();
    let mut cli = Cli::parse();
    if let Err(usage) = settle_format(&mut cli) {
        crate::report::output::error(usage);
        return ExitCode::from(Outcome::Usage.code());
    }
    let color = crate::report::terminal::init_color(cli.global.color);
    init_logging(
        cli.global.verbose,
        color,
        state_log(&cli.command, &cli.global),
    );
    let result = match cli.command {
        Command::Plan(args) => plan::run(args, &cli.global),
        Command::Submit(args) => submit::run(args, &cli.global),
        Command::Status(args) => status::run(args, &cli.global),
        Command::Harvest(args) => harvest::run(args, &cli.global),
        Command::Retry(args) => retry::run(args, &cli.global),
        Command::Cancel(args) => cancel::run(args, &cli.global),
        Command::Nightly(args) => nightly::run(args, &cli.global),
        Command::Cache(args) => cache::run(args, &cli.global),
        Command::Spend(args) => spend::run(args, &cli.global),
        Command::Report(args) => report::run(args, &cli.global),
        Command::Sandbox(args) => sandbox::run(args, &cli.global),
    };
    let outcome = result.unwrap_or_else(|err| {
        crate::report::output::error_chain(&err);
        errors::exit_status_of(&err)
    });
    ExitCode::from(outcome.code())
}

/// Sets the `--format` every command reads; `--format csv` is a usage error but for `spend`.
fn settle_format(cli: &mut Cli) -> Result<(), UsageError> {
    cli.global.format = match cli.global.format_choice {
        FormatChoice::Human => Format::Human,
        FormatChoice::Json => Format::Json,
        FormatChoice::Csv if matches!(cli.command, Command::Spend(_)) => Format::Human,
        FormatChoice::Csv => {
            return Err(UsageError(
                "--format csv is only for `render spend`; use human or json".into(),
            ));
        }
    };
    Ok(())
}

/// A closed stdout (`render status | head -1`) ends the process quietly, as it does `cat`
/// and `grep`, instead of a panic or an error: Rust ignores SIGPIPE unless told otherwise.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr (warnings by default, `-v`/`-vv`/`RENDER_LOG` for more) and, for the
/// commands that keep state, also to `<state-dir>/logs/render.log` at info level, so a night
/// run from cron leaves a record. The API key never reaches either: the client masks it.
fn init_logging(verbose: u8, color: bool, log_file: Option<std::fs::File>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("RENDER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // The night's events reach stderr through the reporter already; logged, they are for the
    // file alone, so `-v` does not say each of them twice.
    let filter = filter.add_directive(
        format!("{}=off", crate::report::progress::NIGHT_LOG)
            .parse()
            .expect("a valid directive"),
    );
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| crate::report::progress::LogWriter)
        .with_ansi(color)
        .with_target(false)
        .with_filter(filter);
    let file = log_file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_target(false)
            .with_filter(EnvFilter::new("info"))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

/// The state directory's log file, for commands that keep state; `None` when it cannot be
/// opened (logging must never stop a night).
fn state_log(command: &Command, global: &GlobalArgs) -> Option<std::fs::File> {
    let stateful = match command {
        Command::Submit(_)
        | Command::Harvest(_)
        | Command::Retry(_)
        | Command::Cancel(_)
        | Command::Nightly(_) => true,
        Command::Cache(args) => args.changes_state(),
        _ => false,
    };
    if !stateful {
        return None;
    }
    let dir = global.state_dir.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("render.log"))
        .ok()
}
