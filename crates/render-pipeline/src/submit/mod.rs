//! `render submit`: choose what a plan must render (not cached, not in flight or done, not
//! refused before) and send each request through its provider's lane, exactly once: the Batch
//! lane ([`crate::lanes::batch`]) in JSONL batches, the direct lane ([`crate::lanes::direct`])
//! as jobs, the first `max_in_flight` at once (`harvest` keeps the slots full). Both write
//! their intent to the ledger before anything is sent.
//!
//! Here: [`submit`] and [`resubmit`], and the one path by which both send. One file per step
//! beside it: `run` opens (or continues) the night's run, `shared_cache` fetches what
//! another machine of the studio rendered and claims what this one will, `choose` picks the
//! requests to send and the ledger rows they become, and `dry_run` writes the JSONL that would
//! be sent.

mod choose;
mod dry_run;
mod run;
mod shared_cache;

use std::collections::HashSet;

use serde::Serialize;

use crate::api::error::ApiError;
use crate::batch::{self, BatchLimits};
use crate::cache::CacheStorage;
use crate::events::{Event, EventSink};
use crate::lanes::Routes;
use crate::lanes::batch::{BatchLaneError, Outgoing, Submitter, Tally};
use crate::lanes::direct::{self, DirectError};
use crate::ledger::{Ledger, LedgerError, RequestRow, RunRow};
use crate::plan::Plan;
use crate::provider::Lane;
use crate::shared::SharedCache;
use render_wire::key::RequestKey;

use choose::{request_row, select_requests};
use run::open_run;
use shared_cache::{claim_rows, pull_shared, pull_shared_rows};

