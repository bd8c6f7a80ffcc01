//! The Batch lane's half of harvest: refresh each batch, read its output and error files, and
//! record every line against its request.

use std::collections::{HashMap, HashSet};

use crate::api::error::ApiError;
use crate::batch::parse_custom_id;
use crate::events::{Event, EventSink};
use crate::lanes::direct::MissingRule;
use crate::lanes::{Route, classify_failure};
use crate::ledger::{
    BatchRow, BatchUpdate, Ledger, RequestResult, RequestRow, RequestStatus, unix_now,
};
use render_wire::api::{BatchOutputLine, BatchStatus, ErrorBody, Video, VideoStatus};
use render_wire::key::RequestKey;

use super::{DEADLINE_WARNING_SECS, HarvestError, Harvester, human_duration, truncate, warn};

impl Harvester<'_> {
    /// Refreshes one batch and collects whatever it has finished. Returns whether anything changed.
    pub(super) async fn batch(
        &mut self,
        batch: &BatchRow,
        route: &Route,
    ) -> Result<bool, HarvestError> {
        let (ledger, events) = (&mut *self.ledger, self.events);
        let client = &route.client;
        let Some(batch_id) = batch.batch_id.as_deref() else {
            return Ok(false);
        };
        let remote = match client.get_batch(batch_id).await {
            Ok(remote) => remote,
            Err(err) if err.status() == Some(404) => {
                let missing = self.options.missing;
                return denied_batch(batch, batch_id, route, ledger, events, missing, &err).await;
            }
            Err(err) => return Err(err.into()),
        };
        ledger.batch_seen(batch.row)?;
        let update = BatchUpdate::from(&remote);
        ledger.update_batch(batch.row, &update)?;
        // The server's clock (its Date header), not this machine's: the sandbox's runs fast,
        // and a real server's may simply differ.
        let now = client.server_now().unwrap_or_else(unix_now);
        ledger.set_clock_offset(batch.row, now - unix_now())?;
        let outputs_expire_at = remote
            .completed_at
            .map(|t| t + render_wire::api::OUTPUTS_LIFETIME_SECS);
        let expire_in = outputs_expire_at.map(|t| t - now);
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
        let overdue = remote
            .expires_at
            .is_some_and(|expires| now > expires + UNKNOWN_STATUS_GRACE_SECS);
        if remote.status == BatchStatus::Unknown && overdue {
            // An hour past its own deadline in a status nobody knows: nothing more will come.
            abandon_overdue(batch, &remote, ledger, events)?;
            return Ok(true);
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
                    self.download_batch(batch, route).await?;
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
        }
        self.download_batch(batch, route).await?;
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

    /// Downloads the batch's completed videos.
    async fn download_batch(
        &mut self,
        batch: &BatchRow,
        route: &Route,
    ) -> Result<(), HarvestError> {
        let requests = self.ledger.batch_requests(batch.row)?;
        self.download(requests, route).await
    }
}

/// The provider answered 404 for a batch `render` created. One answer proves nothing (a
/// replica lagging, a gateway hiccup): the batch stays pollable until the provider has denied
/// it on several polls over the grace period and its batch list does not show it either.
/// Returns whether anything changed.
async fn denied_batch(
    batch: &BatchRow,
    batch_id: &str,
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
    rule: MissingRule,
    err: &ApiError,
) -> Result<bool, HarvestError> {
    let (polls, for_secs) = ledger.batch_missing(batch.row, unix_now())?;
    if polls < rule.polls || (for_secs as u64) < rule.grace.as_secs() {
        if polls == 1 {
            warn(
                events,
                format!(
                    "batch {batch_id}: the provider does not find it ({err}); asking again before concluding anything"
                ),
            );
        }
        return Ok(false);
    }
    let listed = route.client.list_all_batches().await?;
    if listed.iter().any(|b| b.id == batch_id) {
        ledger.batch_seen(batch.row)?;
        return Ok(false);
    }
    forget_missing_batch(batch, batch_id, polls, for_secs, ledger, events)?;
    Ok(true)
}

/// The provider does not know the batch (it was deleted, or the server forgot it): whatever it
/// held that is not harvested is lost, so `render retry` can send it again.
fn forget_missing_batch(
    batch: &BatchRow,
    batch_id: &str,
    polls: u32,
    for_secs: i64,
    ledger: &mut Ledger,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    let reason = format!(
        "the provider no longer knows batch {batch_id} (not found on {polls} polls over {for_secs} s, nor in its batch list)"
    );
    give_up(batch, reason, ledger, events)
}

