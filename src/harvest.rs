//! `render harvest`: collect every finished video before the provider deletes it, into the
//! content-addressed cache, then lay out the outputs and a manifest.
//!
//! Order of writes is what makes a crash harmless: a video is streamed into a temporary file
//! inside the cache, hashed as it streams, length-checked, fsynced and renamed into the store;
//! only then does the ledger learn that the key has an output. A crash before the rename leaves a
//! partial file that the next run resumes (HTTP Range) or restarts; it never enters the store.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::api::client::ApiClient;
use crate::api::error::ApiError;
use crate::api::types::{
    BatchOutputLine, BatchStatus, ContentVariant, ErrorBody, Video, VideoStatus,
};
use crate::batch::parse_custom_id;
use crate::cache::{CacheError, LocalStore, ObjectStore};
use crate::events::{Event, EventSink};
use crate::failpoint;
use crate::key::{RequestKey, Sha256Hex};
use crate::ledger::{
    BatchRow, BatchUpdate, Ledger, LedgerError, OutputRow, RequestResult, RequestRow,
    RequestStatus, RunRow, unix_now,
};
use crate::outputs::{self, LayoutError};

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
    #[error("a download task failed: {0}")]
    Task(String),
    #[error("no run named {0} in the ledger (see `render status`)")]
    UnknownRun(String),
    #[error(
        "run {run} was submitted to {submitted_to}, but OPENAI_BASE_URL points at {provider}; \
         point it at {submitted_to} to harvest this run"
    )]
    OtherProvider {
        run: String,
        submitted_to: String,
        provider: String,
    },
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
    /// Concurrent downloads.
    pub jobs: usize,
    /// Keep polling until every batch of the selected runs is finished and harvested.
    pub watch: bool,
    /// Output folder (`--out`): wins over, and replaces, the folder a run was laid out in
    /// before; `None` keeps that folder, or `renders/<project>/` for a new run.
    pub out_dir: Option<PathBuf>,
    /// Longest pause between polls while watching.
    pub max_poll_interval: Duration,
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

/// Harvests the named runs (all runs with unharvested batches when `run_ids` is empty).
///
/// One batch's trouble does not hold up the others, whose deadlines are just as real: errors
/// are kept, the rest is harvested and laid out, then the first error is returned. With `watch`,
/// a failing poll is retried with backoff a few times before giving up.
pub async fn harvest(
    run_ids: &[String],
    ledger: &mut Ledger,
    client: &ApiClient,
    store: &LocalStore,
    options: &HarvestOptions,
    events: &dyn EventSink,
) -> Result<HarvestReport, HarvestError> {
    let runs = select_runs(run_ids, ledger, &client.provider(), events)?;
    let mut harvester = Harvester {
        ledger,
        client,
        store,
        options,
        events,
        report: HarvestReport::default(),
    };
    let (mut idle_polls, mut failed_polls) = (0, 0);
    let error = loop {
        let (progressed, error) = harvester.poll(&runs).await?;
        failed_polls = if error.is_some() { failed_polls + 1 } else { 0 };
        let remaining = batches_holding(&runs, harvester.ledger)?.len();
        if !options.watch || remaining == 0 || failed_polls >= MAX_FAILED_POLLS {
            break error;
        }
        idle_polls = if progressed { 0 } else { idle_polls + 1 };
        tokio::time::sleep(poll_interval(
            idle_polls.max(failed_polls),
            options.max_poll_interval,
        ))
        .await;
    };
    for run in &runs {
        let summary = finish_run(run, harvester.ledger, store, options)?;
        harvester.report.runs.push(summary);
    }
    match error {
        Some(err) => Err(err),
        None => Ok(harvester.report),
    }
}

/// Consecutive failing polls `--watch` sits through before it reports the error.
const MAX_FAILED_POLLS: u32 = 5;

/// One harvest: the stores and the API it works with, and what it has done so far.
struct Harvester<'a> {
    ledger: &'a mut Ledger,
    client: &'a ApiClient,
    store: &'a LocalStore,
    options: &'a HarvestOptions,
    events: &'a dyn EventSink,
    report: HarvestReport,
}

