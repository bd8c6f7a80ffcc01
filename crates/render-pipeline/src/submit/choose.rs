//! Choosing what a plan must render: not cached, not in flight or done, not refused before;
//! and the ledger row each chosen request becomes.

use crate::cache::CacheStorage;
use crate::ledger::{Ledger, RequestRow, RequestStatus};
use crate::outputs::CachedOutputs;
use crate::plan::{Plan, PlannedRequest};
use render_wire::key::KeySet;

use super::{SubmitError, SubmitReport};

/// Past this many requests, choosing reads the state of every request in the ledger at once
/// instead of asking for each.
const STATE_POINT_QUERIES: usize = 256;

/// The distinct requests of the plan that need rendering, counting what is skipped and why.
pub(super) fn select_requests<'p>(
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

pub(super) fn request_row(request: &PlannedRequest) -> RequestRow {
    RequestRow {
        key: request.key,
        shot_id: request.shot_id.to_string(),
        take: request.take,
        provider: request.provider.to_string(),
        lane: request.lane,
        served_as: (*request.served_as != *request.model.as_str())
            .then(|| request.served_as.to_string()),
        job_row: None,
        model: request.model.to_string(),
        size: request.size.to_string(),
        seconds: request.seconds.0,
        prompt: request.prompt.to_string(),
        reference_sha: request.reference.as_ref().map(|r| r.sha256),
        // Absolute, so `render retry` finds the image from any working directory (cron).
        reference_path: request.reference.as_ref().map(|r| {
            std::path::absolute(&r.path)
                .unwrap_or_else(|_| r.path.clone())
                .display()
                .to_string()
        }),
        reference_mime: request.reference.as_ref().map(|r| r.mime.to_string()),
        cost: request.cost(),
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanOptions, build};
    use crate::shotlist::{Format, ShotListInput};
    use render_wire::catalog::Catalog;
    use render_wire::key::RequestKey;

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
