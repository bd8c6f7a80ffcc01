//! The engine: moves batches and renders forward on the virtual clock.
//!
//! Every transition is stamped with the virtual time it *should* have happened at (a render
//! ends at its start plus the render time, whenever the engine notices), so jumping the clock
//! ahead or a slow tick never changes the timeline, only how soon it is observed.

mod deliver;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::batches::{self, InputLine};
use super::create;
use super::error::{ApiFailure, MODERATION_MESSAGE};
use super::media::VideoSpec;
use super::policy;
use super::state::{
    BatchLine, Job, LineOutcome, Queued, RenderResult, Running, SandboxState, Store, VideoRecord,
    lock,
};
use deliver::deliver;
use render_wire::api::{
    BatchErrors, BatchStatus, CreateVideo, OUTPUTS_LIFETIME_SECS, RequestCounts, Video, VideoError,
    VideoStatus,
};

/// How often the engine looks at the clock when nothing wakes it.
const TICK: Duration = Duration::from_millis(5);

/// Runs forever; spawn it next to the server.
pub async fn run(state: Arc<SandboxState>) {
    loop {
        tick(&state);
        tokio::select! {
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Applies every transition due at the current virtual time.
pub fn tick(state: &SandboxState) {
    let now = state.clock.now_f64();
    let mut store = lock(&state.store);
    validate_due_batches(state, &mut store, now);
    // Renders first: those that ended before a batch's deadline count even if the clock jumped
    // past it; `finish_job` expires a batch whose render would end too late.
    run_slots(state, &mut store, now);
    expire_due_batches(&mut store, now);
    settle_cancelling(&mut store, now);
    finalize_due_batches(&mut store, now);
}

/// Virtual seconds one render takes.
fn render_span(state: &SandboxState) -> f64 {
    state.clock.virtual_span(state.config.render_time)
}

/// Virtual seconds a batch spends validating: a moment, never longer than a render.
pub fn validate_span(state: &SandboxState) -> f64 {
    render_span(state).min(10.0)
}

/// Virtual seconds a batch spends finalizing: a moment, never longer than a render.
pub fn finalize_span(state: &SandboxState) -> f64 {
    render_span(state).min(30.0)
}

fn validate_due_batches(state: &SandboxState, store: &mut Store, now: f64) {
    let due: Vec<String> = store
        .batches
        .iter()
        .filter(|b| b.batch.status == BatchStatus::Validating && b.due <= now)
        .map(|b| b.batch.id.clone())
        .collect();
    for id in due {
        validate_batch(state, store, &id);
    }
}

fn validate_batch(state: &SandboxState, store: &mut Store, batch_id: &str) {
    let Some(record) = store.batches.get(batch_id) else {
        return;
    };
    let at = record.due;
    let input = store
        .files
        .get(&record.batch.input_file_id)
        .filter(|f| !f.is_gone(at as i64))
        .map(|f| f.content.clone());
    let endpoint = record.batch.endpoint.clone();
    let result = match input {
        Some(content) => batches::validate_input(&content, &endpoint, &state.config.limits),
        None => Err(vec![batches::file_error(
            "invalid_file",
            "The input file was deleted or expired before the batch started.",
        )]),
    };
    match result {
        Err(errors) => {
            let Some(record) = store.batches.get_mut(batch_id) else {
                return;
            };
            record.batch.status = BatchStatus::Failed;
            record.batch.failed_at = Some(at as i64);
            record.batch.errors = Some(BatchErrors {
                object: "list".into(),
                data: errors,
            });
        }
        Ok(lines) => start_batch(store, batch_id, lines, at),
    }
}

fn start_batch(store: &mut Store, batch_id: &str, lines: Vec<InputLine>, at: f64) {
    let lines: Vec<BatchLine> = lines
        .into_iter()
        .map(|line| BatchLine {
            custom_id: line.custom_id,
            body: line.body,
            request_id: store.new_id("req_"),
            line_id: store.new_id("batch_req_"),
            outcome: None,
        })
        .collect();
    let total = lines.len();
    for line in 0..total {
        store.queue.push_back(Queued {
            job: Job::BatchLine {
                batch_id: batch_id.to_string(),
                line,
            },
            ready_at: at,
        });
    }
    let Some(record) = store.batches.get_mut(batch_id) else {
        return;
    };
    record.lines = lines;
    record.batch.status = BatchStatus::InProgress;
    record.batch.in_progress_at = Some(at as i64);
    record.batch.request_counts = Some(RequestCounts {
        total: total as u64,
        completed: 0,
        failed: 0,
    });
    expire_if_doomed(store, batch_id, at);
}

/// A batch drawn by the `batch_expire` fault expires once half its requests are done.
fn expire_if_doomed(store: &mut Store, batch_id: &str, at: f64) {
    let Some(record) = store.batches.get(batch_id) else {
        return;
    };
    let done = record.lines.iter().filter(|l| l.outcome.is_some()).count();
    if record.doomed
        && record.batch.status == BatchStatus::InProgress
        && done >= record.lines.len() / 2
    {
        expire_batch(store, batch_id, at);
    }
}

fn expire_due_batches(store: &mut Store, now: f64) {
    let due: Vec<(String, f64)> = store
        .batches
        .iter()
        .filter(|b| {
            matches!(
                b.batch.status,
                BatchStatus::Validating | BatchStatus::InProgress
            )
        })
        .filter_map(|b| {
            let at = b.batch.expires_at? as f64;
            (at <= now).then(|| (b.batch.id.clone(), at))
        })
        .collect();
    for (id, at) in due {
        expire_batch(store, &id, at);
    }
}

/// Ends a batch that ran out of time: unfinished requests become `batch_expired` error lines,
/// finished ones are delivered as usual.
fn expire_batch(store: &mut Store, batch_id: &str, at: f64) {
    drop_jobs_of(store, batch_id, at, true);
    let Some(record) = store.batches.get_mut(batch_id) else {
        return;
    };
    for line in record.lines.iter_mut().filter(|l| l.outcome.is_none()) {
        line.outcome = Some(LineOutcome::NotRun {
            code: "batch_expired".into(),
            message: "This request could not be executed before the completion window expired."
                .into(),
        });
    }
    record.batch.status = BatchStatus::Expired;
    record.batch.expired_at = Some(at as i64);
    deliver(store, batch_id, at);
}

/// Removes a batch's queued jobs and, if `running` too, frees the slots rendering for it.
pub fn drop_jobs_of(store: &mut Store, batch_id: &str, at: f64, running: bool) {
    store.queue.retain(|q| q.job.batch_id() != Some(batch_id));
    if running {
        for index in 0..store.slots.len() {
            let slot = &store.slots[index];
            if slot.running.as_ref().and_then(|r| r.job.batch_id()) == Some(batch_id) {
                store.release(index, at);
            }
        }
    }
}

/// Starts and finishes renders in virtual-time order until nothing more is due.
fn run_slots(state: &SandboxState, store: &mut Store, now: f64) {
    loop {
        start_ready_jobs(state, store, now);
        let next = store
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.running.as_ref().map(|r| (i, r.done_at)))
            .filter(|(_, done_at)| *done_at <= now)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((index, done_at)) = next else {
            return;
        };
        if let Some(running) = store.release(index, done_at) {
            finish_job(state, store, running);
        }
    }
}

fn start_ready_jobs(state: &SandboxState, store: &mut Store, now: f64) {
    while let Some(front) = store.queue.front() {
        let free = store
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running.is_none())
            .min_by(|a, b| a.1.free_since.total_cmp(&b.1.free_since))
            .map(|(i, s)| (i, s.free_since));
        let Some((index, free_since)) = free else {
            return;
        };
        let start = free_since.max(front.ready_at);
        if start > now {
            return;
        }
        let Some(queued) = store.queue.pop_front() else {
            return;
        };
        if let Some(running) = start_job(state, store, queued.job, start) {
            store.occupy(index, running);
        }
    }
}

fn start_job(state: &SandboxState, store: &mut Store, job: Job, start: f64) -> Option<Running> {
    let span = render_span(state);
    match &job {
        Job::Video { video_id } => {
            // A deleted video still renders where `DELETE` does not abort (its job stays
            // queued; where it aborts, the job is gone already).
            let record = store.videos.get_mut(video_id)?;
            record.video.status = VideoStatus::InProgress;
            record.started_at = Some(start);
            record.done_at = Some(start + span);
            Some(Running {
                job,
                started_at: start,
                done_at: start + span,
                result: RenderResult::Existing,
            })
        }
        Job::BatchLine { batch_id, line } => {
            let record = store.batches.get(batch_id)?;
            if record.batch.status != BatchStatus::InProgress {
                return None;
            }
            if let Some(deadline) = past_deadline(record, start) {
                let batch_id = batch_id.clone();
                expire_batch(store, &batch_id, deadline);
                return None;
            }
            let body = record.lines.get(*line)?.body.clone();
            let result = match prepare_line(state, store, &body) {
                Ok((video_id, spec, model)) => RenderResult::NewVideo {
                    video_id,
                    spec: Box::new(spec),
                    model,
                },
                Err(failure) => RenderResult::Rejected {
                    status: failure.status.as_u16(),
                    error: *failure.error,
                },
            };
            let done_at = match result {
                RenderResult::Rejected { .. } => start,
                _ => start + span,
            };
            Some(Running {
                job,
                started_at: start,
                done_at,
                result,
            })
        }
    }
}

/// Checks a batch line's body like `POST /videos` would, and names the video it will make.
fn prepare_line(
    state: &SandboxState,
    store: &mut Store,
    body: &serde_json::Value,
) -> Result<(String, VideoSpec, String), ApiFailure> {
    let request: CreateVideo = serde_json::from_value(body.clone())
        .map_err(|e| ApiFailure::invalid(None, None, format!("Invalid request body: {e}")))?;
    let now = state.clock.now();
    let accepted = policy::check_request(&request, &state.config.catalog, |file_id| {
        file_bytes(store, file_id, now)
    })?;
    let video_id = store.new_id("video_");
    let spec = create::video_spec(
        state,
        &video_id,
        accepted.prompt,
        accepted.size,
        accepted.seconds,
    );
    Ok((video_id, spec, accepted.model))
}

/// The bytes of a live file, for `input_reference.file_id`.
pub fn file_bytes(store: &Store, file_id: &str, now: i64) -> Option<Bytes> {
    store
        .files
        .get(file_id)
        .filter(|f| !f.is_gone(now))
        .map(|f| f.content.clone())
}

fn finish_job(state: &SandboxState, store: &mut Store, running: Running) {
    match running.job {
        Job::Video { video_id } => finish_video(state, store, &video_id, running.done_at),
        Job::BatchLine { batch_id, line } => {
            if let Some(deadline) = store
                .batches
                .get(&batch_id)
                .and_then(|b| past_deadline(b, running.done_at))
            {
                expire_batch(store, &batch_id, deadline);
                return;
            }
            let outcome = line_outcome(
                state,
                store,
                &batch_id,
                running.result,
                running.started_at,
                running.done_at,
            );
            record_line(store, &batch_id, line, outcome, running.done_at);
        }
    }
}

/// The batch's deadline if `at` is past it.
fn past_deadline(record: &super::state::BatchRecord, at: f64) -> Option<f64> {
    let deadline = record.batch.expires_at? as f64;
    (at > deadline).then_some(deadline)
}

fn finish_video(state: &SandboxState, store: &mut Store, video_id: &str, at: f64) {
    let moderated = lock(&state.faults).moderation_rejects();
    if moderated {
        state.count_fault("moderation");
    }
    let Some(record) = store.videos.get_mut(video_id) else {
        return;
    };
    if moderated {
        record.video.status = VideoStatus::Failed;
        record.video.error = Some(VideoError {
            code: "moderation_blocked".into(),
            message: MODERATION_MESSAGE.into(),
        });
    } else {
        record.video.status = VideoStatus::Completed;
        record.video.progress = Some(100);
        record.video.completed_at = Some(at as i64);
        // Only OpenAI's service closes the download window; a self-hosted server keeps files.
        if state.profile.renders_at_openai {
            record.video.expires_at = Some(at as i64 + OUTPUTS_LIFETIME_SECS);
        }
    }
}

fn line_outcome(
    state: &SandboxState,
    store: &mut Store,
    batch_id: &str,
    result: RenderResult,
    started_at: f64,
    at: f64,
) -> LineOutcome {
    let (video_id, spec, model) = match result {
        RenderResult::Rejected { status, error } => return LineOutcome::Failed { status, error },
        RenderResult::Existing => return unreachable_outcome(),
        RenderResult::NewVideo {
            video_id,
            spec,
            model,
        } => (video_id, spec, model),
    };
    let (fails, moderated) = {
        let mut faults = lock(&state.faults);
        let fails = faults.batch_request_fails();
        (fails, !fails && faults.moderation_rejects())
    };
    if fails {
        state.count_fault("batch_request_failure");
        let failure = ApiFailure::server_error(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        return LineOutcome::Failed {
            status: 500,
            error: *failure.error,
        };
    }
    if moderated {
        state.count_fault("moderation");
        let failure = ApiFailure::moderation_blocked();
        return LineOutcome::Failed {
            status: 400,
            error: *failure.error,
        };
    }
    let video = Video {
        id: video_id.clone(),
        object: "video".into(),
        status: VideoStatus::Completed,
        progress: Some(100),
        model: Some(model),
        prompt: Some(spec.prompt.clone()),
        size: Some(spec.size.to_string()),
        seconds: Some(spec.seconds.to_string()),
        created_at: started_at as i64,
        completed_at: Some(at as i64),
        expires_at: Some(at as i64 + OUTPUTS_LIFETIME_SECS),
        error: None,
        remixed_from_video_id: None,
    };
    store.videos.insert(
        video_id.clone(),
        VideoRecord {
            video,
            spec: *spec,
            batch_id: Some(batch_id.to_string()),
            deleted: false,
            started_at: Some(started_at),
            done_at: Some(at),
        },
    );
    lock(&state.stats).videos_created += 1;
    LineOutcome::Video { video_id }
}

/// Direct videos never run as batch lines; answer as a server error rather than panic.
fn unreachable_outcome() -> LineOutcome {
    let failure = ApiFailure::server_error(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    LineOutcome::Failed {
        status: 500,
        error: *failure.error,
    }
}

fn record_line(store: &mut Store, batch_id: &str, line: usize, outcome: LineOutcome, at: f64) {
    let Some(record) = store.batches.get_mut(batch_id) else {
        return;
    };
    let Some(slot) = record.lines.get_mut(line) else {
        return;
    };
    let counts = record
        .batch
        .request_counts
        .get_or_insert_with(RequestCounts::default);
    match &outcome {
        LineOutcome::Video { .. } => counts.completed += 1,
        LineOutcome::Failed { .. } | LineOutcome::NotRun { .. } => counts.failed += 1,
    }
    slot.outcome = Some(outcome);
    let all_done = record.lines.iter().all(|l| l.outcome.is_some());
    if all_done && record.batch.status == BatchStatus::InProgress {
        record.batch.status = BatchStatus::Finalizing;
        record.batch.finalizing_at = Some(at as i64);
        record.due = at + record.finalize_span;
        return;
    }
    expire_if_doomed(store, batch_id, at);
}

fn settle_cancelling(store: &mut Store, now: f64) {
    let cancelling: Vec<String> = store
        .batches
        .iter()
        .filter(|b| b.batch.status == BatchStatus::Cancelling)
        .map(|b| b.batch.id.clone())
        .collect();
    for id in cancelling {
        let busy = store
            .slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .any(|r| r.job.batch_id() == Some(id.as_str()));
        if busy {
            continue;
        }
        let last_done = store
            .slots
            .iter()
            .map(|s| s.free_since)
            .fold(f64::MIN, f64::max);
        let Some(record) = store.batches.get_mut(&id) else {
            continue;
        };
        let since = record.batch.cancelling_at.unwrap_or(now as i64) as f64;
        let at = since.max(last_done.min(now));
        record.batch.status = BatchStatus::Cancelled;
        record.batch.cancelled_at = Some(at as i64);
        deliver(store, &id, at);
    }
}

fn finalize_due_batches(store: &mut Store, now: f64) {
    let due: Vec<(String, f64)> = store
        .batches
        .iter()
        .filter(|b| b.batch.status == BatchStatus::Finalizing && b.due <= now)
        .map(|b| (b.batch.id.clone(), b.due))
        .collect();
    for (id, at) in due {
        if let Some(record) = store.batches.get_mut(&id) {
            record.batch.status = BatchStatus::Completed;
            record.batch.completed_at = Some(at as i64);
        }
        deliver(store, &id, at);
    }
}