impl Harvester<'_> {
    /// Visits every open batch once, nearest deadline first. Ledger errors end the harvest;
    /// anything else is reported and kept so the other batches still get their turn.
    async fn poll(
        &mut self,
        runs: &[RunRow],
    ) -> Result<(bool, Option<HarvestError>), HarvestError> {
        let mut progressed = false;
        let mut first_error = None;
        let batches = batches_holding(runs, self.ledger)?;
        self.events.emit(Event::PollStarted {
            batches: batches.len(),
        });
        for batch in batches {
            match self.batch(&batch).await {
                Ok(changed) => progressed |= changed,
                Err(err @ HarvestError::Ledger(_)) => return Err(err),
                Err(err) => {
                    warn(
                        self.events,
                        format!("batch {}: {err}", batch.batch_id.as_deref().unwrap_or("?")),
                    );
                    first_error.get_or_insert(err);
                }
            }
        }
        Ok((progressed, first_error))
    }
}

/// The unharvested batches holding requests of `runs`: their own, and batches of other runs
/// that carry one of their requests (a shot shared with an earlier list is submitted once, by
/// the run that came first, and must be waited for, not reported pending).
fn batches_holding(runs: &[RunRow], ledger: &Ledger) -> Result<Vec<BatchRow>, HarvestError> {
    let run_set: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut keys: Option<HashSet<RequestKey>> = None;
    let mut holding = Vec::new();
    for batch in ledger.unharvested_batches()? {
        if run_set.contains(batch.run_id.as_str()) {
            holding.push(batch);
            continue;
        }
        let keys = match &mut keys {
            Some(keys) => keys,
            None => {
                let mut all = HashSet::new();
                for run in runs {
                    all.extend(ledger.run_items(&run.id)?.into_iter().map(|item| item.key));
                }
                keys.insert(all)
            }
        };
        if ledger
            .batch_requests(batch.row)?
            .iter()
            .any(|request| keys.contains(&request.key))
        {
            holding.push(batch);
        }
    }
    Ok(holding)
}

/// The runs to harvest: those named, or every open run. Only runs submitted to the client's
/// provider: another server does not know their batches, and its 404s must not mark them lost.
fn select_runs(
    run_ids: &[String],
    ledger: &Ledger,
    provider: &str,
    events: &dyn EventSink,
) -> Result<Vec<RunRow>, HarvestError> {
    if run_ids.is_empty() {
        let open: HashSet<String> = ledger
            .unharvested_batches()?
            .into_iter()
            .map(|b| b.run_id)
            .collect();
        let mut runs = Vec::new();
        for run in ledger.runs()? {
            if !open.contains(&run.id) && run.done {
                continue;
            }
            if run.provider == provider {
                runs.push(run);
            } else {
                warn(
                    events,
                    format!(
                        "run {} was submitted to {}, not {provider}: left alone (set OPENAI_BASE_URL to harvest it)",
                        run.id, run.provider
                    ),
                );
            }
        }
        return Ok(runs);
    }
    run_ids
        .iter()
        .map(|id| match ledger.run(id)? {
            None => Err(HarvestError::UnknownRun(id.clone())),
            Some(run) if run.provider != provider => Err(HarvestError::OtherProvider {
                run: run.id,
                submitted_to: run.provider,
                provider: provider.to_string(),
            }),
            Some(run) => Ok(run),
        })
        .collect()
}

/// Backoff between polls: quick at first, then patient, never a busy loop.
fn poll_interval(idle_polls: u32, max: Duration) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << idle_polls.min(10))).min(max)
}

