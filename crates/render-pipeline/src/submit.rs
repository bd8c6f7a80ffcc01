//! `render submit`: choose what a plan must render (not cached, not in flight or done, not
//! refused before) and send each request through its provider's lane, exactly once: the Batch
//! lane ([`crate::lanes::batch`]) in JSONL batches, the direct lane ([`crate::lanes::direct`])
//! as jobs, the first `max_in_flight` at once (`harvest` keeps the slots full). Both write
//! their intent to the ledger before anything is sent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::Serialize;

use crate::api::error::ApiError;
use crate::batch::{self, BatchLimits};
use crate::cache::CacheStorage;
use crate::events::{Event, EventSink};
use crate::lanes::Routes;
use crate::lanes::batch::{BatchLaneError, Outgoing, Submitter, Tally};
use crate::lanes::direct::{self, DirectError};
use crate::ledger::{Ledger, LedgerError, RequestRow, RequestStatus, RunItem, RunRow, unix_now};
use crate::outputs::{CachedOutputs, cached_output};
use crate::plan::{Plan, PlannedRequest};
use crate::provider::Lane;
use crate::shared::{Claim, SharedCache, SharedError};
use render_wire::api::InputReference;
use render_wire::key::{KeySet, RequestKey, Sha256Hex};

pub use crate::lanes::batch::{META_INTENT, META_PART, META_RUN, META_SHOT_LIST, SubmittedBatch};

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

/// Fetches into the local store every request of the plan that the shared cache holds and the
/// local one does not. Returns the keys whose shared objects were damaged (to render again).
async fn pull_shared(
    plan: &Plan,
    ledger: &mut Ledger,
    store: &dyn CacheStorage,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<HashSet<RequestKey>, SubmitError> {
    let mut corrupt = HashSet::new();
    let Some(listed) = shared_keys(shared, events).await else {
        return Ok(corrupt);
    };
    for request in &plan.requests {
        if !listed.contains(&request.key) || cached_output(ledger, store, &request.key)?.is_some() {
            continue;
        }
        let pulled = Pulling {
            key: request.key,
            shot_id: &request.shot_id,
            store,
            shared,
            events,
        };
        match pull_one(pulled, ledger, report).await? {
            Pulled::Fetched | Pulled::Absent => {}
            Pulled::Corrupt => {
                corrupt.insert(request.key);
            }
            Pulled::Unreachable => break,
        }
    }
    Ok(corrupt)
}

/// The keys the shared index holds; `None` (said once) when the store cannot be reached.
async fn shared_keys(shared: &SharedCache, events: &dyn EventSink) -> Option<HashSet<RequestKey>> {
    match shared.keys().await {
        Ok(keys) => Some(keys),
        Err(err) => {
            unreachable_shared(events, &err);
            None
        }
    }
}

/// One request to bring from the shared cache.
struct Pulling<'a> {
    key: RequestKey,
    shot_id: &'a str,
    store: &'a dyn CacheStorage,
    shared: &'a SharedCache,
    events: &'a dyn EventSink,
}

/// What became of one request asked of the shared cache.
enum Pulled {
    /// In the local store now, and recorded.
    Fetched,
    /// No machine published it.
    Absent,
    /// Its shared objects were damaged: the entry is dropped and it renders again.
    Corrupt,
    /// The store could not be reached (said): ask it nothing more this time.
    Unreachable,
}

async fn pull_one(
    pulling: Pulling<'_>,
    ledger: &mut Ledger,
    report: &mut SubmitReport,
) -> Result<Pulled, SubmitError> {
    let Pulling {
        key,
        shot_id,
        store,
        shared,
        events,
    } = pulling;
    let fetched = match shared.entry(&key).await {
        Ok(Some(entry)) => shared.fetch(&entry, store).await,
        Ok(None) => return Ok(Pulled::Absent),
        Err(err) => Err(err),
    };
    match fetched {
        Ok(output) => {
            ledger.record_output(&output)?;
            ledger.set_published(&output.key)?;
            report.fetched_shared += 1;
            Ok(Pulled::Fetched)
        }
        Err(err @ SharedError::Corrupt { .. }) => {
            events.emit(Event::Warning {
                message: format!("{err}; shot {shot_id} renders again"),
            });
            shared.forget(&key).await.ok();
            Ok(Pulled::Corrupt)
        }
        Err(err) => {
            unreachable_shared(events, &err);
            Ok(Pulled::Unreachable)
        }
    }
}

