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

mod batch;
mod download;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::error::ApiError;
use crate::api::retry::{Next, RetryDecision, RetryPolicy, RetryState};
use crate::cache::{CacheError, CacheStorage};
use crate::events::{Event, EventSink};
use crate::lanes::direct::{self, DirectError, MissingRule};
use crate::lanes::{Route, Routes};
use crate::ledger::{BatchRow, Ledger, LedgerError, RequestStatus, RunRow};
use crate::outputs::{self, LayoutError};
use render_wire::key::RequestKey;

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
    /// Concurrent downloads.
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

/// How often per lease a running night renews its claims: a missed renewal or two (a slow
/// poll, a store hiccup) still leaves the claim inside its lease.
const RENEWALS_PER_LEASE: u32 = 4;

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

impl<'a> Harvester<'a> {
    /// Visits every open batch once, nearest deadline first, then every provider's direct
    /// jobs. Ledger errors end the harvest; anything else is reported and kept so the others
    /// still get their turn.
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
            let Some(route) = self.route_of(&batch.provider) else {
                continue;
            };
            match self.batch(&batch, route).await {
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
        let keys = run_keys(runs, self.ledger)?;
        match self.awaited(&keys).await {
            Ok(changed) => progressed |= changed,
            Err(err @ HarvestError::Ledger(_)) => return Err(err),
            Err(err) => {
                warn(self.events, format!("{err}"));
                first_error.get_or_insert(err);
            }
        }
        for route in self.routes.iter() {
            match self.direct(route, &keys).await {
                Ok(changed) => progressed |= changed,
                Err(err @ HarvestError::Ledger(_)) => return Err(err),
                Err(err) => {
                    warn(self.events, format!("{}: {err}", route.provider.name));
                    first_error.get_or_insert(err);
                }
            }
        }
        // At once, not at the end: another machine may be waiting for these.
        self.publish(&keys).await?;
        self.renew_claims(&keys).await?;
        self.release_claims(&keys).await?;
        Ok((progressed, first_error))
    }

