//! `render cancel`: stop a run at its providers and keep what already finished.
//!
//! The run is marked cancelled first, so no rerun continues it (a rerun of the same list starts
//! a new run instead). Its open batches are cancelled at the provider, which ends them with the
//! work done so far; harvest then downloads that work (billed, so kept) and records the rest as
//! lost, to be retried or not. Running direct jobs are deleted where the server's delete aborts
//! them; where it cannot (SGLang, LiteLLM), they finish and are harvested as usual.

use serde::Serialize;

use crate::events::{Event, EventSink};
use crate::lanes::Routes;
use crate::ledger::{Ledger, LedgerError, RequestResult, RequestStatus, RunRow};
use render_wire::api::{BatchStatus, VideoStatus};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cancellation {
    pub run_id: String,
    /// Batches the providers were asked to cancel.
    pub batches_cancelled: Vec<String>,
    /// Direct jobs stopped at the provider (their requests are now lost, for `render retry`).
    pub jobs_cancelled: usize,
    /// Direct jobs whose server cannot stop them: they render on, and are harvested.
    pub jobs_left_running: usize,
    /// Requests already harvested: kept.
    pub kept: usize,
    /// What could not be cancelled, and why (rerun `render cancel` to try again).
    pub problems: Vec<String>,
}

const CANCELLED_REASON: &str = "cancelled by `render cancel`";
const NEVER_SENT_REASON: &str = "cancelled by `render cancel` before it was sent";

pub async fn cancel_run(
    run: &RunRow,
    ledger: &mut Ledger,
    routes: &Routes,
    events: &dyn EventSink,
) -> Result<Cancellation, LedgerError> {
    ledger.set_run_cancelled(&run.id)?;
    let mut outcome = Cancellation {
        run_id: run.id.clone(),
        ..Cancellation::default()
    };
    for batch in ledger.batches_of_run(&run.id)? {
        let Some(id) = batch.batch_id.as_deref() else {
            continue;
        };
        let status = BatchStatus::parse(&batch.status);
        // Settled, or already being cancelled: nothing to ask.
        if batch.harvested || status.is_terminal() || status == BatchStatus::Cancelling {
            continue;
        }
        let Some(route) = routes.get(&batch.provider) else {
            outcome.problems.push(format!(
                "batch {id}: provider {} is not configured here",
                batch.provider
            ));
            continue;
        };
        match route.client.cancel_batch(id).await {
            Ok(_) => outcome.batches_cancelled.push(id.to_string()),
            Err(err) => outcome.problems.push(format!("batch {id}: {err}")),
        }
    }
    let items = ledger.run_items(&run.id)?;
    let keys: std::collections::HashSet<_> = items.iter().map(|i| i.key).collect();
    for job in ledger
        .open_jobs()?
        .into_iter()
        .filter(|j| keys.contains(&j.key))
    {
        let Some(video_id) = job.video_id.as_deref() else {
            // Sent but unconfirmed: the next harvest finds it (or not) and settles it.
            continue;
        };
        let Some(route) = routes.get(&job.provider) else {
            outcome.problems.push(format!(
                "job {video_id}: provider {} is not configured here",
                job.provider
            ));
            continue;
        };
        if !route.client.facts().delete_aborts {
            outcome.jobs_left_running += 1;
            continue;
        }
        // A job that finished meanwhile is rendered and billed: deleting it would throw the
        // video away. Only a job the server says is still going is stopped.
        match route.client.get_video(video_id).await {
            Ok(video) if matches!(video.status, VideoStatus::Queued | VideoStatus::InProgress) => {}
            Ok(_) => continue,
            Err(err) => {
                outcome.problems.push(format!("job {video_id}: {err}"));
                continue;
            }
        }
        match route.client.delete_video(video_id).await {
            Ok(_) => {
                ledger.record_result(
                    &job.key,
                    &RequestResult::Lost {
                        reason: CANCELLED_REASON.into(),
                    },
                )?;
                ledger.finish_job(job.row)?;
                outcome.jobs_cancelled += 1;
            }
            Err(err) => outcome.problems.push(format!("job {video_id}: {err}")),
        }
    }
    if outcome.jobs_left_running > 0 {
        events.emit(Event::Warning {
            message: format!(
                "{} direct job(s) run on servers that cannot stop them; they finish, are billed, \
                 and are harvested",
                outcome.jobs_left_running
            ),
        });
    }
    for item in &items {
        match ledger.request(&item.key)?.map(|r| r.status) {
            Some(RequestStatus::Harvested) => outcome.kept += 1,
            // Never sent: nothing to stop, but the run must not wait for it. A later night
            // sends it again, as any lost request.
            Some(RequestStatus::Pending) => ledger.record_result(
                &item.key,
                &RequestResult::Lost {
                    reason: NEVER_SENT_REASON.into(),
                },
            )?,
            _ => {}
        }
    }
    Ok(outcome)
}