/// The rows a retry still has to send: those another machine has published since are
/// fetched instead (`report.fetched_shared`).
async fn pull_shared_rows(
    rows: Vec<RequestRow>,
    ledger: &mut Ledger,
    store: &dyn CacheStorage,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<Vec<RequestRow>, SubmitError> {
    let Some(listed) = shared_keys(shared, events).await else {
        return Ok(rows);
    };
    let mut left = Vec::with_capacity(rows.len());
    let mut reachable = true;
    for row in rows {
        if !reachable || !listed.contains(&row.key) {
            left.push(row);
            continue;
        }
        let pulling = Pulling {
            key: row.key,
            shot_id: &row.shot_id,
            store,
            shared,
            events,
        };
        match pull_one(pulling, ledger, report).await? {
            Pulled::Fetched => {}
            Pulled::Absent | Pulled::Corrupt => left.push(row),
            Pulled::Unreachable => {
                reachable = false;
                left.push(row);
            }
        }
    }
    Ok(left)
}

/// Claims each row's key in the shared cache; rows another machine holds are left to it (and
/// waited for by harvest), the rest are returned to be sent.
async fn claim_rows(
    rows: Vec<RequestRow>,
    ledger: &mut Ledger,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<Vec<RequestRow>, SubmitError> {
    let mut mine = Vec::with_capacity(rows.len());
    let mut owners = std::collections::BTreeSet::new();
    let mut reachable = true;
    for row in rows {
        if !reachable {
            mine.push(row);
            continue;
        }
        match shared.claim(&row.key).await {
            Ok(Claim::Ours) => mine.push(row),
            Ok(Claim::Theirs { owner, .. }) => {
                ledger.set_elsewhere(&row.key)?;
                report.skipped_elsewhere += 1;
                owners.insert(owner);
            }
            // Unreachable: the night goes on alone, as it would without a shared cache.
            Err(err) => {
                unreachable_shared(events, &err);
                reachable = false;
                mine.push(row);
            }
        }
    }
    if !owners.is_empty() {
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        events.emit(Event::Warning {
            message: format!(
                "{} request(s) are being rendered by another machine ({}): waiting for them instead of paying twice",
                report.skipped_elsewhere,
                owners.join(", ")
            ),
        });
    }
    Ok(mine)
}

fn unreachable_shared(events: &dyn EventSink, err: &SharedError) {
    events.emit(Event::Warning {
        message: format!("{err}; the night goes on with the local cache"),
    });
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

/// The run this plan continues (an unfinished run of the same plan), or a new one.
fn open_run(plan: &Plan, ledger: &mut Ledger) -> Result<(RunRow, bool), SubmitError> {
    let plan_hash = plan_hash(plan);
    if let Some(run) = ledger.open_run_for_plan(&plan_hash)? {
        return Ok((run, true));
    }
    let created_at = unix_now();
    let run = RunRow {
        id: new_run_id(created_at),
        created_at,
        project: plan.project.clone(),
        plan_hash,
        sources: plan
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        provider: plan.provider_summary(),
        out_dir: None,
        done: false,
        partial: plan.partial,
        cancelled: false,
    };
    let items: Vec<RunItem> = plan
        .requests
        .iter()
        .map(|r| RunItem {
            shot_id: r.shot_id.clone(),
            provider: Some(r.provider.clone()),
            lane: r.lane,
            take: r.take,
            takes: r.takes,
            key: r.key,
            cost: r.cost,
            tags: r.tags.clone(),
        })
        .collect();
    ledger.create_run(&run, &items)?;
    Ok((run, false))
}

/// What identifies "the same night": the set of requests and where they came from.
pub fn plan_hash(plan: &Plan) -> String {
    let mut lines: Vec<String> = plan
        .requests
        .iter()
        .map(|r| format!("{}\t{}\t{}\t{}", r.shot_id, r.take, r.key, r.lane))
        .collect();
    lines.sort();
    let mut text = lines.join("\n");
    for source in &plan.sources {
        text.push('\n');
        text.push_str(&source.display().to_string());
    }
    Sha256Hex::of(text.as_bytes()).hex()
}

fn new_run_id(now: i64) -> String {
    let mut suffix = [0u8; 3];
    rand::rng().fill_bytes(&mut suffix);
    format!("run-{now}-{}", hex::encode(suffix))
}

/// Past this many requests, choosing reads the state of every request in the ledger at once
/// instead of asking for each.
const STATE_POINT_QUERIES: usize = 256;

/// The distinct requests of the plan that need rendering, counting what is skipped and why.
fn select_requests<'p>(
    plan: &'p Plan,
    ledger: &Ledger,
    store: &dyn CacheStorage,
    report: &mut SubmitReport,
) -> Result<Vec<&'p PlannedRequest>, SubmitError> {
    select_requests_with(plan, ledger, store, report, STATE_POINT_QUERIES)
}

fn select_requests_with<'p>(
    plan: &'p Plan,
    ledger: &Ledger,
    store: &dyn CacheStorage,
    report: &mut SubmitReport,
    point_queries: usize,
) -> Result<Vec<&'p PlannedRequest>, SubmitError> {
    let mut seen = KeySet::with_capacity_and_hasher(plan.requests.len(), Default::default());
    let mut selected = Vec::with_capacity(plan.requests.len());
    // The plan's view may be stale (another process may have harvested since): ask again, for
    // all of the plan's requests at once.
    let cached = CachedOutputs::new(ledger, store);
    // Pending requests are left out: they are chosen like unknown ones.
    let states = if plan.requests.len() > point_queries {
        Some(ledger.request_states()?)
    } else {
        None
    };
    for request in &plan.requests {
        if request.cached || cached.try_contains(&request.key)? {
            report.skipped_cached += 1;
            continue;
        }
        if !seen.insert(request.key) {
            continue;
        }
        let state = match &states {
            Some(states) => states.get(&request.key).copied(),
            None => ledger
                .request(&request.key)?
                .map(|row| (row.status, row.retryable)),
        };
        match state {
            // Harvested but not cached means the object was removed: render it again.
            Some((RequestStatus::Harvested, _)) => selected.push(request),
            Some((status, _)) if status.is_in_flight_or_done() => report.skipped_in_flight += 1,
            Some((RequestStatus::Failed, false)) => report.skipped_rejected += 1,
            _ => selected.push(request),
        }
    }
    Ok(selected)
}

