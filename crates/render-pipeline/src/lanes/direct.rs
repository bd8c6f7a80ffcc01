//! The direct lane: one `POST /v1/videos` per request, then poll the job, then download (the
//! download stage is the Batch lane's).
//!
//! Exactly once rests on the same rule as the Batch lane: the ledger records the intent (a job
//! row with a random token) before the POST. An answer that never came (a crash, a dropped
//! connection, a 5xx) leaves the intent unconfirmed; before anything is sent again, a server
//! that lists its jobs is searched for one made since the intent with the same prompt and size
//! that no other job of ours owns. A server that cannot list (LiteLLM) cannot say: the request
//! is sent again and `render` warns that this one request may be rendered twice.
//!
//! Only an explicit expiry makes a request lost at once. A job the server answers 404 for is
//! not taken as gone until it has said so on several polls over a grace period (a replica
//! lagging, a gateway hiccup, a restarted server).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rand::RngCore;

use super::{Route, assets, classify_failure};
use crate::api::error::ApiError;
use crate::api::retry::is_retryable_status;
use crate::events::{Event, EventSink};
use crate::failpoint;
use crate::ledger::{JobRow, Ledger, LedgerError, RequestResult, RequestRow, unix_now};
use render_wire::api::{CreateVideo, InputReference, Video, VideoStatus};
use render_wire::dialect::CreateBody;
use render_wire::key::RequestKey;

/// How long, and on how many polls in a row, a server must deny a job before it is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingRule {
    pub polls: u32,
    pub grace: Duration,
}

impl Default for MissingRule {
    fn default() -> MissingRule {
        MissingRule {
            polls: 3,
            grace: Duration::from_secs(10 * 60),
        }
    }
}

/// How many pages of a server's job list a reconciliation reads at most.
const MAX_LIST_PAGES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Asset(#[from] assets::AssetError),
}

/// What one pass over a provider's direct jobs did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    /// Jobs that finished (rendered or failed) in this pass, by ledger row.
    pub finished: Vec<i64>,
    /// Anything changed in the ledger.
    pub progressed: bool,
    /// The server asked to slow down (429, or `Retry-After` on a 5xx): wait at least this long
    /// before sending again.
    pub back_off: Option<Duration>,
}

/// Jobs that may still be sent now: `max_in_flight` less those rendering or unconfirmed.
pub fn free_slots(route: &Route, ledger: &Ledger) -> Result<usize, DirectError> {
    let id = &route.provider.id;
    let busy = ledger.rendering_jobs(id)?.len() + ledger.unconfirmed_jobs(id)?.len();
    Ok(route.provider.max_in_flight.saturating_sub(busy))
}

/// Settles every unconfirmed intent of the route's provider: adopted when the server has the
/// job, otherwise given back to be sent again (with a warning where the server cannot say).
pub async fn reconcile(
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
) -> Result<bool, DirectError> {
    let intents = ledger.unconfirmed_jobs(&route.provider.id)?;
    if intents.is_empty() {
        return Ok(false);
    }
    let listed = if route.client.facts().lists_videos {
        Some(list_jobs(route, intents.iter().map(|j| j.intent_at).min()).await?)
    } else {
        None
    };
    for intent in intents {
        let Some(request) = ledger.job_requests(intent.row)?.into_iter().next() else {
            ledger.abandon_job(intent.row, "no request holds this job")?;
            continue;
        };
        match &listed {
            Some(videos) => {
                match find_job(ledger, &route.provider.id, videos, &intent, &request)? {
                    Some(video) => {
                        ledger.record_job_sent(intent.row, &video.id, video.status.as_str())?;
                        events.emit(Event::JobCreated {
                            provider: route.provider.name.clone(),
                            shot_id: request.shot_id.clone(),
                            take: request.take,
                            key: request.key.hex(),
                            video_id: video.id.clone(),
                            adopted: true,
                        });
                    }
                    None => ledger.abandon_job(intent.row, "the server has no such job")?,
                }
            }
            None => {
                warn(
                    events,
                    format!(
                        "{}: a job for shot {} was sent before an interruption and this server cannot list its jobs to confirm it; sending it again, so this one request may be rendered (and billed) twice",
                        route.provider.name, request.shot_id
                    ),
                );
                ledger.abandon_job(intent.row, "unconfirmed; the server cannot list its jobs")?;
            }
        }
    }
    Ok(true)
}

