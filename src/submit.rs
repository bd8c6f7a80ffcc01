//! `render submit`: send a plan's requests, each through its provider's lane, exactly once.
//!
//! Batch lane: upload each distinct reference once, compile the JSONL, create the batches.
//! Exactly-once rests on one rule: the ledger records the *intent* to create a batch (with a
//! random token that also travels in the batch's metadata) before the request is sent. A rerun
//! after a crash finds unconfirmed intents and looks for their token in the provider's batch
//! list before creating anything, so a batch is never created twice.
//!
//! Direct lane: the requests are put in line and the first `max_in_flight` are sent at once
//! ([`crate::lanes::direct`], the same intent-first rule); `harvest` keeps the slots full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::Serialize;

use crate::api::client::ApiClient;
use crate::api::error::ApiError;
use crate::api::retry::RetryPolicy;
use crate::api::types::{Batch, CreateBatch, CreateVideo, FilePurpose, InputReference};
use crate::batch::{self, BatchLimits, VIDEOS_ENDPOINT};
use crate::cache::LocalStore;
use crate::events::{Event, EventSink};
use crate::failpoint;
use crate::key::{RequestKey, Sha256Hex};
use crate::lanes::direct::{self, DirectError};
use crate::lanes::{Route, Routes, assets};
use crate::ledger::{
    BatchRow, BatchUpdate, Ledger, LedgerError, RequestRow, RequestStatus, RunItem, RunRow,
    unix_now,
};
use crate::outputs::cached_output;
use crate::plan::{Plan, PlannedRequest};
use crate::provider::Lane;

/// Metadata keys `render` puts on every batch it creates.
pub const META_RUN: &str = "render_run";
pub const META_INTENT: &str = "render_intent";
pub const META_PART: &str = "render_part";
pub const META_SHOT_LIST: &str = "render_shot_list";