impl Harvester<'_> {
    /// Refreshes one batch and collects whatever it has finished. Returns whether anything changed.
    async fn batch(&mut self, batch: &BatchRow) -> Result<bool, HarvestError> {
        let (ledger, client, events) = (&mut *self.ledger, self.client, self.events);
        let Some(batch_id) = batch.batch_id.as_deref() else {
            return Ok(false);
        };
        let remote = match client.get_batch(batch_id).await {
            Ok(remote) => remote,
            Err(err) if err.status() == Some(404) => {
                forget_missing_batch(batch, batch_id, ledger, events)?;
                return Ok(true);
            }
            Err(err) => return Err(err.into()),
        };
        let update = BatchUpdate::from(&remote);
        ledger.update_batch(batch.row, &update)?;
        let outputs_expire_at = remote.completed_at.map(|t| t + 24 * 3600);
        let expire_in = outputs_expire_at.map(|t| t - server_now(&remote));
        events.emit(Event::BatchStatus {
            batch_id: batch_id.to_string(),
            status: update.status.clone(),
            completed: update.completed,
            failed: update.failed,
            total: batch.request_count,
            outputs_expire_in: expire_in,
        });
        if let Some(left) = expire_in.filter(|left| *left < DEADLINE_WARNING_SECS) {
            events.emit(Event::Warning {
                message: format!(
                    "batch {batch_id}: its videos are deleted in {}; harvesting now",
                    human_duration(left)
                ),
            });
        }
        if remote.status == BatchStatus::Unknown {
            // A status from a newer API (or a confused proxy): say so instead of waiting silently.
            warn(
                events,
                format!(
                    "batch {batch_id}: the provider reports a status this version of render does \
                     not know; treating the batch as still running"
                ),
            );
        }
        if !remote.status.is_terminal() {
            return Ok(false);
        }
        if !batch.results_read {
            match read_results(batch, &remote, ledger, client, events).await {
                Ok(()) => ledger.set_results_read(batch.row)?,
                // What was read is recorded: collect those videos before their deadline, then
                // report, so the next run reads the files again.
                Err(err @ HarvestError::IncompleteResults { .. }) => {
                    self.download_completed(batch).await?;
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
        }
        self.download_completed(batch).await?;
        let ledger = &mut *self.ledger;
        let open = ledger
            .batch_requests(batch.row)?
            .into_iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RequestStatus::Completed | RequestStatus::Submitted
                )
            })
            .count();
        if open == 0 {
            ledger.set_batch_harvested(batch.row)?;
        }
        Ok(true)
    }
}

/// The provider does not know the batch (another server, or it was deleted): whatever it held
/// that is not harvested is lost, so `render retry` can send it again.
fn forget_missing_batch(
    batch: &BatchRow,
    batch_id: &str,
    ledger: &mut Ledger,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    let reason = format!("the provider no longer knows batch {batch_id}");
    warn(
        events,
        format!("{reason}; its unharvested requests are marked lost"),
    );
    for request in ledger.batch_requests(batch.row)? {
        if request.status.is_in_flight_or_done() && request.status != RequestStatus::Harvested {
            let lost = RequestResult::Lost {
                reason: reason.clone(),
            };
            ledger.record_result(&request.key, &lost)?;
        }
    }
    ledger.set_results_read(batch.row)?;
    ledger.set_batch_harvested(batch.row)?;
    Ok(())
}