/// Ends a batch `render` will hear no more from: every request it holds that is not finished
/// (harvested, failed) is lost and resubmittable, and the batch is no longer polled.
fn give_up(
    batch: &BatchRow,
    reason: String,
    ledger: &mut Ledger,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    warn(
        events,
        format!("{reason}; its unfinished requests are marked lost"),
    );
    let mut lost = Vec::new();
    for request in ledger.batch_requests(batch.row)? {
        let unfinished =
            request.status.is_in_flight_or_done() && request.status != RequestStatus::Harvested;
        if unfinished {
            events.emit(Event::RequestLost {
                shot_id: request.shot_id.clone(),
                take: request.take,
                key: request.key.hex(),
                reason: reason.clone(),
            });
            let result = RequestResult::Lost {
                reason: reason.clone(),
            };
            lost.push((request.key, result));
        }
    }
    ledger.record_results(&lost)?;
    ledger.set_results_read(batch.row)?;
    ledger.set_batch_harvested(batch.row)?;
    Ok(())
}

/// How long past its `expires_at` a batch in a status nobody knows is still waited for.
const UNKNOWN_STATUS_GRACE_SECS: i64 = 3600;

/// A batch still in an unknown status past its deadline and the grace: given up.
fn abandon_overdue(
    batch: &BatchRow,
    remote: &render_wire::api::Batch,
    ledger: &mut Ledger,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    let reason = format!(
        "batch {} still reports status `unknown` an hour past its deadline; nothing more will come",
        remote.id
    );
    give_up(batch, reason, ledger, events)
}

/// A result line longer than this is not one of ours (a video object is about a kilobyte).
const MAX_RESULT_LINE: usize = 1 << 20;
/// A result file larger than this is not one of ours (50,000 lines of a few kilobytes).
const MAX_RESULT_FILE: u64 = 1 << 30;

/// What reading a batch's result files found, beyond the results themselves.
#[derive(Debug, Default)]
struct Reading {
    answered: HashSet<RequestKey>,
    /// Keys answered with a video: a later failure line for one of them is a contradiction.
    rendered: HashSet<RequestKey>,
    unreadable: u64,
    foreign: u64,
    contradictions: u64,
    /// The first line of each kind, for the one warning that counts them.
    first_unreadable: Option<String>,
    first_foreign: Option<String>,
}

/// Reads the output and error files (streamed through a temporary file: memory stays flat
/// however large they are) and records every line against its request. Lines that are not
/// results of this batch are counted and reported once.
async fn read_results(
    batch: &BatchRow,
    remote: &render_wire::api::Batch,
    ledger: &mut Ledger,
    client: &crate::api::client::ApiClient,
    events: &dyn EventSink,
) -> Result<(), HarvestError> {
    let requests: HashMap<RequestKey, RequestRow> = ledger
        .batch_requests(batch.row)?
        .into_iter()
        .map(|r| (r.key, r))
        .collect();
    let mut reading = Reading::default();
    let mut results = Vec::new();
    for file_id in [&remote.output_file_id, &remote.error_file_id]
        .into_iter()
        .flatten()
    {
        let file = fetch_to_temp(client, file_id).await?;
        let mut lines = std::io::BufReader::new(file);
        let mut number = 0;
        while let Some(line) =
            next_line(&mut lines, MAX_RESULT_LINE).map_err(|e| temp_error(file_id, e))?
        {
            number += 1;
            let at = format!("file {file_id} line {number}");
            match line {
                Line::TooLong => reading.unreadable(at),
                // Servers echo what they were sent, the key included: it must not reach the
                // ledger, the manifest or a log.
                Line::Text(line) => {
                    let line = client.redact_bytes(line);
                    let result = read_line(&line, at, &requests, &mut reading, events);
                    results.extend(result);
                }
            }
            if results.len() >= RESULTS_PER_TRANSACTION {
                ledger.record_results(&results)?;
                results.clear();
            }
        }
        ledger.record_results(&results)?;
        results.clear();
    }
    reading.warn(remote, events);
    let unanswered: Vec<(&RequestKey, &RequestRow)> = requests
        .iter()
        .filter(|(k, r)| {
            !reading.answered.contains(*k)
                && matches!(r.status, RequestStatus::Submitted | RequestStatus::Queued)
        })
        .collect();
    // A damaged file (cut short in transit, say) must not make rendered requests look unrun:
    // they would be marked lost and paid for again. Once every request of ours is answered,
    // lines that could not be read cannot hide one.
    let reported = remote
        .request_counts
        .map_or(0, |counts| counts.completed + counts.failed);
    let answered = reading.answered.len() as u64;
    let short = reading.unreadable > 0 || answered + reading.foreign < reported;
    if !unanswered.is_empty() && short {
        return Err(HarvestError::IncompleteResults {
            batch_id: remote.id.clone(),
            answered,
            reported,
            unreadable: reading.unreadable,
        });
    }
    // Whatever the files did not mention never ran: lost (resubmittable) when the batch expired
    // or was cancelled, failed (retryable) with the batch's own error when it failed validation.
    for (key, request) in unanswered {
        let result = unanswered_result(remote);
        if let RequestResult::Lost { reason } = &result {
            events.emit(Event::RequestLost {
                shot_id: request.shot_id.clone(),
                take: request.take,
                key: key.hex(),
                reason: reason.clone(),
            });
        }
        results.push((*key, result));
    }
    ledger.record_results(&results)?;
    Ok(())
}

