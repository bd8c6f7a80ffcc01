//! A run's standing: what the ledger knows, refreshed by asking each provider about the run's
//! open batches and jobs. Asking changes nothing (the next harvest records what it finds); a
//! provider that cannot be asked leaves its part "as of the last harvest", and says why.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::lanes::Routes;
use crate::ledger::{
    BatchRow, JobRow, Ledger, LedgerError, RequestRow, RequestStatus, RunRow, unix_now,
};
use crate::provider::Lane;
use render_wire::api::{Batch, BatchStatus as ApiBatchStatus};

/// How long one question to a provider may take before its answer is given up for this look.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// Questions in flight at once, across the run's batches and jobs.
const ASKS_IN_FLIGHT: usize = 8;

#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub run_id: String,
    pub project: Option<String>,
    pub created_at: i64,
    pub done: bool,
    pub cancelled: bool,
    pub sources: Vec<String>,
    pub requests: usize,
    pub counts: Counts,
    /// How many of the run's requests stand at each ledger status.
    pub by_status: BTreeMap<&'static str, usize>,
    /// `live` when every open batch and job was asked just now, else `as_of_last_harvest`.
    pub freshness: Freshness,
    /// Why some provider could not be asked (its part is as of the last harvest).
    pub not_asked: Vec<String>,
    /// Seconds until the first video not yet downloaded is deleted, by the provider's clock.
    pub expires_in: Option<i64>,
    pub batches: Vec<BatchStatus>,
    pub jobs: Vec<JobStatus>,
    /// Every request, with `--shots`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shots: Option<Vec<ShotStatus>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub harvested: usize,
    pub failed: usize,
    pub lost: usize,
    /// Everything not yet settled: being sent, rendering, waiting for download, or rendering on
    /// another machine of the studio.
    pub pending: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    Live,
    AsOfLastHarvest,
}