    /// Collects from the shared cache what other machines render for these runs, and takes
    /// over a request whose machine has gone silent past the lease.
    async fn awaited(&mut self, keys: &HashSet<RequestKey>) -> Result<bool, HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(false);
        };
        let mut progressed = false;
        for request in self.ledger.elsewhere()? {
            if !keys.contains(&request.key) {
                continue;
            }
            if let Some(entry) = shared.entry(&request.key).await? {
                let output = match shared.fetch(&entry, self.store).await {
                    Ok(output) => output,
                    // Damaged: dropped from the index; the claim below decides who renders it.
                    Err(err @ crate::shared::SharedError::Corrupt { .. }) => {
                        warn(
                            self.events,
                            format!("{err}; shot {} renders again", request.shot_id),
                        );
                        shared.forget(&request.key).await?;
                        self.take_over(shared, &request).await?;
                        progressed = true;
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                };
                self.ledger.record_output(&output)?;
                self.ledger.set_published(&output.key)?;
                self.events.emit(Event::VideoHarvested {
                    shot_id: request.shot_id.clone(),
                    take: request.take,
                    key: request.key.hex(),
                    bytes: output.video_bytes,
                });
                progressed = true;
                continue;
            }
            if shared.claim(&request.key).await? == crate::shared::Claim::Ours {
                warn(
                    self.events,
                    format!(
                        "shot {}: the machine rendering it has been silent past the lease; taking it over",
                        request.shot_id
                    ),
                );
                self.ledger.set_pending(&request.key)?;
                progressed = true;
            }
        }
        Ok(progressed)
    }

    /// Claims a request whose shared copy was damaged, to render it here.
    async fn take_over(
        &mut self,
        shared: &crate::shared::SharedCache,
        request: &crate::ledger::RequestRow,
    ) -> Result<(), HarvestError> {
        if shared.claim(&request.key).await? == crate::shared::Claim::Ours {
            self.ledger.set_pending(&request.key)?;
        }
        Ok(())
    }

    /// Renews this machine's claims on the runs' requests still in its hands (sent, rendering,
    /// or waiting to be sent), a few times per lease, so a long night is never taken over
    /// while it is alive. Best effort, like publishing: an unreachable store is said once.
    async fn renew_claims(&mut self, keys: &HashSet<RequestKey>) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        let every = shared.lease() / RENEWALS_PER_LEASE;
        if self.renewed_at.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        self.renewed_at = Some(Instant::now());
        for key in keys {
            let in_hand = self.ledger.request(key)?.is_some_and(|r| {
                matches!(
                    r.status,
                    RequestStatus::Pending
                        | RequestStatus::Queued
                        | RequestStatus::Submitted
                        | RequestStatus::Completed
                )
            });
            if !in_hand {
                continue;
            }
            if let Err(err) = shared.renew(key).await {
                if self.warned.insert(format!("renew:{}", shared.url())) {
                    warn(
                        self.events,
                        format!("{err}; this machine's claims were not renewed this time"),
                    );
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Gives up the claims of requests that failed or were lost here, once each, so another
    /// machine of the studio need not wait out the lease for them. Best effort.
    async fn release_claims(&mut self, keys: &HashSet<RequestKey>) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        for key in keys {
            if self.released.contains(key) {
                continue;
            }
            let settled_badly = self
                .ledger
                .request(key)?
                .is_some_and(|r| matches!(r.status, RequestStatus::Failed | RequestStatus::Lost));
            if !settled_badly {
                continue;
            }
            if let Err(err) = shared.release(key).await {
                if self.warned.insert(format!("release:{}", shared.url())) {
                    warn(
                        self.events,
                        format!("{err}; claims of failed requests were not released"),
                    );
                }
                return Ok(());
            }
            self.released.insert(*key);
        }
        Ok(())
    }

    /// Publishes the runs' outputs not yet in the shared cache: objects first, index last.
    /// Best effort: an unreachable store keeps them local (a later run publishes them).
    async fn publish(&mut self, keys: &HashSet<RequestKey>) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        let waiting = self.ledger.unpublished(keys)?;
        for (done, output) in waiting.iter().enumerate() {
            if let Err(err) = shared.publish(output, self.store).await {
                if self.warned.insert(format!("publish:{}", shared.url())) {
                    warn(
                        self.events,
                        format!(
                            "{err}; the night goes on with the local cache ({} output(s) not shared yet; a later run shares them)",
                            waiting.len() - done
                        ),
                    );
                }
                return Ok(());
            }
            self.ledger.set_published(&output.key)?;
        }
        Ok(())
    }

    /// One round of a provider's direct lane: settle unconfirmed sends, poll what renders,
    /// download what finished, and fill the freed slots with the runs' waiting requests.
    async fn direct(
        &mut self,
        route: &Route,
        keys: &HashSet<RequestKey>,
    ) -> Result<bool, HarvestError> {
        let id = &route.provider.id;
        let busy = !self.ledger.rendering_jobs(id)?.is_empty()
            || !self.ledger.unconfirmed_jobs(id)?.is_empty()
            || !self.ledger.completed_direct(id)?.is_empty();
        let waiting = direct::waiting(route, self.ledger, keys)?;
        if !busy && waiting.is_empty() {
            return Ok(false);
        }
        let mut progressed = direct::reconcile(route, self.ledger, self.events).await?;
        let polled = direct::poll(route, self.ledger, self.events, self.options.missing).await?;
        self.pacer.finished(&polled.finished);
        progressed |= polled.progressed;
        // Refill first: the farm renders while the videos download.
        progressed |= self.refill(route, keys).await?;
        let completed = self.ledger.completed_direct(id)?;
        if !completed.is_empty() {
            self.download(completed, route).await?;
            progressed = true;
        }
        Ok(progressed)
    }

    /// The download stage, for either lane's completed requests.
    async fn download(
        &mut self,
        requests: Vec<crate::ledger::RequestRow>,
        route: &Route,
    ) -> Result<(), HarvestError> {
        let options = self.options;
        download::download(
            requests,
            route,
            self.ledger,
            self.store,
            options,
            self.events,
            &mut self.report,
        )
        .await
    }

    /// Sends the waiting requests of `keys` into the provider's free slots.
    async fn refill(
        &mut self,
        route: &Route,
        keys: &HashSet<RequestKey>,
    ) -> Result<bool, HarvestError> {
        let waiting = direct::waiting(route, self.ledger, keys)?;
        if waiting.is_empty() || self.pacer.backing_off() {
            return Ok(false);
        }
        let run_id = waiting
            .first()
            .and_then(|r| self.ledger.newest_run_of(&r.key).ok().flatten());
        let sent =
            direct::send(route, self.ledger, self.events, &waiting, run_id.as_deref()).await?;
        self.pacer.sent(self.ledger, &route.provider.id)?;
        if let Some(wait) = sent.back_off {
            self.pacer.back_off(wait);
        }
        Ok(sent.progressed)
    }

    /// The route of a provider the ledger names, warning once when it is not configured.
    fn route_of(&mut self, provider: &str) -> Option<&'a Route> {
        let route = self.routes.get(provider);
        if route.is_none() && self.warned.insert(provider.to_string()) {
            warn(
                self.events,
                format!(
                    "work sent to {provider} is left alone: that provider is not configured here"
                ),
            );
        }
        route
    }

    /// Open batches, direct requests not yet finished, and requests other machines render, of
    /// the runs.
    fn open_work(&self, runs: &[RunRow]) -> Result<(usize, usize, usize), HarvestError> {
        let batches = batches_holding(runs, self.ledger)?
            .into_iter()
            .filter(|b| self.routes.get(&b.provider).is_some())
            .count();
        let keys = run_keys(runs, self.ledger)?;
        let awaited = self
            .ledger
            .elsewhere()?
            .iter()
            .filter(|r| keys.contains(&r.key))
            .count();
        let mut jobs = 0;
        for route in self.routes.iter() {
            let id = &route.provider.id;
            jobs += self.ledger.rendering_jobs(id)?.len()
                + self.ledger.unconfirmed_jobs(id)?.len()
                + self.ledger.completed_direct(id)?.len()
                + direct::waiting(route, self.ledger, &keys)?.len();
        }
        Ok((batches, jobs, awaited))
    }
}