/// The provider's notion of "now": batches carry their own timestamps, so compare with those
/// rather than this machine's clock (the sandbox runs a fast clock).
fn server_now(batch: &crate::api::types::Batch) -> i64 {
    [
        batch.completed_at,
        batch.finalizing_at,
        batch.expired_at,
        batch.cancelled_at,
        batch.failed_at,
        batch.in_progress_at,
        Some(batch.created_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or_else(unix_now)
}

/// Reads the output and error files and records every line against its request. Lines whose
/// `custom_id` is not one of this batch's requests are reported and ignored.
async fn read_results(
    batch: &BatchRow,
    remote: &crate::api::types::Batch,
    ledger: &mut Ledger,
    client: &ApiClient,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    let requests: HashMap<RequestKey, RequestRow> = ledger
        .batch_requests(batch.row)?
        .into_iter()
        .map(|r| (r.key, r))
        .collect();
    let mut answered = HashSet::new();
    let (mut unreadable, mut foreign) = (0u64, 0u64);
    for file_id in [&remote.output_file_id, &remote.error_file_id]
        .into_iter()
        .flatten()
    {
        let content = client.file_content(file_id).await?;
        for (number, line) in content.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: BatchOutputLine = match serde_json::from_slice(line) {
                Ok(parsed) => parsed,
                Err(err) => {
                    warn(
                        events,
                        format!(
                            "file {file_id} line {}: not a batch result ({err}); ignored",
                            number + 1
                        ),
                    );
                    unreadable += 1;
                    continue;
                }
            };
            let Some(key) = parse_custom_id(&parsed.custom_id).filter(|k| requests.contains_key(k))
            else {
                warn(
                    events,
                    format!(
                        "file {file_id} line {}: custom_id {:?} is not a request of this batch; ignored",
                        number + 1,
                        truncate(&parsed.custom_id, 80)
                    ),
                );
                foreign += 1;
                continue;
            };
            let result = line_result(&parsed);
            if let RequestResult::Failed { code, message, .. } = &result {
                events.emit(Event::RequestFailed {
                    shot_id: requests[&key].shot_id.clone(),
                    key: key.hex(),
                    code: code.clone(),
                    message: message.clone(),
                });
            }
            ledger.record_result(&key, &result)?;
            answered.insert(key);
        }
    }
    // A damaged file (cut short in transit, say) must not make rendered requests look unrun:
    // they would be marked lost and paid for again.
    let reported = remote
        .request_counts
        .map_or(0, |counts| counts.completed + counts.failed);
    // Lines that are well-formed but not ours are in the provider's counts too.
    if unreadable > 0 || answered.len() as u64 + foreign < reported {
        return Err(HarvestError::IncompleteResults {
            batch_id: remote.id.clone(),
            answered: answered.len() as u64,
            reported,
            unreadable,
        });
    }
    // Whatever the files did not mention never ran: lost (resubmittable) when the batch expired
    // or was cancelled, failed (retryable) with the batch's own error when it failed validation.
    for (key, request) in requests.iter().filter(|(k, _)| !answered.contains(*k)) {
        if !matches!(
            request.status,
            RequestStatus::Submitted | RequestStatus::Queued
        ) {
            continue;
        }
        let result = unanswered_result(remote);
        if let RequestResult::Lost { reason } = &result {
            events.emit(Event::RequestLost {
                shot_id: request.shot_id.clone(),
                key: key.hex(),
                reason: reason.clone(),
            });
        }
        ledger.record_result(key, &result)?;
    }
    Ok(())
}

fn unanswered_result(remote: &crate::api::types::Batch) -> RequestResult {
    match remote.status {
        BatchStatus::Failed => {
            let message = remote
                .errors
                .as_ref()
                .and_then(|e| e.data.first())
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the batch failed validation".into());
            // Nothing in a batch that failed validation ran or was billed, and the cause is
            // usually the file (too many requests, too large), not the request: resubmitting
            // is free and may well succeed (with smaller batches), so it stays retryable.
            RequestResult::Failed {
                code: Some("batch_failed".into()),
                message,
                retryable: true,
            }
        }
        status => RequestResult::Lost {
            reason: format!(
                "batch {} {} before this request ran",
                remote.id,
                status.as_str()
            ),
        },
    }
}

/// What one line of an output or error file says about its request.
pub fn line_result(line: &BatchOutputLine) -> RequestResult {
    let (code, message, status) = match (&line.response, &line.error) {
        (Some(response), _) if (200..300).contains(&response.status_code) => {
            return success_result(&response.body);
        }
        (Some(response), _) => match serde_json::from_value::<ErrorBody>(response.body.clone()) {
            Ok(body) => (
                body.error.code.or(body.error.kind),
                body.error.message,
                Some(response.status_code),
            ),
            Err(_) => (
                None,
                format!("HTTP {}", response.status_code),
                Some(response.status_code),
            ),
        },
        (None, Some(error)) => (error.code.clone(), error.message.clone(), None),
        (None, None) => (
            None,
            "the provider returned neither a response nor an error".into(),
            None,
        ),
    };
    classify_failure(code, message, status)
}

fn success_result(body: &serde_json::Value) -> RequestResult {
    match serde_json::from_value::<Video>(body.clone()) {
        Ok(Video {
            status: VideoStatus::Failed,
            error: Some(error),
            ..
        }) => classify_failure(Some(error.code), error.message, None),
        Ok(video) => RequestResult::Completed {
            video_id: video.id,
            expires_at: video.expires_at,
        },
        Err(err) => RequestResult::Failed {
            code: Some("malformed_response".into()),
            message: format!("the result is not a video object: {err}"),
            retryable: true,
        },
    }
}

/// Sorts a failure: never run (the batch expired or was cancelled first) is lost; a policy
/// rejection or an invalid request fails again if resubmitted unchanged; the rest may succeed.
fn classify_failure(code: Option<String>, message: String, status: Option<u16>) -> RequestResult {
    let code_text = code.as_deref().unwrap_or_default();
    if matches!(code_text, "batch_expired" | "batch_cancelled") {
        return RequestResult::Lost { reason: message };
    }
    let policy = is_policy_code(code_text) || message.to_lowercase().contains("moderation");
    let invalid =
        status.is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 409 && s != 429);
    RequestResult::Failed {
        code,
        message,
        retryable: !policy && !invalid,
    }
}