#[derive(Clone, Debug, Serialize)]
pub struct BatchStatus {
    pub provider: String,
    pub part: u32,
    pub batch_id: Option<String>,
    pub status: String,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    /// Seconds until the provider deletes the batch's videos (by the provider's clock).
    pub outputs_expire_in: Option<i64>,
    pub harvested: bool,
    /// Whether `status` and the counts are the provider's answer just now.
    pub live: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub shot_id: String,
    pub provider: String,
    pub video_id: Option<String>,
    /// `intent` (sent, not yet confirmed) or the server's word (`queued`, `in_progress`).
    pub status: String,
    pub progress: Option<u32>,
    pub live: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShotStatus {
    pub shot_id: String,
    pub take: u32,
    pub provider: String,
    pub lane: Lane,
    /// `harvested`, `failed`, `lost`, `cancelled`, `not sent`, `sending`, `rendering`,
    /// `rendered` (waiting for its download) or `elsewhere` (another machine renders it).
    pub status: &'static str,
    pub progress: Option<u32>,
    pub cost_usd: render_wire::money::Usd,
    /// Seconds left: before its video is deleted (rendered, not yet downloaded), or before its
    /// batch's window closes (rendering).
    pub deadline_in: Option<i64>,
    pub reason: Option<String>,
}

/// What a provider said just now, by ledger row.
#[derive(Default)]
struct Answers {
    batches: HashMap<i64, (Batch, i64)>,
    jobs: HashMap<i64, (render_wire::api::Video, i64)>,
    not_asked: Vec<String>,
    unanswered: usize,
}

/// The run's standing, asking the providers of `routes` about whatever is still open.
pub async fn look(
    run: &RunRow,
    ledger: &Ledger,
    routes: &Routes,
    with_shots: bool,
) -> Result<RunStatus, LedgerError> {
    let items = ledger.run_items(&run.id)?;
    let requests: HashMap<_, _> = ledger
        .requests_of_run(&run.id)?
        .into_iter()
        .map(|request| (request.key, request))
        .collect();
    let batches = ledger.batches_of_run(&run.id)?;
    let jobs: Vec<JobRow> = ledger
        .open_jobs()?
        .into_iter()
        .filter(|j| requests.contains_key(&j.key))
        .collect();
    let answers = ask(routes, &batches, &jobs).await;
    let now = unix_now();

    let mut counts = Counts::default();
    let mut by_status = BTreeMap::new();
    for item in &items {
        let status = requests.get(&item.key).map(|r| r.status);
        *by_status
            .entry(status.map_or("pending", RequestStatus::as_str))
            .or_insert(0) += 1;
        match status {
            Some(RequestStatus::Harvested) => counts.harvested += 1,
            Some(RequestStatus::Failed) => counts.failed += 1,
            Some(RequestStatus::Lost) => counts.lost += 1,
            _ => counts.pending += 1,
        }
    }
    let batch_statuses: Vec<BatchStatus> = batches
        .iter()
        .map(|b| batch_status(b, answers.batches.get(&b.row), now))
        .collect();
    let job_statuses: Vec<JobStatus> = jobs
        .iter()
        .map(|j| job_status(j, answers.jobs.get(&j.row), &requests))
        .collect();
    let shots = with_shots.then(|| {
        items
            .iter()
            .map(|item| {
                let request = requests.get(&item.key);
                let batch = request
                    .and_then(|r| r.batch_row)
                    .and_then(|row| batches.iter().position(|b| b.row == row))
                    .map(|i| (&batches[i], &batch_statuses[i]));
                let job = request
                    .and_then(|r| r.job_row)
                    .and_then(|row| jobs.iter().position(|j| j.row == row))
                    .map(|i| &job_statuses[i]);
                ShotStatus {
                    shot_id: item.shot_id.clone(),
                    take: item.take,
                    provider: item
                        .provider
                        .clone()
                        .unwrap_or_else(|| run.provider.clone()),
                    lane: item.lane,
                    status: shot_word(request, run.cancelled, batch.map(|b| b.1), job),
                    progress: job.and_then(|j| j.progress),
                    cost_usd: item.cost,
                    deadline_in: request.and_then(|r| shot_deadline(r, batch, now)),
                    reason: request
                        .filter(|r| matches!(r.status, RequestStatus::Failed | RequestStatus::Lost))
                        .and_then(|r| r.error_message.clone()),
                }
            })
            .collect()
    });
    let expires_in = first_expiry(&batch_statuses, &requests, &answers, now);
    let freshness = if answers.not_asked.is_empty() && answers.unanswered == 0 {
        Freshness::Live
    } else {
        Freshness::AsOfLastHarvest
    };
    Ok(RunStatus {
        run_id: run.id.clone(),
        project: run.project.clone(),
        created_at: run.created_at,
        done: run.done,
        cancelled: run.cancelled,
        sources: run.sources.clone(),
        requests: items.len(),
        counts,
        by_status,
        freshness,
        not_asked: answers.not_asked,
        expires_in,
        batches: batch_statuses,
        jobs: job_statuses,
        shots,
    })
}

/// Asks each provider about the open batches and jobs, a few at a time, each question bounded.
async fn ask(routes: &Routes, batches: &[BatchRow], jobs: &[JobRow]) -> Answers {
    enum Question<'a> {
        Batch(&'a BatchRow, &'a str),
        Job(&'a JobRow, &'a str),
    }
    let mut answers = Answers::default();
    let mut questions = Vec::new();
    for batch in batches.iter().filter(|b| !b.harvested) {
        if let Some(id) = batch.batch_id.as_deref() {
            questions.push((batch.provider.as_str(), Question::Batch(batch, id)));
        }
    }
    for job in jobs {
        if let Some(id) = job.video_id.as_deref() {
            questions.push((job.provider.as_str(), Question::Job(job, id)));
        }
    }
    let mut asked = Vec::new();
    for (provider, question) in questions {
        match routes.get(provider) {
            Some(route) => asked.push((route, question)),
            None => note(
                provider,
                "not configured here, or no key".into(),
                &mut answers,
            ),
        }
    }
    let replies: Vec<_> = futures_util::stream::iter(asked)
        .map(|(route, question)| async move {
            let client = route.client.without_retries();
            let reply = match question {
                Question::Batch(row, id) => {
                    let answer = tokio::time::timeout(ASK_TIMEOUT, client.get_batch(id)).await;
                    (row.row, answer.map(|r| r.map(Reply::Batch)))
                }
                Question::Job(row, id) => {
                    let answer = tokio::time::timeout(ASK_TIMEOUT, client.get_video(id)).await;
                    (row.row, answer.map(|r| r.map(Reply::Job)))
                }
            };
            let offset = client.server_now().map_or(0, |t| t - unix_now());
            (route.provider.id.clone(), reply, offset)
        })
        .buffer_unordered(ASKS_IN_FLIGHT)
        .collect()
        .await;
    for (provider, (row, reply), offset) in replies {
        match reply {
            Ok(Ok(Reply::Batch(batch))) => {
                answers.batches.insert(row, (batch, offset));
            }
            Ok(Ok(Reply::Job(video))) => {
                answers.jobs.insert(row, (video, offset));
            }
            Ok(Err(err)) => {
                answers.unanswered += 1;
                note(&provider, err.to_string(), &mut answers);
            }
            Err(_) => {
                answers.unanswered += 1;
                note(
                    &provider,
                    format!("no answer within {}s", ASK_TIMEOUT.as_secs()),
                    &mut answers,
                );
            }
        }
    }
    answers
}