/// Paces the direct lane's polls by how long its jobs take: a job's time is measured from its
/// POST (by this process) to the poll that saw it finished.
#[derive(Debug, Default)]
struct Pacer {
    sent: HashMap<i64, Instant>,
    /// Mean job time so far, and how many jobs it averages.
    mean: Option<(Duration, u32)>,
    back_off_until: Option<Instant>,
}

impl Pacer {
    /// Notes when each of the provider's rendering jobs was first seen sent.
    fn sent(&mut self, ledger: &Ledger, provider: &str) -> Result<(), HarvestError> {
        for job in ledger.rendering_jobs(provider)? {
            self.sent.entry(job.row).or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn finished(&mut self, rows: &[i64]) {
        for row in rows {
            let Some(sent) = self.sent.remove(row) else {
                continue;
            };
            let took = sent.elapsed();
            self.mean = Some(match self.mean {
                None => (took, 1),
                Some((mean, n)) => ((mean * n + took) / (n + 1), n + 1),
            });
        }
    }

    fn back_off(&mut self, wait: Duration) {
        self.back_off_until = Some(Instant::now() + wait);
    }

    fn backing_off(&self) -> bool {
        self.back_off_until.is_some_and(|t| Instant::now() < t)
    }

    /// A twentieth of a job's time (so a freed slot waits ~5% of a job), within bounds.
    fn interval(&self, max: Duration) -> Duration {
        const FLOOR: Duration = Duration::from_millis(20);
        match self.mean {
            Some((mean, _)) => (mean / 20).clamp(FLOOR, max.max(FLOOR)),
            None => Duration::from_millis(100).min(max),
        }
    }
}

/// The keys of every request of `runs`.
fn run_keys(runs: &[RunRow], ledger: &Ledger) -> Result<HashSet<RequestKey>, HarvestError> {
    let mut keys = HashSet::new();
    for run in runs {
        keys.extend(ledger.run_items(&run.id)?.into_iter().map(|item| item.key));
    }
    Ok(keys)
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
            None => keys.insert(run_keys(runs, ledger)?),
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

/// The videos these runs still wait for: sent (or about to be) and not yet settled.
fn videos_to_come(runs: &[RunRow], ledger: &Ledger) -> Result<u64, HarvestError> {
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    Ok(ledger.videos_to_come(&ids)?)
}

/// The runs to harvest: those named, or every open run. A run whose providers are none of
/// those configured here is left alone: another server does not know its work, and its 404s
/// must not mark it lost.
fn select_runs(
    run_ids: &[String],
    ledger: &Ledger,
    routes: &Routes,
    events: &dyn EventSink,
) -> Result<Vec<RunRow>, HarvestError> {
    let served = |run: &RunRow| run_providers(run).iter().any(|p| routes.get(p).is_some());
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
            if served(&run) {
                runs.push(run);
            } else {
                warn(
                    events,
                    format!(
                        "run {} was submitted to {}, not configured here: left alone",
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
            Some(run) if !served(&run) => Err(HarvestError::OtherProvider {
                run: run.id,
                submitted_to: run.provider,
            }),
            Some(run) => Ok(run),
        })
        .collect()
}

/// The providers a run names (a night may use several).
pub fn run_providers(run: &RunRow) -> Vec<String> {
    run.provider
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Backoff between polls: quick at first, then patient, never a busy loop.
fn poll_interval(idle_polls: u32, max: Duration) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << idle_polls.min(10))).min(max)
}

/// Lays out the run's outputs and manifest, and tallies where its requests stand.
async fn finish_run(
    run: &RunRow,
    ledger: &mut Ledger,
    store: &Arc<dyn CacheStorage>,
    options: &HarvestOptions,
    events: &dyn EventSink,
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
    let manifest = outputs::lay_out(run, ledger, &**store, &out_dir, events).await?;
    let summary = RunSummary {
        run_id: run.id.clone(),
        requests: manifest.requests.len(),
        harvested: manifest.count(outputs::EntryStatus::Harvested),
        failed: manifest.count(outputs::EntryStatus::Failed),
        lost: manifest.count(outputs::EntryStatus::Lost),
        pending: manifest.requests.len()
            - manifest.count(outputs::EntryStatus::Harvested)
            - manifest.count(outputs::EntryStatus::Failed)
            - manifest.count(outputs::EntryStatus::Lost),
        manifest: Some(out_dir.join(outputs::MANIFEST_NAME)),
        laid_out: Some(manifest),
    };
    let finished = summary.pending == 0
        && ledger
            .unharvested_batches()?
            .iter()
            .all(|b| b.run_id != run.id);
    ledger.set_run_done(&run.id, finished)?;
    Ok(summary)
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
