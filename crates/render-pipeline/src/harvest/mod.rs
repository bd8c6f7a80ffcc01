//! `render harvest`: collect every finished video before the provider deletes it, into the
//! content-addressed cache, then lay out the outputs and a manifest.
//!
//! Order of writes is what makes a crash harmless: a video is streamed into a temporary file
//! inside the cache, hashed as it streams, length-checked, fsynced and renamed into the store;
//! only then does the ledger learn that the key has an output. A crash before the rename leaves a
//! partial file that the next run resumes (HTTP Range) or restarts; it never enters the store.
//!
//! Harvest is one poll loop over the open work of both lanes — batches ([`batch`]) and direct
//! jobs ([`crate::lanes::direct`], whose free slots it refills) — feeding one download stage
//! ([`download`]).
//!
//! Here: [`harvest`], the loop that polls until the work is done (or, without `--watch`, once),
//! and the state one harvest keeps. Beside it: `poll` (one round over the open batches, the
//! shared cache and the direct lanes), `shared_cache` (collecting, publishing and claiming in the
//! studio's shared cache), `pacer` (how long to wait between polls), `runs` (which runs a harvest
//! takes, and laying each out when it ends), `batch` and `download`.

mod batch;
mod download;
mod pacer;
mod poll;
mod runs;
mod shared_cache;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::error::ApiError;
use crate::api::retry::{Next, RetryDecision, RetryPolicy, RetryState};
use crate::cache::{CacheError, CacheStorage};
use crate::events::{Event, EventSink};
use crate::lanes::Routes;
use crate::lanes::direct::{DirectError, MissingRule};
use crate::ledger::{Ledger, LedgerError};
use crate::outputs::{self, LayoutError};
use render_wire::key::RequestKey;

use pacer::{Pacer, poll_interval};
use runs::{finish_run, select_runs, videos_to_come};

pub use runs::run_providers;

/// Warn when a batch's videos will be deleted within this long.
const DEADLINE_WARNING_SECS: i64 = 3 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Direct(#[from] DirectError),
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
    #[error("a download task failed: {0}")]
    Task(String),
    #[error("no run named {0} in the ledger (see `render status`)")]
    UnknownRun(String),
    #[error(
        "run {run} was submitted to {submitted_to}, which is not configured here; \
         add it to providers.yaml (or point OPENAI_BASE_URL at it) to harvest this run"
    )]
    OtherProvider { run: String, submitted_to: String },
    #[error(
        "batch {batch_id}: its result files hold {answered} of the {reported} results the \
         provider reports ({unreadable} lines unreadable); nothing was concluded from them, \
         run again to read them anew"
    )]
    IncompleteResults {
        batch_id: String,
        answered: u64,
        reported: u64,
        unreadable: u64,
    },
}

#[derive(Clone, Debug)]
pub struct HarvestOptions {
    /// Videos streaming at once; as many more may be finishing (fsync, thumbnail).
    pub jobs: usize,
    /// Keep polling until every batch of the selected runs is finished and harvested.
    pub watch: bool,
    /// Output folder (`--out`): wins over, and replaces, the folder a run was laid out in
    /// before; `None` keeps that folder, or `renders/<project>/` for a new run.
    pub out_dir: Option<PathBuf>,
    /// Longest pause between polls while watching.
    pub max_poll_interval: Duration,
    /// When a server's "not found" for a batch, job or video is believed.
    pub missing: MissingRule,
    /// The studio's shared cache: outputs are published to it, and requests another machine
    /// renders are collected from it.
    pub shared: Option<crate::shared::SharedCache>,
}

/// What one `render harvest` did, per run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HarvestReport {
    pub downloaded_videos: u64,
    pub downloaded_bytes: u64,
    pub runs: Vec<RunSummary>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub requests: usize,
    pub harvested: usize,
    pub failed: usize,
    pub lost: usize,
    /// Still rendering or waiting for download.
    pub pending: usize,
    pub manifest: Option<PathBuf>,
    /// What was laid out, for the contact sheet the CLI writes beside the manifest.
    #[serde(skip)]
    pub laid_out: Option<outputs::Manifest>,
}

impl HarvestReport {
    pub fn any_failed(&self) -> bool {
        self.runs.iter().any(|r| r.failed > 0)
    }
    pub fn any_lost(&self) -> bool {
        self.runs.iter().any(|r| r.lost > 0)
    }
    pub fn all_done(&self) -> bool {
        self.runs.iter().all(|r| r.pending == 0)
    }
}

