//! `render submit`: upload each distinct reference once, compile the JSONL, create the batches,
//! exactly once.
//!
//! Exactly-once rests on one rule: the ledger records the *intent* to create a batch (with a
//! random token that also travels in the batch's metadata) before the request is sent. A rerun
//! after a crash finds unconfirmed intents and looks for their token in the provider's batch
//! list before creating anything, so a batch is never created twice.

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
use crate::ledger::{
    AssetRow, BatchRow, BatchUpdate, Ledger, LedgerError, RequestRow, RequestStatus, RunItem,
    RunRow, unix_now,
};
use crate::outputs::cached_output;
use crate::plan::{Plan, PlannedRequest};

/// Metadata keys `render` puts on every batch it creates.
pub const META_RUN: &str = "render_run";
pub const META_INTENT: &str = "render_intent";
pub const META_PART: &str = "render_part";
pub const META_SHOT_LIST: &str = "render_shot_list";

/// A reference upload is reused while it has at least this long to live.
const ASSET_MIN_REMAINING_SECS: i64 = 2 * 24 * 3600;
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
    #[error("cannot read reference image {path}: {source}")]
    Reference {
        path: String,
        source: std::io::Error,
    },
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

#[derive(Clone, Debug)]
pub struct SubmitOptions {
    pub limits: BatchLimits,
    /// The API host: part of every key, and recorded with the run.
    pub provider: String,
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

/// Submits every request of `plan` that is not cached, in flight or done.
pub async fn submit(
    plan: &Plan,
    ledger: &mut Ledger,
    store: &LocalStore,
    client: &ApiClient,
    options: &SubmitOptions,
    events: &dyn EventSink,
) -> Result<SubmitReport, SubmitError> {
    let (run, resumed) = open_run(plan, ledger, &options.provider)?;
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
    report.batches = confirm_pending_intents(ledger, client, events).await?;

    let selected = select_requests(plan, ledger, store, &mut report)?;
    ledger.insert_requests(&selected.iter().map(request_row).collect::<Vec<_>>())?;
    send(
        &run,
        &selected,
        ledger,
        client,
        options,
        events,
        &mut report,
    )
    .await?;
    Ok(report)
}

/// Resubmits the given requests (failed-but-retryable or lost ones) through the same path.
pub async fn resubmit(
    run: &RunRow,
    requests: &[RequestRow],
    ledger: &mut Ledger,
    client: &ApiClient,
    options: &SubmitOptions,
    events: &dyn EventSink,
) -> Result<SubmitReport, SubmitError> {
    let mut report = SubmitReport {
        run_id: run.id.clone(),
        resumed: true,
        requests: requests.len(),
        ..SubmitReport::default()
    };
    report.batches = confirm_pending_intents(ledger, client, events).await?;
    let planned: Vec<PlannedRequest> = requests
        .iter()
        .filter(|r| !r.status.is_in_flight_or_done())
        .map(planned_from_row)
        .collect();
    send(run, &planned, ledger, client, options, events, &mut report).await?;
    Ok(report)
}

async fn send(
    run: &RunRow,
    selected: &[PlannedRequest],
    ledger: &mut Ledger,
    client: &ApiClient,
    options: &SubmitOptions,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<(), SubmitError> {
    if selected.is_empty() {
        return Ok(());
    }
    let file_ids = upload_references(selected, ledger, client, events, report).await?;
    let bodies = selected
        .iter()
        .map(|r| (r.key, body_with_asset(r, &file_ids)));
    let parts = batch::compile(bodies, options.limits)?;
    let shot_list = run.sources.join(",");
    let first_part = ledger.batches_of_run(&run.id)?.len() as u32 + 1;
    for (offset, part) in parts.into_iter().enumerate() {
        let number = first_part + offset as u32;
        let intent = new_token();
        let row = ledger.record_batch_intent(&run.id, number, &intent, &part.keys)?;
        failpoint::hit("submit-after-intent");
        let intent_row = BatchRow {
            row,
            run_id: run.id.clone(),
            part: number,
            intent,
            intent_at: unix_now(),
            input_file_id: None,
            batch_id: None,
            status: "intent".into(),
            request_count: part.keys.len() as u64,
            ..blank_batch_row()
        };
        let batch = create_batch(&intent_row, part.jsonl, &shot_list, ledger, client).await?;
        report.submitted += part.keys.len();
        report.batches.push(SubmittedBatch {
            part: number,
            batch_id: batch.id.clone(),
            requests: part.keys.len() as u64,
            adopted: false,
        });
        events.emit(Event::BatchCreated {
            run_id: run.id.clone(),
            part: number,
            batch_id: batch.id,
            requests: part.keys.len() as u64,
        });
    }
    Ok(())
}

/// The run this plan continues (an unfinished run of the same plan), or a new one.
fn open_run(
    plan: &Plan,
    ledger: &mut Ledger,
    provider: &str,
) -> Result<(RunRow, bool), SubmitError> {
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
        provider: provider.to_string(),
        out_dir: None,
        done: false,
    };
    let items: Vec<RunItem> = plan
        .requests
        .iter()
        .map(|r| RunItem {
            shot_id: r.shot_id.clone(),
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
        .map(|r| format!("{}\t{}\t{}", r.shot_id, r.take, r.key))
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

/// Uploads each distinct reference image once, reusing earlier uploads that are still valid.
async fn upload_references(
    requests: &[PlannedRequest],
    ledger: &Ledger,
    client: &ApiClient,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<HashMap<Sha256Hex, String>, SubmitError> {
    let mut file_ids = HashMap::new();
    let now = unix_now();
    for reference in requests.iter().filter_map(|r| r.reference.as_ref()) {
        if file_ids.contains_key(&reference.sha256) {
            continue;
        }
        if let Some(asset) = ledger.asset(&reference.sha256)? {
            let fresh = asset
                .expires_at
                .is_none_or(|t| t - now > ASSET_MIN_REMAINING_SECS);
            if fresh {
                events.emit(Event::AssetReused {
                    sha256: reference.sha256.hex(),
                    file_id: asset.file_id.clone(),
                });
                report.reused_assets += 1;
                file_ids.insert(reference.sha256, asset.file_id);
                continue;
            }
        }
        let file = upload_reference(client, &reference.path, reference.sha256).await?;
        ledger.record_asset(&AssetRow {
            sha256: reference.sha256,
            file_id: file.id.clone(),
            bytes: file.bytes,
            uploaded_at: file.created_at,
            expires_at: file.expires_at,
        })?;
        events.emit(Event::AssetUploaded {
            sha256: reference.sha256.hex(),
            file_id: file.id.clone(),
            bytes: file.bytes,
        });
        report.uploaded_assets += 1;
        file_ids.insert(reference.sha256, file.id);
    }
    Ok(file_ids)
}

async fn upload_reference(
    client: &ApiClient,
    path: &Path,
    sha256: Sha256Hex,
) -> Result<crate::api::types::FileObject, SubmitError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(SubmitError::Reference {
            path: path.display().to_string(),
            source,
        });
    }
    // Named by content so the provider's file list shows what each upload is.
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("img");
    let filename = format!("{}.{extension}", &sha256.hex()[..16]);
    Ok(client
        .upload_file(path, &filename, FilePurpose::Vision)
        .await?)
}

fn body_with_asset(request: &PlannedRequest, file_ids: &HashMap<Sha256Hex, String>) -> CreateVideo {
    let file_id = request
        .reference
        .as_ref()
        .and_then(|r| file_ids.get(&r.sha256))
        .map(String::as_str);
    batch::video_body(request, file_id)
}

/// Uploads the batch's input file and creates the batch, adopting one that an earlier attempt
/// created (found by its intent token) instead of creating a second.
async fn create_batch(
    intent: &BatchRow,
    jsonl: Vec<u8>,
    shot_list: &str,
    ledger: &mut Ledger,
    client: &ApiClient,
) -> Result<Batch, SubmitError> {
    let input_file_id = match &intent.input_file_id {
        Some(id) => id.clone(),
        None => {
            let filename = format!(
                "render-{}-part{}-{}.jsonl",
                intent.run_id, intent.part, intent.intent
            );
            let file = client
                .upload_bytes(jsonl.into(), &filename, FilePurpose::Batch)
                .await?;
            ledger.set_batch_input_file(intent.row, &file.id)?;
            file.id
        }
    };
    let request = CreateBatch {
        input_file_id,
        endpoint: VIDEOS_ENDPOINT.into(),
        completion_window: "24h".into(),
        metadata: Some(batch_metadata(intent, shot_list)),
    };
    let mut attempt = 0;
    let batch = loop {
        attempt += 1;
        if let Some(existing) = find_batch_by_intent(client, intent).await? {
            break existing;
        }
        match client.without_retries().create_batch(&request).await {
            Ok(batch) => break batch,
            Err(err) if err.is_transient() && attempt < CREATE_ATTEMPTS => {
                // The batch may exist even though the answer was lost: the next loop looks first.
                tracing::warn!(
                    part = intent.part,
                    attempt,
                    "creating batch failed, will check and retry: {err}"
                );
                tokio::time::sleep(RetryPolicy::default().delay(attempt, None)).await;
            }
            Err(err) if err.status().is_some_and(|s| (400..500).contains(&s)) => {
                ledger.abandon_batch_intent(intent.row, &err.to_string())?;
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
    ledger.record_batch_created(intent.row, &batch.id, &batch_update(&batch))?;
    Ok(batch)
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
        let found = page.data.iter().find(|b| {
            b.metadata
                .as_ref()
                .and_then(|m| m.get(META_INTENT))
                .is_some_and(|token| *token == intent.intent)
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

/// Finishes what an interrupted invocation started: every recorded intent ends as exactly one
/// batch (adopted if the provider has it, created otherwise).
async fn confirm_pending_intents(
    ledger: &mut Ledger,
    client: &ApiClient,
    events: &dyn EventSink,
) -> Result<Vec<SubmittedBatch>, SubmitError> {
    let mut confirmed = Vec::new();
    for intent in ledger.unconfirmed_batches()? {
        let run = ledger.run(&intent.run_id)?;
        let shot_list = run.map(|r| r.sources.join(",")).unwrap_or_default();
        let batch = match find_batch_by_intent(client, &intent).await? {
            Some(batch) => {
                ledger.record_batch_created(intent.row, &batch.id, &batch_update(&batch))?;
                batch
            }
            None => {
                let jsonl = rebuild_jsonl(&intent, ledger, client, events).await?;
                create_batch(&intent, jsonl, &shot_list, ledger, client).await?
            }
        };
        events.emit(Event::BatchAdopted {
            run_id: intent.run_id.clone(),
            part: intent.part,
            batch_id: batch.id.clone(),
        });
        confirmed.push(SubmittedBatch {
            part: intent.part,
            batch_id: batch.id,
            requests: intent.request_count,
            adopted: true,
        });
    }
    Ok(confirmed)
}

/// Recompiles an intent's input file from the ledger (same requests, same order).
async fn rebuild_jsonl(
    intent: &BatchRow,
    ledger: &Ledger,
    client: &ApiClient,
    events: &dyn EventSink,
) -> Result<Vec<u8>, SubmitError> {
    let rows = ledger.batch_requests(intent.row)?;
    let planned: Vec<PlannedRequest> = rows.iter().map(planned_from_row).collect();
    let mut scratch = SubmitReport::default();
    let file_ids = upload_references(&planned, ledger, client, events, &mut scratch).await?;
    let bodies = planned
        .iter()
        .map(|r| (r.key, body_with_asset(r, &file_ids)));
    let limits = BatchLimits {
        max_requests: usize::MAX,
        max_bytes: u64::MAX,
    };
    Ok(batch::compile(bodies, limits)?
        .into_iter()
        .flat_map(|p| p.jsonl)
        .collect())
}

/// The ledger's view of a batch the API described.
pub fn batch_update(batch: &Batch) -> BatchUpdate {
    let counts = batch.request_counts.unwrap_or_default();
    let error = batch.errors.as_ref().and_then(|e| {
        let messages: Vec<String> = e
            .data
            .iter()
            .map(|item| {
                let line = item.line.map(|l| format!("line {l}: ")).unwrap_or_default();
                format!("{line}{}", item.message.clone().unwrap_or_default())
            })
            .collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    });
    BatchUpdate {
        status: batch.status.as_str().to_string(),
        completed: counts.completed,
        failed: counts.failed,
        created_at: Some(batch.created_at),
        expires_at: batch.expires_at,
        completed_at: batch.completed_at,
        output_file_id: batch.output_file_id.clone(),
        error_file_id: batch.error_file_id.clone(),
        error,
    }
}

fn request_row(request: &PlannedRequest) -> RequestRow {
    RequestRow {
        key: request.key,
        shot_id: request.shot_id.clone(),
        model: request.model.to_string(),
        size: request.size.to_string(),
        seconds: request.seconds.0,
        prompt: request.prompt.clone(),
        reference_sha: request.reference.as_ref().map(|r| r.sha256),
        reference_path: request
            .reference
            .as_ref()
            .map(|r| r.path.display().to_string()),
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

/// Rebuilds a request from the ledger alone (retry and crash recovery need no shot list).
fn planned_from_row(row: &RequestRow) -> PlannedRequest {
    let reference = row.reference_sha.map(|sha256| crate::plan::Reference {
        path: PathBuf::from(row.reference_path.clone().unwrap_or_default()),
        sha256,
        mime: match row.reference_mime.as_deref() {
            Some("image/png") => "image/png",
            Some("image/webp") => "image/webp",
            _ => "image/jpeg",
        },
        bytes: 0,
    });
    PlannedRequest {
        shot_id: row.shot_id.clone(),
        take: 1,
        takes: 1,
        model: crate::catalog::Model(row.model.clone()),
        size: row.size.parse().unwrap_or(crate::catalog::Size {
            width: 0,
            height: 0,
        }),
        seconds: crate::catalog::Seconds(row.seconds),
        prompt: row.prompt.clone(),
        reference,
        tags: Vec::new(),
        key: row.key,
        cost: row.cost,
        standard_cost: row.cost,
        cached: false,
        source: PathBuf::new(),
    }
}

fn blank_batch_row() -> BatchRow {
    BatchRow {
        row: 0,
        run_id: String::new(),
        part: 0,
        intent: String::new(),
        intent_at: 0,
        input_file_id: None,
        batch_id: None,
        status: String::new(),
        request_count: 0,
        completed: 0,
        failed: 0,
        created_at: None,
        expires_at: None,
        completed_at: None,
        output_file_id: None,
        error_file_id: None,
        results_read: false,
        harvested: false,
        error: None,
    }
}

/// Writes the JSONL files `submit` would upload, without uploading anything (`--dry-run`).
/// Reference images not uploaded yet are named by a placeholder id.
pub fn dry_run(
    plan: &Plan,
    ledger: Option<&Ledger>,
    limits: BatchLimits,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, usize)>, SubmitError> {
    let mut seen = HashSet::new();
    let mut bodies: Vec<(RequestKey, CreateVideo)> = Vec::new();
    for request in plan.requests.iter().filter(|r| !r.cached) {
        if !seen.insert(request.key) {
            continue;
        }
        if let Some(ledger) = ledger
            && ledger.request(&request.key)?.is_some_and(|row| {
                row.status.is_in_flight_or_done() && row.status != RequestStatus::Harvested
            })
        {
            continue;
        }
        let mut body = batch::video_body(request, None);
        if let Some(reference) = &request.reference {
            let known = match ledger {
                Some(l) => l.asset(&reference.sha256)?.map(|a| a.file_id),
                None => None,
            };
            let file_id =
                known.unwrap_or_else(|| format!("file-pending-{}", &reference.sha256.hex()[..16]));
            body.input_reference = Some(InputReference::FileId { file_id });
        }
        bodies.push((request.key, body));
    }
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