fn is_policy_code(code: &str) -> bool {
    code.contains("moderation") || code.contains("policy") || code == "content_filter"
}

impl Harvester<'_> {
    /// Downloads every completed video of a batch (and its thumbnail), `jobs` at a time.
    async fn download_completed(&mut self, batch: &BatchRow) -> Result<(), HarvestError> {
        let (ledger, client, store, events) =
            (&mut *self.ledger, self.client, self.store, self.events);
        let (options, report) = (self.options, &mut self.report);
        let mut todo = Vec::new();
        for request in ledger.batch_requests(batch.row)? {
            if request.status != RequestStatus::Completed {
                continue;
            }
            // Another run may have harvested the same key already.
            match ledger.output(&request.key)? {
                Some(output) if store.has(&output.video_sha) => {
                    ledger.record_output(&output)?;
                }
                _ => todo.push(request),
            }
        }
        events.emit(Event::DownloadsPlanned {
            videos: todo.len() as u64,
        });
        // Each download is its own task, so hashing and copying spread over every core; they
        // report progress through a channel, and only this task touches the ledger.
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
        let slots = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
        let mut downloads = tokio::task::JoinSet::new();
        for request in todo {
            let (client, store) = (client.clone(), store.clone());
            let (slots, sink) = (slots.clone(), ChannelSink(progress_tx.clone()));
            downloads.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let result = download_request(&request, &client, &store, &sink).await;
                (request, result)
            });
        }
        drop(progress_tx);
        let mut first_error = None;
        loop {
            let joined = tokio::select! {
                Some(event) = progress_rx.recv() => {
                    events.emit(event);
                    continue;
                }
                joined = downloads.join_next() => joined,
            };
            let Some(joined) = joined else { break };
            let (request, result) = match joined {
                Ok(done) => done,
                Err(err) => {
                    first_error.get_or_insert(HarvestError::Task(err.to_string()));
                    continue;
                }
            };
            match result {
                Ok(output) => {
                    ledger.record_output(&output)?;
                    report.downloaded_videos += 1;
                    report.downloaded_bytes += output.video_bytes;
                    events.emit(Event::VideoHarvested {
                        shot_id: request.shot_id.clone(),
                        key: request.key.hex(),
                        bytes: output.video_bytes,
                    });
                    failpoint::hit("harvest-after-video");
                }
                Err(DownloadFailure::Gone(reason)) => {
                    events.emit(Event::RequestLost {
                        shot_id: request.shot_id.clone(),
                        key: request.key.hex(),
                        reason: reason.clone(),
                    });
                    ledger.record_result(&request.key, &RequestResult::Lost { reason })?;
                }
                // Keep harvesting the others: one stubborn download must not cost the rest.
                Err(DownloadFailure::Other(err)) => {
                    tracing::error!(shot = %request.shot_id, "download failed: {err}");
                    first_error.get_or_insert(err);
                }
            }
        }
        while let Ok(event) = progress_rx.try_recv() {
            events.emit(event);
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Forwards a download task's events to the harvest's own task.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        // The receiver outlives every task; a send can only fail once the harvest has ended.
        let _ = self.0.send(event);
    }
}

enum DownloadFailure {
    /// The provider no longer has the video: the request is lost.
    Gone(String),
    Other(HarvestError),
}

impl<E: Into<HarvestError>> From<E> for DownloadFailure {
    fn from(err: E) -> DownloadFailure {
        DownloadFailure::Other(err.into())
    }
}

async fn download_request(
    request: &RequestRow,
    client: &ApiClient,
    store: &LocalStore,
    events: &dyn EventSink,
) -> Result<OutputRow, DownloadFailure> {
    let video_id = request
        .video_id
        .clone()
        .ok_or_else(|| DownloadFailure::Gone("the result named no video".into()))?;
    let (video_sha, video_bytes) =
        download_variant(&video_id, ContentVariant::Video, client, store, events).await?;
    let thumbnail_sha =
        match download_variant(&video_id, ContentVariant::Thumbnail, client, store, events).await {
            Ok((sha, _)) => Some(sha),
            // A missing thumbnail is a pity, not a lost video.
            Err(DownloadFailure::Gone(_)) => None,
            Err(other) => return Err(other),
        };
    Ok(OutputRow {
        key: request.key,
        video_sha,
        video_bytes,
        thumbnail_sha,
        video_id: Some(video_id),
        harvested_at: unix_now(),
    })
}

