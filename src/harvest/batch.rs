//! The Batch lane's half of harvest: refresh each batch, read its output and error files, and
//! record every line against its request.

use std::collections::{HashMap, HashSet};

use crate::api::error::ApiError;
use crate::api::types::{BatchOutputLine, BatchStatus, ErrorBody, Video, VideoStatus};
use crate::batch::parse_custom_id;
use crate::events::{Event, EventSink};
use crate::key::RequestKey;
use crate::lanes::direct::MissingRule;
use crate::lanes::{Route, classify_failure};
use crate::ledger::{
    BatchRow, BatchUpdate, Ledger, RequestResult, RequestRow, RequestStatus, unix_now,
};

use super::{
    DEADLINE_WARNING_SECS, HarvestError, Harvester, download, human_duration, truncate, warn,
};

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
    client: &crate::api::client::ApiClient,
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