/// The server's jobs created since `since` (newest first, bounded).
async fn list_jobs(route: &Route, since: Option<i64>) -> Result<Vec<Video>, DirectError> {
    let since = since.unwrap_or(0) - super::CLOCK_SLACK_SECS;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let page = route
            .client
            .list_videos(after.as_deref(), Some(100))
            .await?;
        let reached_older = page
            .data
            .iter()
            .any(|v| v.created_at != 0 && v.created_at < since);
        let next = page.data.last().map(|v| v.id.clone());
        all.extend(page.data);
        match next {
            Some(next) if page.has_more && !reached_older && after.as_ref() != Some(&next) => {
                after = Some(next)
            }
            _ => break,
        }
    }
    Ok(all)
}

/// A listed job that this intent may have created: the same prompt (and size, where the
/// server says), made since the intent, owned by no other job of ours.
fn find_job<'a>(
    ledger: &Ledger,
    provider: &str,
    videos: &'a [Video],
    intent: &JobRow,
    request: &RequestRow,
) -> Result<Option<&'a Video>, DirectError> {
    let since = intent.intent_at - super::CLOCK_SLACK_SECS;
    for video in videos {
        let same_prompt = video.prompt.as_deref() == Some(request.prompt.as_str());
        let same_size = video.size.as_deref().is_none_or(|s| s == request.size);
        let recent = video.created_at == 0 || video.created_at >= since;
        if same_prompt && same_size && recent && !ledger.video_has_job(provider, &video.id)? {
            return Ok(Some(video));
        }
    }
    Ok(None)
}

/// Sends up to the free slots' worth of `waiting` requests, one job each, intent first.
pub async fn send(
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
    waiting: &[RequestRow],
    run_id: Option<&str>,
) -> Result<Pass, DirectError> {
    let mut pass = Pass::default();
    let mut slots = free_slots(route, ledger)?;
    for request in waiting {
        if slots == 0 {
            break;
        }
        match send_one(route, ledger, events, request, run_id).await? {
            Sent::Created => {
                pass.sent += 1;
                pass.progressed = true;
                slots -= 1;
            }
            Sent::Refused => pass.progressed = true,
            Sent::SlowDown(wait) => {
                pass.back_off = Some(wait);
                break;
            }
            // The server may or may not have it: settled by the next reconciliation, and not
            // sooner than the server asked.
            Sent::Unknown { wait } => {
                pass.back_off = wait;
                break;
            }
        }
    }
    Ok(pass)
}

enum Sent {
    Created,
    /// The server refused the request itself: it is failed, with the server's reason.
    Refused,
    SlowDown(Duration),
    /// No clear answer (a 5xx, a lost connection): the job may exist. `wait` is the pause the
    /// server asked for, if it did: an overloaded server or gateway is left alone that long,
    /// though its answer never counts as "not created".
    Unknown {
        wait: Option<Duration>,
    },
}

async fn send_one(
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
    request: &RequestRow,
    run_id: Option<&str>,
) -> Result<Sent, DirectError> {
    let (body, image) = request_body(route, ledger, events, request).await?;
    let row = ledger.record_job_intent(run_id, &route.provider.id, &request.key, &new_token())?;
    failpoint::hit("direct-after-intent");
    let image = image
        .as_ref()
        .map(|(p, n, m)| (p.as_path(), n.as_str(), m.as_str()));
    // Never retried blindly: a lost answer may hide a created job, so reconcile first.
    match route
        .client
        .without_retries()
        .create_video(&body, image)
        .await
    {
        Ok(video) => {
            failpoint::hit("direct-after-post");
            ledger.record_job_sent(row, &video.id, video.status.as_str())?;
            events.emit(Event::JobCreated {
                provider: route.provider.name.clone(),
                shot_id: request.shot_id.clone(),
                take: request.take,
                key: request.key.hex(),
                video_id: video.id,
                adopted: false,
            });
            Ok(Sent::Created)
        }
        Err(err) if err.status() == Some(429) => {
            ledger.abandon_job(row, &err.to_string())?;
            // The server's own wait (Retry-After, or LiteLLM's renamed one), else the retry
            // policy's first.
            let asked = err.retry_after();
            Ok(Sent::SlowDown(route.client.retry_policy().delay(0, asked)))
        }
        Err(err) if matches!(err.status(), Some(400 | 413 | 422)) => {
            ledger.abandon_job(row, &err.to_string())?;
            let result = classify_failure(
                None,
                err.server_message().unwrap_or_default().to_string(),
                err.status(),
            );
            report_failure(ledger, events, request, &result)?;
            Ok(Sent::Refused)
        }
        // Nothing was created, and sending the others would fail the same way.
        Err(err) if matches!(err.status(), Some(401 | 403 | 404 | 405)) => {
            ledger.abandon_job(row, &err.to_string())?;
            Err(err.into())
        }
        Err(err) => {
            warn(
                events,
                format!(
                    "{}: sending shot {} got no clear answer ({err}); it is checked before it is sent again",
                    route.provider.name, request.shot_id
                ),
            );
            Ok(Sent::Unknown {
                wait: err.retry_after(),
            })
        }
    }
}