/// How often creating one batch is attempted across transient failures.
const CREATE_ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Batch(#[from] batch::BatchError),
    #[error(transparent)]
    Asset(#[from] assets::AssetError),
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
    #[error("the provider refused batch part {part} of run {run}: {message}")]
    Refused {
        run: String,
        part: u32,
        message: String,
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
    /// Sent as direct-lane jobs by this invocation.
    pub jobs_sent: usize,
    /// Direct-lane requests waiting for a free slot (`harvest` and `nightly` send them).
    pub jobs_waiting: usize,
    pub uploaded_assets: usize,
    pub reused_assets: usize,
    pub batches: Vec<SubmittedBatch>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubmittedBatch {
    pub part: u32,
    pub batch_id: String,
    pub requests: u64,
    /// Created by an earlier, interrupted invocation and adopted now.
    pub adopted: bool,
}

/// Submits every request of `plan` that is not cached, in flight or done, each through its
/// provider's lane.
pub async fn submit(
    plan: &Plan,
    ledger: &mut Ledger,
    store: &LocalStore,
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
    let selected = select_requests(plan, ledger, store, &mut report)?;
    let rows: Vec<RequestRow> = selected.iter().map(request_row).collect();
    ledger.insert_requests(&rows)?;
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
/// rebuilt from the ledger alone: no shot list is needed.
pub async fn resubmit(
    run: &RunRow,
    requests: &[RequestRow],
    ledger: &mut Ledger,
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
    let rows: Vec<RequestRow> = requests
        .iter()
        .filter(|r| !r.status.is_in_flight_or_done())
        .cloned()
        .collect();
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
        let mut submitter = Submitter {
            run,
            ledger: &mut *ledger,
            route,
            events,
            report: &mut *report,
        };
        submitter.confirm_pending_intents(keys).await?;
        let batch: Vec<Outgoing> = mine(Lane::Batch)
            .into_iter()
            .map(Outgoing::from_row)
            .collect();
        submitter.send(&batch, limits).await?;
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

/// A request on its way out: its key, its body before the reference is resolved to a file id,
/// and the image to upload for it.
struct Outgoing {
    key: RequestKey,
    body: CreateVideo,
    reference: Option<(Sha256Hex, PathBuf)>,
}

impl Outgoing {
    fn from_row(row: &RequestRow) -> Outgoing {
        Outgoing {
            key: row.key,
            body: batch::video_body(
                row.served_as.as_deref().unwrap_or(&row.model),
                &row.size,
                row.seconds,
                &row.prompt,
            ),
            reference: row
                .reference_sha
                .zip(row.reference_path.as_ref().map(PathBuf::from)),
        }
    }

    /// The body with its reference image named by its uploaded file id.
    fn body(&self, file_ids: &HashMap<Sha256Hex, String>) -> CreateVideo {
        let mut body = self.body.clone();
        body.input_reference = self
            .reference
            .as_ref()
            .and_then(|(sha, _)| file_ids.get(sha))
            .map(|id| InputReference::FileId {
                file_id: id.clone(),
            });
        body
    }
}

/// One provider's Batch-lane submission: the ledger and route it works with, and the report.
struct Submitter<'a> {
    run: &'a RunRow,
    ledger: &'a mut Ledger,
    route: &'a Route,
    events: &'a dyn EventSink,
    report: &'a mut SubmitReport,
}

impl Submitter<'_> {
    fn client(&self) -> &ApiClient {
        &self.route.client
    }

    /// Uploads references, compiles the parts and creates one batch per part.
    async fn send(
        &mut self,
        outgoing: &[Outgoing],
        limits: BatchLimits,
    ) -> Result<(), SubmitError> {
        if outgoing.is_empty() {
            return Ok(());
        }
        let file_ids = self.upload_references(outgoing).await?;
        let parts = batch::compile(outgoing.iter().map(|o| (o.key, o.body(&file_ids))), limits)?;
        let first_part = self.ledger.next_part(&self.run.id)?;
        for (offset, part) in parts.into_iter().enumerate() {
            let number = first_part + offset as u32;
            let row = self.ledger.record_batch_intent(
                &self.run.id,
                &self.route.provider.id,
                number,
                &new_token(),
                &part.keys,
            )?;
            failpoint::hit("submit-after-intent");
            let intent = self
                .ledger
                .batch(row)?
                .expect("the intent was just recorded");
            let batch = self.create_batch(&intent, part.jsonl).await?;
            self.report.submitted += part.keys.len();
            self.report.batches.push(SubmittedBatch {
                part: number,
                batch_id: batch.id.clone(),
                requests: part.keys.len() as u64,
                adopted: false,
            });
            self.events.emit(Event::BatchCreated {
                run_id: self.run.id.clone(),
                part: number,
                batch_id: batch.id,
                requests: part.keys.len() as u64,
            });
        }
        Ok(())
    }
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

fn new_token() -> String {
    let mut token = [0u8; 12];
    rand::rng().fill_bytes(&mut token);
    hex::encode(token)
}

/// The distinct requests of the plan that need rendering, counting what is skipped and why.
fn select_requests(
    plan: &Plan,
    ledger: &Ledger,
    store: &LocalStore,
    report: &mut SubmitReport,
) -> Result<Vec<PlannedRequest>, SubmitError> {
    let mut seen = HashSet::new();
    let mut selected = Vec::new();
    for request in &plan.requests {
        // The plan's view may be stale (another process may have harvested since): ask again.
        if request.cached || cached_output(ledger, store, &request.key)?.is_some() {
            report.skipped_cached += 1;
            continue;
        }
        if !seen.insert(request.key) {
            continue;
        }
        match ledger.request(&request.key)? {
            // Harvested but not cached means the object was removed: render it again.
            Some(row) if row.status == RequestStatus::Harvested => selected.push(request.clone()),
            Some(row) if row.status.is_in_flight_or_done() => report.skipped_in_flight += 1,
            Some(row) if row.status == RequestStatus::Failed && !row.retryable => {
                report.skipped_rejected += 1
            }
            _ => selected.push(request.clone()),
        }
    }
    Ok(selected)
}

impl Submitter<'_> {
    /// Uploads each distinct reference image once, reusing earlier uploads that are still valid.
    async fn upload_references(
        &mut self,
        outgoing: &[Outgoing],
    ) -> Result<HashMap<Sha256Hex, String>, SubmitError> {
        let mut file_ids = HashMap::new();
        for (sha256, path) in outgoing.iter().filter_map(|o| o.reference.as_ref()) {
            if file_ids.contains_key(sha256) {
                continue;
            }
            let (file_id, uploaded) =
                assets::file_id(self.client(), self.ledger, self.events, *sha256, path).await?;
            if uploaded {
                self.report.uploaded_assets += 1;
            } else {
                self.report.reused_assets += 1;
            }
            file_ids.insert(*sha256, file_id);
        }
        Ok(file_ids)
    }
}

impl Submitter<'_> {
    /// Uploads the batch's input file (unless an earlier attempt did) and creates the batch,
    /// adopting one that an earlier attempt created (found by its intent token) instead of
    /// creating a second.
    async fn create_batch(
        &mut self,
        intent: &BatchRow,
        jsonl: Vec<u8>,
    ) -> Result<Batch, SubmitError> {
        let input_file_id = match &intent.input_file_id {
            Some(id) => id.clone(),
            None => {
                let filename = format!(
                    "render-{}-part{}-{}.jsonl",
                    intent.run_id, intent.part, intent.intent
                );
                let file = self
                    .client()
                    .upload_bytes(jsonl.into(), &filename, FilePurpose::Batch)
                    .await?;
                self.ledger.set_batch_input_file(intent.row, &file.id)?;
                file.id
            }
        };
        // File names only: the provider has no business with this machine's folders.
        let shot_list = match self.ledger.run(&intent.run_id)? {
            Some(run) => run
                .sources
                .iter()
                .map(|source| {
                    Path::new(source).file_name().map_or_else(
                        || source.clone(),
                        |name| name.to_string_lossy().into_owned(),
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
            None => String::new(),
        };
        let request = CreateBatch {
            input_file_id,
            endpoint: VIDEOS_ENDPOINT.into(),
            completion_window: "24h".into(),
            metadata: Some(batch_metadata(intent, &shot_list)),
        };
        let mut attempt = 0;
        let batch = loop {
            attempt += 1;
            if let Some(existing) = find_batch_by_intent(self.client(), intent).await? {
                break existing;
            }
            // Never retried blindly: a lost answer may hide a created batch, so look first.
            match self.client().without_retries().create_batch(&request).await {
                Ok(batch) => break batch,
                Err(err) if err.is_transient() && attempt < CREATE_ATTEMPTS => {
                    tracing::warn!(
                        part = intent.part,
                        attempt,
                        "creating batch failed, will check and retry: {err}"
                    );
                    tokio::time::sleep(RetryPolicy::default().delay(attempt, None)).await;
                }
                Err(err) if err.is_refusal() => {
                    // One last look: an earlier attempt whose answer was lost may have made it.
                    if let Some(existing) = find_batch_by_intent(self.client(), intent).await? {
                        break existing;
                    }
                    self.ledger
                        .abandon_batch_intent(intent.row, &err.to_string())?;
                    return Err(SubmitError::Refused {
                        run: intent.run_id.clone(),
                        part: intent.part,
                        message: err.to_string(),
                    });
                }
                Err(err) => return Err(err.into()),
            }
        };
        failpoint::hit("submit-after-create");
        self.ledger
            .record_batch_created(intent.row, &batch.id, &BatchUpdate::from(&batch))?;
        Ok(batch)
    }

    /// Finishes what an interrupted invocation started: every recorded intent ends as exactly
    /// one batch (adopted if the provider has it, created otherwise).
    async fn confirm_pending_intents(
        &mut self,
        keys: &HashSet<RequestKey>,
    ) -> Result<(), SubmitError> {
        let provider = &self.route.provider.id;
        let mut mine = Vec::new();
        for intent in self.ledger.unconfirmed_batches()? {
            let holds_ours = intent.run_id == self.run.id
                || self
                    .ledger
                    .batch_requests(intent.row)?
                    .iter()
                    .any(|r| keys.contains(&r.key));
            if intent.provider == *provider && holds_ours {
                mine.push(intent);
            }
        }
        for intent in mine {
            let batch = match find_batch_by_intent(self.client(), &intent).await? {
                Some(batch) => {
                    self.ledger.record_batch_created(
                        intent.row,
                        &batch.id,
                        &BatchUpdate::from(&batch),
                    )?;
                    batch
                }
                None => {
                    let jsonl = match intent.input_file_id {
                        Some(_) => Vec::new(),
                        None => self.rebuild_jsonl(&intent).await?,
                    };
                    self.create_batch(&intent, jsonl).await?
                }
            };
            self.events.emit(Event::BatchAdopted {
                run_id: intent.run_id.clone(),
                part: intent.part,
                batch_id: batch.id.clone(),
            });
            self.report.batches.push(SubmittedBatch {
                part: intent.part,
                batch_id: batch.id,
                requests: intent.request_count,
                adopted: true,
            });
        }
        Ok(())
    }

    /// Recompiles an intent's input file from the ledger (same requests, same order).
    async fn rebuild_jsonl(&mut self, intent: &BatchRow) -> Result<Vec<u8>, SubmitError> {
        let rows = self.ledger.batch_requests(intent.row)?;
        let outgoing: Vec<Outgoing> = rows.iter().map(Outgoing::from_row).collect();
        let file_ids = self.upload_references(&outgoing).await?;
        let one_file = BatchLimits {
            max_requests: usize::MAX,
            max_bytes: u64::MAX,
        };
        let parts = batch::compile(
            outgoing.iter().map(|o| (o.key, o.body(&file_ids))),
            one_file,
        )?;
        Ok(parts.into_iter().flat_map(|p| p.jsonl).collect())
    }
}

fn batch_metadata(intent: &BatchRow, shot_list: &str) -> BTreeMap<String, String> {
    // The API caps metadata values at 512 characters.
    let shot_list: String = shot_list.chars().take(512).collect();
    BTreeMap::from([
        (META_RUN.to_string(), intent.run_id.clone()),
        (META_INTENT.to_string(), intent.intent.clone()),
        (META_PART.to_string(), intent.part.to_string()),
        (META_SHOT_LIST.to_string(), shot_list),
    ])
}

/// Looks through the provider's batches created since the intent for one carrying its token.
async fn find_batch_by_intent(
    client: &ApiClient,
    intent: &BatchRow,
) -> Result<Option<Batch>, SubmitError> {
    // Clocks differ between machines; a day of slack costs a few list pages at most.
    let since = intent.intent_at - 24 * 3600;
    let mut after: Option<String> = None;
    loop {
        // Newest first: stop at the first page that reaches back before the intent.
        let page = client.list_batches(after.as_deref(), Some(100)).await?;
        // The token in the metadata, or the input file uploaded for this intent alone: a
        // gateway that drops metadata must not make `render` create the batch twice.
        let found = page.data.iter().find(|b| {
            let token = b.metadata.as_ref().and_then(|m| m.get(META_INTENT));
            token.is_some_and(|token| *token == intent.intent)
                || intent.input_file_id.as_deref() == Some(b.input_file_id.as_str())
        });
        if let Some(batch) = found {
            return Ok(Some(batch.clone()));
        }
        let reached_older = page.data.iter().any(|b| b.created_at < since);
        let next = page.data.last().map(|b| b.id.clone());
        match next {
            Some(next) if page.has_more && !reached_older && after.as_ref() != Some(&next) => {
                after = Some(next)
            }
            _ => return Ok(None),
        }
    }
}

fn request_row(request: &PlannedRequest) -> RequestRow {
    RequestRow {
        key: request.key,
        shot_id: request.shot_id.clone(),
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
    store: &LocalStore,
    limits: BatchLimits,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, usize)>, SubmitError> {
    let selected = select_requests(plan, ledger, store, &mut SubmitReport::default())?;
    // Only the Batch lane has files to write; direct jobs are sent one by one.
    let outgoing: Vec<Outgoing> = selected
        .iter()
        .filter(|r| r.lane == Lane::Batch)
        .map(|r| Outgoing::from_row(&request_row(r)))
        .collect();
    let mut file_ids = HashMap::new();
    for (sha256, _) in outgoing.iter().filter_map(|o| o.reference.as_ref()) {
        if !file_ids.contains_key(sha256) {
            let known = ledger.asset(sha256)?.map(|a| a.file_id);
            let placeholder = || format!("file-pending-{}", &sha256.hex()[..16]);
            file_ids.insert(*sha256, known.unwrap_or_else(placeholder));
        }
    }
    let bodies = outgoing.iter().map(|o| (o.key, o.body(&file_ids)));
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