fn request_row(request: &PlannedRequest) -> RequestRow {
    RequestRow {
        key: request.key,
        shot_id: request.shot_id.clone(),
        take: request.take,
        provider: request.provider.clone(),
        lane: request.lane,
        served_as: (request.served_as != request.model.as_str()).then(|| request.served_as.clone()),
        job_row: None,
        model: request.model.to_string(),
        size: request.size.to_string(),
        seconds: request.seconds.0,
        prompt: request.prompt.clone(),
        reference_sha: request.reference.as_ref().map(|r| r.sha256),
        // Absolute, so `render retry` finds the image from any working directory (cron).
        reference_path: request.reference.as_ref().map(|r| {
            std::path::absolute(&r.path)
                .unwrap_or_else(|_| r.path.clone())
                .display()
                .to_string()
        }),
        reference_mime: request.reference.as_ref().map(|r| r.mime.to_string()),
        cost: request.cost,
        status: RequestStatus::Pending,
        attempts: 0,
        batch_row: None,
        video_id: None,
        video_expires_at: None,
        error_code: None,
        error_message: None,
        retryable: false,
    }
}

/// Writes the JSONL files `submit` would upload, choosing the requests the same way, and
/// uploads nothing (`--dry-run`). Reference images not uploaded yet get a placeholder file id.
pub fn dry_run(
    plan: &Plan,
    ledger: &Ledger,
    store: &dyn CacheStorage,
    limits: BatchLimits,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, usize)>, SubmitError> {
    let selected = select_requests(plan, ledger, store, &mut SubmitReport::default())?;
    // Only the Batch lane has files to write; direct jobs are sent one by one.
    let outgoing: Vec<&PlannedRequest> = selected
        .into_iter()
        .filter(|r| r.lane == Lane::Batch)
        .collect();
    let mut file_ids = HashMap::new();
    for sha256 in outgoing
        .iter()
        .filter_map(|r| r.reference.as_ref().map(|f| &f.sha256))
    {
        if !file_ids.contains_key(sha256) {
            let known = ledger.asset(sha256)?.map(|a| a.file_id);
            let placeholder = || format!("file-pending-{}", &sha256.hex()[..16]);
            file_ids.insert(*sha256, known.unwrap_or_else(placeholder));
        }
    }
    // The bodies `submit` sends (`Outgoing::body`), built from the plan without the ledger's
    // rows in between.
    let bodies = outgoing.iter().map(|r| {
        let mut body = batch::video_body(&r.served_as, &r.size.to_string(), r.seconds.0, &r.prompt);
        body.input_reference = r
            .reference
            .as_ref()
            .and_then(|f| file_ids.get(&f.sha256))
            .map(|id| InputReference::FileId {
                file_id: id.clone(),
            });
        (r.key, body)
    });
    let parts = batch::compile(bodies, limits)?;
    std::fs::create_dir_all(out_dir).map_err(|source| SubmitError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let path = out_dir.join(format!("batch-{:03}.jsonl", index + 1));
        crate::fsutil::atomic_write(&path, &part.jsonl).map_err(|source| SubmitError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push((path, part.keys.len()));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanOptions, build};
    use crate::shotlist::{Format, ShotListInput};
    use render_wire::catalog::Catalog;

    /// `dry_run` builds its bodies straight from the plan; they must be the bodies `submit`
    /// sends, which go through the ledger's rows (`request_row`, `Outgoing`).
    #[test]
    fn dry_run_writes_the_lines_submit_would_send() {
        let dir = tempfile::tempdir().unwrap();
        let refs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shotlists/refs");
        let list = "defaults: {model: sora-2, takes: 2}\nshots:\n  \
                    - {id: a, prompt: \"Harbour \\\"at\\\" dusk\", reference: harbour.png}\n  \
                    - {id: b, prompt: Skyline, model: sora-2-pro, size: 1920x1080}\n  \
                    - {id: c, prompt: Alley, reference: alley.jpg, priority: rush}\n";
        let input = ShotListInput::new("t.yaml", &refs, list.into(), Format::Yaml);
        let opts = PlanOptions::single("127.0.0.1", Catalog::builtin());
        let (plan, _) = build(&[input], &opts, &|_| false).unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let store = crate::cache::LocalStore::open(dir.path()).unwrap();
        let limits = BatchLimits {
            max_requests: 3,
            max_bytes: u64::MAX,
        };
        let written = dry_run(&plan, &ledger, &store, limits, &dir.path().join("out")).unwrap();

        let outgoing: Vec<Outgoing> = plan
            .requests
            .iter()
            .filter(|r| r.lane == Lane::Batch)
            .map(|r| Outgoing::from_row(&request_row(r)))
            .collect();
        let file_ids: HashMap<Sha256Hex, String> = outgoing
            .iter()
            .filter_map(|o| o.reference.as_ref())
            .map(|(sha, _)| (*sha, format!("file-pending-{}", &sha.hex()[..16])))
            .collect();
        let bodies = outgoing.iter().map(|o| (o.key, o.body(&file_ids)));
        let expected = batch::compile(bodies, limits).unwrap();
        assert_eq!(written.len(), expected.len());
        for ((path, requests), part) in written.iter().zip(&expected) {
            assert_eq!(*requests, part.keys.len());
            assert_eq!(std::fs::read(path).unwrap(), part.jsonl);
        }
        assert_eq!(expected.iter().map(|p| p.keys.len()).sum::<usize>(), 4);
    }

    /// A large plan reads every request's state in one query; it must choose exactly what a
    /// query per request chooses, status by status.
    #[test]
    fn one_query_for_the_states_chooses_what_a_query_each_chooses() {
        let dir = tempfile::tempdir().unwrap();
        let refs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shotlists/refs");
        let mut list = String::from("defaults: {model: sora-2, takes: 2}\nshots:\n");
        for i in 0..6 {
            list.push_str(&format!("  - {{id: s{i}, prompt: Shot number {i}}}\n"));
        }
        // The same request twice: counted once.
        list.push_str("  - {id: again, prompt: Shot number 0}\n");
        let input = ShotListInput::new("t.yaml", &refs, list, Format::Yaml);
        let opts = PlanOptions::single("127.0.0.1", Catalog::builtin());
        let (plan, _) = build(&[input], &opts, &|_| false).unwrap();
        assert_eq!(plan.requests.len(), 14);
        let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let store = crate::cache::LocalStore::open(dir.path()).unwrap();
        let rows: Vec<RequestRow> = plan.requests.iter().map(request_row).collect();
        ledger.insert_requests(&rows).unwrap();
        let key = |i: usize| plan.requests[i].key;
        let failed = |retryable| crate::ledger::RequestResult::Failed {
            code: None,
            message: "no".into(),
            retryable,
        };
        let completed = crate::ledger::RequestResult::Completed {
            video_id: "video-1".into(),
            expires_at: None,
        };
        ledger.record_result(&key(0), &completed).unwrap();
        ledger.record_result(&key(1), &failed(true)).unwrap();
        ledger.record_result(&key(2), &failed(false)).unwrap();
        let lost = crate::ledger::RequestResult::Lost {
            reason: "gone".into(),
        };
        ledger.record_result(&key(3), &lost).unwrap();
        ledger.set_elsewhere(&key(4)).unwrap();
        assert_eq!(
            ledger.request(&key(2)).unwrap().unwrap().status,
            RequestStatus::Failed
        );

        let choose = |point_queries| {
            let mut report = SubmitReport::default();
            let chosen: Vec<RequestKey> =
                select_requests_with(&plan, &ledger, &store, &mut report, point_queries)
                    .unwrap()
                    .iter()
                    .map(|r| r.key)
                    .collect();
            let counts = (
                report.skipped_cached,
                report.skipped_in_flight,
                report.skipped_rejected,
            );
            (chosen, counts)
        };
        let (each, each_counts) = choose(usize::MAX);
        let (once, once_counts) = choose(0);
        assert_eq!(once, each);
        assert_eq!(once_counts, each_counts);
        // Completed and elsewhere are in flight, the rejected one is skipped; the retryable,
        // the lost and the pending are chosen, the repeated shot's two takes once.
        assert_eq!(once_counts, (0, 2, 1));
        assert_eq!(once.len(), 12 - 3);
        assert!(once.contains(&key(1)) && once.contains(&key(3)) && !once.contains(&key(2)));
    }
}