/// The `POST /videos` body of a request in the provider's dialect, and the image to attach.
async fn request_body(
    route: &Route,
    ledger: &Ledger,
    events: &dyn EventSink,
    request: &RequestRow,
) -> Result<(CreateVideo, Option<(std::path::PathBuf, String, String)>), DirectError> {
    let model = request.served_as.as_deref().unwrap_or(&request.model);
    let mut body = crate::batch::video_body(model, &request.size, request.seconds, &request.prompt);
    let Some((sha256, path)) = request.reference_sha.zip(request.reference_path.as_deref()) else {
        return Ok((body, None));
    };
    let path = Path::new(path);
    match route.client.facts().create_body {
        CreateBody::JsonWithFileId => {
            let (file_id, _) = assets::file_id(&route.client, ledger, events, sha256, path).await?;
            body.input_reference = Some(InputReference::FileId { file_id });
            Ok((body, None))
        }
        CreateBody::MultipartWithImage => {
            assets::check_unchanged(path, sha256)?;
            let mime = request
                .reference_mime
                .clone()
                .unwrap_or_else(|| "image/png".into());
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("png");
            let filename = format!("{}.{extension}", &sha256.hex()[..16]);
            Ok((body, Some((path.to_path_buf(), filename, mime))))
        }
    }
}