pub use crate::lanes::batch::{META_INTENT, META_PART, META_RUN, META_SHOT_LIST, SubmittedBatch};
pub use dry_run::dry_run;
pub use run::plan_hash;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Batch(#[from] batch::BatchError),
    #[error(transparent)]
    BatchLane(#[from] BatchLaneError),
    #[error(transparent)]
    Direct(#[from] DirectError),
    #[error(
        "no provider `{0}` is configured here (providers.yaml, --providers); nothing was sent to it"
    )]
    NoRoute(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What one `render submit` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SubmitReport {
    pub run_id: String,
    pub resumed: bool,
    pub requests: usize,
    pub submitted: usize,
    pub skipped_cached: usize,
    pub skipped_in_flight: usize,
    /// Requests the provider refused before for policy: the same request would fail again.
    pub skipped_rejected: usize,
    /// Brought from the studio's shared cache instead of rendered.
    pub fetched_shared: usize,
    /// Claimed by another machine of the studio: waited for, not sent.
    pub skipped_elsewhere: usize,
    /// Sent as direct-lane jobs by this invocation.
    pub jobs_sent: usize,
    /// Direct-lane requests waiting for a free slot (`harvest` and `nightly` send them).
    pub jobs_waiting: usize,
    pub uploaded_assets: usize,
    pub reused_assets: usize,
    pub batches: Vec<SubmittedBatch>,
}

impl SubmitReport {
    fn add(&mut self, batches: Tally) {
        self.submitted += batches.submitted;
        self.uploaded_assets += batches.uploaded_assets;
        self.reused_assets += batches.reused_assets;
        self.batches.extend(batches.batches);
    }
}

/// Submits every request of `plan` that is not cached, in flight or done, each through its
/// provider's lane.
pub async fn submit(
    plan: &Plan,
    ledger: &mut Ledger,
    store: &dyn CacheStorage,
    shared: Option<&SharedCache>,
    routes: &Routes,
    limits: BatchLimits,
    events: &dyn EventSink,
) -> Result<SubmitReport, SubmitError> {
    let (run, resumed) = open_run(plan, ledger)?;
    events.emit(Event::RunStarted {
        run_id: run.id.clone(),
        resumed,
        requests: plan.requests.len(),
    });
    let mut report = SubmitReport {
        run_id: run.id.clone(),
        resumed,
        requests: plan.requests.len(),
        ..SubmitReport::default()
    };
    // What another machine of the studio rendered is fetched, not rendered again.
    let corrupt = match shared {
        Some(shared) => pull_shared(plan, ledger, store, shared, events, &mut report).await?,
        None => HashSet::new(),
    };
    let mended;
    let plan = if corrupt.is_empty() {
        plan
    } else {
        // The plan counted them cached from the shared index; their objects were damaged.
        let mut copy = plan.clone();
        for request in copy.requests.iter_mut() {
            request.cached &= !corrupt.contains(&request.key);
        }
        mended = copy;
        &mended
    };
    let selected = select_requests(plan, ledger, store, &mut report)?;
    let mut rows: Vec<RequestRow> = selected.iter().map(|r| request_row(r)).collect();
    ledger.insert_requests(&rows)?;
    if let Some(shared) = shared {
        rows = claim_rows(rows, ledger, shared, events, &mut report).await?;
    }
    let keys: HashSet<RequestKey> = plan.requests.iter().map(|r| r.key).collect();
    let sending = Sending {
        providers: &plan.providers,
        rows: &rows,
        keys: &keys,
    };
    send_rows(&run, sending, ledger, routes, limits, events, &mut report).await?;
    Ok(report)
}

/// Resubmits the given requests (failed-but-retryable or lost ones) through the same path,
/// rebuilt from the ledger alone: no shot list is needed. With a shared cache, as `submit`
/// does: what another machine published since is fetched, and the rest is claimed first, so a
/// retried request another machine is rendering is waited for, not rendered twice.
pub async fn resubmit(
    run: &RunRow,
    requests: &[RequestRow],
    ledger: &mut Ledger,
    caches: (&dyn CacheStorage, Option<&SharedCache>),
    routes: &Routes,
    limits: BatchLimits,
    events: &dyn EventSink,
) -> Result<SubmitReport, SubmitError> {
    let mut report = SubmitReport {
        run_id: run.id.clone(),
        resumed: true,
        requests: requests.len(),
        ..SubmitReport::default()
    };
    let mut rows: Vec<RequestRow> = requests
        .iter()
        .filter(|r| !r.status.is_in_flight_or_done())
        .cloned()
        .collect();
    if let (store, Some(shared)) = caches {
        rows = pull_shared_rows(rows, ledger, store, shared, events, &mut report).await?;
        rows = claim_rows(rows, ledger, shared, events, &mut report).await?;
    }
    let mut providers: Vec<String> = Vec::new();
    for row in &rows {
        let id = provider_of_row(row, run);
        if !providers.contains(&id) {
            providers.push(id);
        }
    }
    let keys: HashSet<RequestKey> = ledger
        .run_items(&run.id)?
        .into_iter()
        .map(|i| i.key)
        .collect();
    let sending = Sending {
        providers: &providers,
        rows: &rows,
        keys: &keys,
    };
    send_rows(run, sending, ledger, routes, limits, events, &mut report).await?;
    Ok(report)
}

/// A request row's provider: rows from before providers were the run's.
fn provider_of_row(row: &RequestRow, run: &RunRow) -> String {
    if row.provider.is_empty() {
        run.provider.clone()
    } else {
        row.provider.clone()
    }
}

/// What one invocation sends: its requests, the providers they go to, and every key of the
/// run (whose interrupted sends it finishes first).
struct Sending<'a> {
    providers: &'a [String],
    rows: &'a [RequestRow],
    keys: &'a HashSet<RequestKey>,
}

/// Finishes the interrupted sends of this run (and of any batch holding one of its requests)
/// first, then sends the rows: the Batch lane's in batches, the direct lane's as jobs (as many
/// as there are free slots). Other runs' leftovers are theirs to collect.
async fn send_rows(
    run: &RunRow,
    sending: Sending<'_>,
    ledger: &mut Ledger,
    routes: &Routes,
    limits: BatchLimits,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<(), SubmitError> {
    let Sending {
        providers,
        rows,
        keys,
    } = sending;
    for provider in providers {
        let route = routes
            .get(provider)
            .ok_or_else(|| SubmitError::NoRoute(provider.clone()))?;
        let mine = |lane: Lane| -> Vec<&RequestRow> {
            rows.iter()
                .filter(|r| provider_of_row(r, run) == *provider && r.lane == lane)
                .collect()
        };
        let mut tally = Tally::default();
        let mut submitter = Submitter {
            run,
            ledger: &mut *ledger,
            route,
            events,
            report: &mut tally,
        };
        submitter.confirm_pending_intents(keys).await?;
        let batch: Vec<Outgoing> = mine(Lane::Batch)
            .into_iter()
            .map(Outgoing::from_row)
            .collect();
        submitter.send(&batch, limits).await?;
        report.add(tally);
        let direct: Vec<RequestKey> = mine(Lane::Direct).iter().map(|r| r.key).collect();
        if direct.is_empty() {
            continue;
        }
        direct::reconcile(route, ledger, events).await?;
        ledger.queue_direct(&route.provider.id, &direct)?;
        let keys = direct.iter().copied().collect();
        let waiting = direct::waiting(route, ledger, &keys)?;
        let pass = direct::send(route, ledger, events, &waiting, Some(&run.id)).await?;
        report.jobs_sent += pass.sent;
        report.submitted += pass.sent;
        report.jobs_waiting += direct::waiting(route, ledger, &keys)?.len();
    }
    Ok(())
}