/// Results recorded in one ledger transaction: one sync per thousand lines of a big output
/// file instead of one per line, and never more than this many held.
const RESULTS_PER_TRANSACTION: usize = 1024;

/// Reads one result line: the result to record, if it is one of ours. A request answered both
/// with a video and with a failure keeps the video: it was rendered (and billed), and its
/// download must not be skipped.
fn read_line(
    line: &[u8],
    at: String,
    requests: &HashMap<RequestKey, RequestRow>,
    reading: &mut Reading,
    events: &dyn EventSink,
) -> Option<(RequestKey, RequestResult)> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let parsed: BatchOutputLine = match serde_json::from_slice(line) {
        Ok(parsed) => parsed,
        Err(_) => {
            reading.unreadable(at);
            return None;
        }
    };
    let Some(key) = parse_custom_id(&parsed.custom_id).filter(|k| requests.contains_key(k)) else {
        reading.foreign += 1;
        reading.first_foreign.get_or_insert_with(|| {
            format!("{at}: custom_id {:?}", truncate(&parsed.custom_id, 80))
        });
        return None;
    };
    let result = line_result(&parsed);
    let is_video = matches!(result, RequestResult::Completed { .. });
    if !is_video && reading.rendered.contains(&key) {
        reading.contradictions += 1;
        return None;
    }
    if is_video && reading.answered.contains(&key) {
        reading.contradictions += 1;
    }
    if let RequestResult::Failed { code, message, .. } = &result {
        events.emit(Event::RequestFailed {
            shot_id: requests[&key].shot_id.clone(),
            take: requests[&key].take,
            key: key.hex(),
            code: code.clone(),
            message: message.clone(),
        });
    }
    reading.answered.insert(key);
    if is_video {
        reading.rendered.insert(key);
    }
    Some((key, result))
}

impl Reading {
    fn unreadable(&mut self, at: String) {
        self.unreadable += 1;
        self.first_unreadable.get_or_insert(at);
    }

    /// One warning per kind of oddity, with its count: never one per line.
    fn warn(&self, remote: &render_wire::api::Batch, events: &dyn EventSink) {
        let id = &remote.id;
        if let Some(first) = &self.first_unreadable {
            warn(
                events,
                format!(
                    "batch {id}: {} result line(s) could not be read and were ignored (the first: {first})",
                    self.unreadable
                ),
            );
        }
        if let Some(first) = &self.first_foreign {
            warn(
                events,
                format!(
                    "batch {id}: {} result line(s) are not requests of this batch and were ignored (the first: {first})",
                    self.foreign
                ),
            );
        }
        if self.contradictions > 0 {
            warn(
                events,
                format!(
                    "batch {id}: {} request(s) were answered both with a video and with a failure; the video is kept",
                    self.contradictions
                ),
            );
        }
    }
}

/// A batch result file, downloaded into an anonymous temporary file and rewound.
async fn fetch_to_temp(
    client: &crate::api::client::ApiClient,
    file_id: &str,
) -> Result<std::fs::File, HarvestError> {
    use std::io::Seek;
    let file = tempfile::tempfile().map_err(|e| temp_error(file_id, e))?;
    let mut dest = tokio::fs::File::from_std(file);
    client
        .file_content_to(file_id, &mut dest, MAX_RESULT_FILE)
        .await?;
    let mut file = dest.into_std().await;
    file.rewind().map_err(|e| temp_error(file_id, e))?;
    Ok(file)
}

fn temp_error(file_id: &str, source: std::io::Error) -> HarvestError {
    HarvestError::Cache(crate::cache::CacheError::Io {
        action: "keep a temporary copy of result file",
        path: std::path::PathBuf::from(file_id),
        source,
    })
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// The next line (without its newline), read at most `max` bytes at a time: a line longer
/// than that is skipped whole and reported as such.
fn next_line(reader: &mut impl std::io::BufRead, max: usize) -> std::io::Result<Option<Line>> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(max as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(Line::Text(line)));
    }
    if line.len() <= max {
        return Ok(Some(Line::Text(line)));
    }
    // Skip to the end of the over-long line.
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                break;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
    Ok(Some(Line::TooLong))
}

fn unanswered_result(remote: &render_wire::api::Batch) -> RequestResult {
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