/// Asks the server about every job it is rendering for the route's provider, and records
/// what finished. A job it denies knowing is lost only by `missing`'s rule.
pub async fn poll(
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
    missing: MissingRule,
) -> Result<Pass, DirectError> {
    let jobs = ledger.rendering_jobs(&route.provider.id)?;
    let answers = futures_util::future::join_all(jobs.iter().map(|job| async move {
        let id = job.video_id.as_deref().unwrap_or_default();
        (job, route.client.get_video(id).await)
    }))
    .await;
    let mut pass = Pass::default();
    let mut first_error = None;
    for (job, answer) in answers {
        let Some(request) = ledger.job_requests(job.row)?.into_iter().next() else {
            ledger.finish_job(job.row)?;
            continue;
        };
        let outcome = match answer {
            Ok(video) => {
                ledger.request_seen(&request.key)?;
                job_answer(ledger, events, job, &request, &video)?
            }
            Err(err) if err.status() == Some(404) => {
                job_denied(route, ledger, events, job, &request, &err, missing).await?
            }
            // A job that failed, told as an HTTP error about the job (vllm-omni).
            Err(err) if is_job_failure(&err) => {
                let result = classify_failure(
                    None,
                    err.server_message().unwrap_or_default().to_string(),
                    None,
                );
                report_failure(ledger, events, &request, &result)?;
                Outcome::Finished
            }
            Err(err) => {
                first_error.get_or_insert(err);
                Outcome::Waiting
            }
        };
        if outcome == Outcome::Finished {
            ledger.finish_job(job.row)?;
            pass.finished.push(job.row);
            pass.progressed = true;
        }
    }
    match first_error {
        // One job's trouble must not hide what the others finished: report it after.
        Some(err) if !pass.progressed => Err(err.into()),
        Some(err) => {
            warn(events, format!("{}: {err}", route.provider.name));
            Ok(pass)
        }
        None => Ok(pass),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Finished,
}

fn job_answer(
    ledger: &mut Ledger,
    events: &dyn EventSink,
    job: &JobRow,
    request: &RequestRow,
    video: &Video,
) -> Result<Outcome, DirectError> {
    match video.status {
        VideoStatus::Completed => {
            let completed = RequestResult::Completed {
                // The id the job was created under, exactly as the server returned it.
                video_id: job.video_id.clone().unwrap_or_else(|| video.id.clone()),
                expires_at: video.expires_at,
            };
            ledger.record_result(&request.key, &completed)?;
            Ok(Outcome::Finished)
        }
        VideoStatus::Failed => {
            let error = video.error.clone().unwrap_or_default();
            let message = if error.message.is_empty() {
                "the server reports the job failed without a reason".to_string()
            } else {
                error.message
            };
            let result = classify_failure(Some(error.code), message, None);
            report_failure(ledger, events, request, &result)?;
            Ok(Outcome::Finished)
        }
        status => {
            ledger.update_job(job.row, status.as_str(), video.progress)?;
            Ok(Outcome::Waiting)
        }
    }
}

/// The server said it has no such job: lost once it has said so long and often enough (and
/// its list, where it has one, agrees).
async fn job_denied(
    route: &Route,
    ledger: &mut Ledger,
    events: &dyn EventSink,
    job: &JobRow,
    request: &RequestRow,
    err: &ApiError,
    rule: MissingRule,
) -> Result<Outcome, DirectError> {
    let (polls, for_secs) = ledger.request_missing(&request.key, unix_now())?;
    if polls < rule.polls || (for_secs as u64) < rule.grace.as_secs() {
        if polls == 1 {
            warn(
                events,
                format!(
                    "{}: the server does not know job {} of shot {} ({err}); asking again before concluding anything",
                    route.provider.name,
                    job.video_id.as_deref().unwrap_or("?"),
                    request.shot_id
                ),
            );
        }
        return Ok(Outcome::Waiting);
    }
    if route.client.facts().lists_videos {
        let id = job.video_id.as_deref().unwrap_or_default();
        if list_jobs(route, Some(job.intent_at))
            .await?
            .iter()
            .any(|v| v.id == id)
        {
            ledger.request_seen(&request.key)?;
            return Ok(Outcome::Waiting);
        }
    }
    let reason = format!(
        "{} no longer knows job {} (not found on {polls} polls over {for_secs} s; a restarted server forgets its jobs)",
        route.provider.name,
        job.video_id.as_deref().unwrap_or("?")
    );
    super::record_lost(ledger, events, request, reason)?;
    Ok(Outcome::Finished)
}

/// An HTTP error on `GET /videos/{id}` that describes the job, not the call: a 4xx other than
/// those that say "not found", "too many" or "try again".
fn is_job_failure(err: &ApiError) -> bool {
    err.status().is_some_and(|s| {
        (400..500).contains(&s) && !matches!(s, 401 | 403 | 404) && !is_retryable_status(s)
    })
}

fn report_failure(
    ledger: &mut Ledger,
    events: &dyn EventSink,
    request: &RequestRow,
    result: &RequestResult,
) -> Result<(), DirectError> {
    if let RequestResult::Failed { code, message, .. } = result {
        events.emit(Event::RequestFailed {
            shot_id: request.shot_id.clone(),
            take: request.take,
            key: request.key.hex(),
            code: code.clone(),
            message: message.clone(),
        });
    }
    ledger.record_result(&request.key, result)?;
    Ok(())
}

/// The direct-lane requests of the route's provider waiting for a slot, among `keys`.
pub fn waiting(
    route: &Route,
    ledger: &Ledger,
    keys: &HashSet<RequestKey>,
) -> Result<Vec<RequestRow>, DirectError> {
    Ok(ledger
        .waiting_direct(&route.provider.id)?
        .into_iter()
        .filter(|r| keys.contains(&r.key))
        .collect())
}

fn new_token() -> String {
    let mut token = [0u8; 12];
    rand::rng().fill_bytes(&mut token);
    hex::encode(token)
}

fn warn(events: &dyn EventSink, message: String) {
    events.emit(Event::Warning { message });
}