/// Notes once why a provider's part could not be asked.
fn note(provider: &str, why: String, answers: &mut Answers) {
    let line = format!("{provider}: {why}");
    if !answers.not_asked.contains(&line) {
        answers.not_asked.push(line);
    }
}

enum Reply {
    Batch(Batch),
    Job(render_wire::api::Video),
}

fn batch_status(row: &BatchRow, live: Option<&(Batch, i64)>, now: i64) -> BatchStatus {
    let (status, completed, failed, ended_at, offset) = match live {
        Some((batch, offset)) => {
            let counts = batch.request_counts.unwrap_or_default();
            let ended = batch
                .completed_at
                .or(batch.cancelled_at)
                .or(batch.expired_at);
            (
                batch.status.as_str().to_string(),
                counts.completed,
                counts.failed,
                ended,
                *offset,
            )
        }
        None => (
            row.status.clone(),
            row.completed,
            row.failed,
            row.completed_at,
            row.clock_offset.unwrap_or(0),
        ),
    };
    BatchStatus {
        provider: row.provider.clone(),
        part: row.part,
        batch_id: row.batch_id.clone(),
        status,
        requests: row.request_count,
        completed,
        failed,
        outputs_expire_in: ended_at
            .map(|t| t + render_wire::api::OUTPUTS_LIFETIME_SECS - (now + offset)),
        harvested: row.harvested,
        live: live.is_some(),
    }
}

fn job_status(
    row: &JobRow,
    live: Option<&(render_wire::api::Video, i64)>,
    requests: &HashMap<render_wire::key::RequestKey, RequestRow>,
) -> JobStatus {
    let (status, progress) = match live {
        Some((video, _)) => (video.status.as_str().to_string(), video.progress),
        None => (
            row.server_status
                .clone()
                .unwrap_or_else(|| row.status.as_str().to_string()),
            row.progress,
        ),
    };
    JobStatus {
        shot_id: requests
            .get(&row.key)
            .map(|r| r.shot_id.clone())
            .unwrap_or_default(),
        provider: row.provider.clone(),
        video_id: row.video_id.clone(),
        status,
        progress,
        live: live.is_some(),
    }
}

/// One word for where a request stands, the provider's latest answer folded in.
fn shot_word(
    request: Option<&RequestRow>,
    cancelled: bool,
    batch: Option<&BatchStatus>,
    job: Option<&JobStatus>,
) -> &'static str {
    let Some(request) = request else {
        return "not sent";
    };
    match request.status {
        RequestStatus::Harvested => "harvested",
        RequestStatus::Failed => "failed",
        RequestStatus::Lost => "lost",
        RequestStatus::Elsewhere => "elsewhere",
        RequestStatus::Completed => "rendered",
        RequestStatus::Pending if cancelled => "cancelled",
        RequestStatus::Pending => "not sent",
        RequestStatus::Queued if batch.is_none() && job.is_none_or(|j| j.video_id.is_none()) => {
            "sending"
        }
        RequestStatus::Queued | RequestStatus::Submitted => {
            let finished = batch.is_some_and(|b| {
                matches!(
                    ApiBatchStatus::parse(&b.status),
                    ApiBatchStatus::Completed | ApiBatchStatus::Cancelled | ApiBatchStatus::Expired
                )
            }) || job.is_some_and(|j| j.status == "completed");
            if finished { "rendered" } else { "rendering" }
        }
    }
}

fn shot_deadline(
    request: &RequestRow,
    batch: Option<(&BatchRow, &BatchStatus)>,
    now: i64,
) -> Option<i64> {
    match request.status {
        RequestStatus::Completed => request
            .video_expires_at
            .map(|t| t - now)
            .or_else(|| batch.and_then(|(_, s)| s.outputs_expire_in)),
        RequestStatus::Submitted | RequestStatus::Queued => batch.and_then(|(row, status)| {
            status.outputs_expire_in.or_else(|| {
                row.expires_at
                    .map(|t| t - (now + row.clock_offset.unwrap_or(0)))
            })
        }),
        _ => None,
    }
}

/// The soonest deletion of a video this run has not downloaded yet.
fn first_expiry(
    batches: &[BatchStatus],
    requests: &HashMap<render_wire::key::RequestKey, RequestRow>,
    answers: &Answers,
    now: i64,
) -> Option<i64> {
    let from_batches = batches
        .iter()
        .filter(|b| !b.harvested)
        .filter_map(|b| b.outputs_expire_in);
    let from_jobs = answers
        .jobs
        .values()
        .filter_map(|(video, offset)| video.expires_at.map(|t| t - (now + offset)));
    let from_ledger = requests
        .values()
        .filter(|r| r.status == RequestStatus::Completed)
        .filter_map(|r| r.video_expires_at.map(|t| t - now));
    from_batches.chain(from_jobs).chain(from_ledger).min()
}