/// Streams one variant into the store, resuming a partial download left by an earlier run.
async fn download_variant(
    video_id: &str,
    variant: ContentVariant,
    client: &ApiClient,
    store: &LocalStore,
    events: &dyn EventSink,
) -> Result<(Sha256Hex, u64), DownloadFailure> {
    // Named by the video, not the request: a partial of a video that was lost must never be
    // resumed with the bytes of its re-render. Hashed, because ids are the provider's text.
    let name = format!(
        "{}-{}",
        &Sha256Hex::of(video_id.as_bytes()).hex()[..32],
        variant.as_str()
    );
    let mut pending = store.resume_partial(&name).await?;
    let resume_from = pending.len();
    let outcome = {
        let mut sink = ProgressWriter {
            inner: &mut pending,
            events,
            count: variant == ContentVariant::Video,
            written: 0,
            unreported: 0,
        };
        client
            .download_content(video_id, variant, &mut sink, resume_from)
            .await
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) if is_gone(&err) => {
            pending.abandon().await?;
            return Err(DownloadFailure::Gone(format!(
                "the provider no longer has video {video_id}: {err}"
            )));
        }
        Err(err) => return Err(err.into()),
    };
    let expected = outcome.total_len;
    let total = pending.len();
    let sha = pending.finish(expected).await?;
    Ok((sha, total))
}

fn is_gone(err: &ApiError) -> bool {
    matches!(err.status(), Some(404 | 410))
}

/// Passes bytes through to the pending object, reporting progress as they go.
struct ProgressWriter<'a, W> {
    inner: &'a mut W,
    events: &'a dyn EventSink,
    count: bool,
    written: u64,
    /// Bytes not yet reported: progress goes out a mebibyte at a time, not per chunk.
    unreported: u64,
}

/// How many bytes a progress event stands for, at most.
const PROGRESS_STEP: u64 = 1 << 20;

impl<W> ProgressWriter<'_, W> {
    fn report(&mut self) {
        if self.unreported > 0 {
            self.events.emit(Event::DownloadProgress {
                bytes: std::mem::take(&mut self.unreported),
            });
        }
    }
}

impl<W> Drop for ProgressWriter<'_, W> {
    fn drop(&mut self) {
        self.report();
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ProgressWriter<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll
            && self.count
        {
            self.written += *n as u64;
            self.unreported += *n as u64;
            if self.unreported >= PROGRESS_STEP {
                self.report();
            }
            // Late enough that part of the video has reached the disk, to prove resumption.
            if self.written > 1 << 20 {
                failpoint::hit("harvest-mid-download");
            }
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Lays out the run's outputs and manifest, and tallies where its requests stand.
fn finish_run(
    run: &RunRow,
    ledger: &mut Ledger,
    store: &LocalStore,
    options: &HarvestOptions,
) -> Result<RunSummary, HarvestError> {
    // `--out` wins and is remembered; otherwise the run keeps the folder it was first given.
    let out_dir = match (&options.out_dir, &run.out_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => outputs::default_out_dir(run.project.as_deref()),
    };
    let recorded = out_dir.display().to_string();
    if run.out_dir.as_deref() != Some(recorded.as_str()) {
        ledger.set_run_out_dir(&run.id, &recorded)?;
    }
    let manifest = outputs::lay_out(run, ledger, store, &out_dir)?;
    let summary = RunSummary {
        run_id: run.id.clone(),
        requests: manifest.requests.len(),
        harvested: manifest.count("harvested"),
        failed: manifest.count("failed"),
        lost: manifest.count("lost"),
        pending: manifest.requests.len()
            - manifest.count("harvested")
            - manifest.count("failed")
            - manifest.count("lost"),
        manifest: Some(out_dir.join(outputs::MANIFEST_NAME)),
    };
    let finished = summary.pending == 0
        && ledger
            .unharvested_batches()?
            .iter()
            .all(|b| b.run_id != run.id);
    ledger.set_run_done(&run.id, finished)?;
    Ok(summary)
}

fn warn(events: &dyn EventSink, message: String) {
    tracing::warn!("{message}");
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