/// Harvests the named runs (all open runs of the configured providers when `run_ids` is empty).
///
/// One batch's or job's trouble does not hold up the others, whose deadlines are just as real:
/// errors are kept, the rest is harvested and laid out, then the first error is returned. With
/// `watch`, a failing poll is retried with backoff a few times before giving up.
pub async fn harvest(
    run_ids: &[String],
    ledger: &mut Ledger,
    routes: &Routes,
    store: &Arc<dyn CacheStorage>,
    options: &HarvestOptions,
    events: &dyn EventSink,
) -> Result<HarvestReport, HarvestError> {
    let runs = select_runs(run_ids, ledger, routes, events)?;
    events.emit(Event::HarvestStarted {
        videos: videos_to_come(&runs, ledger)?,
    });
    let mut harvester = Harvester {
        ledger,
        routes,
        store,
        options,
        events,
        report: HarvestReport::default(),
        pacer: Pacer::default(),
        warned: HashSet::new(),
        renewed_at: None,
        released: HashSet::new(),
    };
    let failing_policy = RetryPolicy {
        max_retries: MAX_FAILED_POLLS - 1,
        base_delay: FIRST_FAILED_POLL_PAUSE,
        max_delay: options.max_poll_interval,
        ..RetryPolicy::default()
    };
    // Consecutive failing polls: one retry state, started afresh by a poll that succeeds.
    let mut failing = RetryState::new(failing_policy.clone());
    let mut idle_polls = 0;
    let error = loop {
        let (progressed, error) = harvester.poll(&runs).await?;
        let (batches, jobs, awaited) = harvester.open_work(&runs)?;
        if !options.watch || batches + jobs + awaited == 0 {
            break error;
        }
        idle_polls = if progressed { 0 } else { idle_polls + 1 };
        let mut pause = poll_interval(idle_polls, options.max_poll_interval);
        match &error {
            Some(err) => match failing.next(err.retry_decision()) {
                Next::Wait(delay) => pause = pause.max(delay),
                Next::GiveUp(_) => break error,
            },
            None => failing = RetryState::new(failing_policy.clone()),
        }
        if jobs > 0 && error.is_none() {
            // Jobs of seconds are polled in fractions of a second, jobs of minutes gently; a
            // failing server still gets the backoff.
            pause = pause.min(harvester.pacer.interval(options.max_poll_interval));
        }
        tokio::time::sleep(pause).await;
    };
    for run in &runs {
        let summary = finish_run(run, harvester.ledger, store, options, events).await?;
        harvester.report.runs.push(summary);
    }
    match error {
        Some(err) => Err(err),
        None => Ok(harvester.report),
    }
}

/// Consecutive failing polls `--watch` sits through before it reports the error.
const MAX_FAILED_POLLS: u32 = 5;

/// The pause after the first failing poll; it doubles per failure up to the poll interval.
const FIRST_FAILED_POLL_PAUSE: Duration = Duration::from_millis(500);

impl HarvestError {
    /// Whether `--watch` polls again after this error, and when: an API error as the retry
    /// classifier says (the server's wait honoured, a refused key not asked again), but a "not
    /// found" is for the missing rule to judge on a later poll, and an answer cut or garbled on
    /// the way (a gateway's bad moment) is asked again, as is other trouble of one batch
    /// (unreadable results, a failed download); all within the bound of failing polls.
    fn retry_decision(&self) -> RetryDecision {
        match self {
            HarvestError::Api(
                ApiError::NotFound { .. } | ApiError::Decode { .. } | ApiError::Protocol { .. },
            ) => RetryDecision::Retry { server_delay: None },
            HarvestError::Api(err) => err.retry_decision(),
            _ => RetryDecision::Retry { server_delay: None },
        }
    }
}

/// One harvest: the stores and the routes it works with, and what it has done so far.
struct Harvester<'a> {
    ledger: &'a mut Ledger,
    routes: &'a Routes,
    store: &'a Arc<dyn CacheStorage>,
    options: &'a HarvestOptions,
    events: &'a dyn EventSink,
    report: HarvestReport,
    pacer: Pacer,
    /// Providers already warned about (not configured here), so each is said once.
    warned: HashSet<String>,
    /// When this machine last renewed its shared-cache claims.
    renewed_at: Option<Instant>,
    /// Claims of failed or lost requests already given up.
    released: HashSet<RequestKey>,
}

/// A warning goes out as an event only: the reporter shows it once and logs it to the file.
fn warn(events: &dyn EventSink, message: String) {
    events.emit(Event::Warning { message });
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `2h 05m`, `14m`, `45s`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
