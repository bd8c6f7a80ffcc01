//! The runs a harvest takes (those named, or every open one its providers serve), and how each
//! ends: its outputs and manifest laid out and its requests tallied.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::CacheStorage;
use crate::events::EventSink;
use crate::lanes::Routes;
use crate::ledger::{Ledger, RunRow};
use crate::outputs;

use super::{HarvestError, HarvestOptions, RunSummary, warn};

/// The videos these runs still wait for: sent (or about to be) and not yet settled.
pub(super) fn videos_to_come(runs: &[RunRow], ledger: &Ledger) -> Result<u64, HarvestError> {
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    Ok(ledger.videos_to_come(&ids)?)
}

/// The runs to harvest: those named, or every open run. A run whose providers are none of
/// those configured here is left alone: another server does not know its work, and its 404s
/// must not mark it lost.
pub(super) fn select_runs(
    run_ids: &[String],
    ledger: &Ledger,
    routes: &Routes,
    events: &dyn EventSink,
) -> Result<Vec<RunRow>, HarvestError> {
    let served = |run: &RunRow| run_providers(run).iter().any(|p| routes.get(p).is_some());
    if run_ids.is_empty() {
        let open: HashSet<String> = ledger
            .unharvested_batches()?
            .into_iter()
            .map(|b| b.run_id)
            .collect();
        let mut runs = Vec::new();
        for run in ledger.runs()? {
            if !open.contains(&run.id) && run.done {
                continue;
            }
            if served(&run) {
                runs.push(run);
            } else {
                warn(
                    events,
                    format!(
                        "run {} was submitted to {}, not configured here: left alone",
                        run.id, run.provider
                    ),
                );
            }
        }
        return Ok(runs);
    }
    run_ids
        .iter()
        .map(|id| match ledger.run(id)? {
            None => Err(HarvestError::UnknownRun(id.clone())),
            Some(run) if !served(&run) => Err(HarvestError::OtherProvider {
                run: run.id,
                submitted_to: run.provider,
            }),
            Some(run) => Ok(run),
        })
        .collect()
}

/// The providers a run names (a night may use several).
pub fn run_providers(run: &RunRow) -> Vec<String> {
    run.provider
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Lays out the run's outputs and manifest, and tallies where its requests stand.
pub(super) async fn finish_run(
    run: &RunRow,
    ledger: &mut Ledger,
    store: &Arc<dyn CacheStorage>,
    options: &HarvestOptions,
    events: &dyn EventSink,
) -> Result<RunSummary, HarvestError> {
    // `--out` wins and is remembered; otherwise the run keeps the folder it was first given.
    let out_dir = match (&options.out_dir, &run.out_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => outputs::default_out_dir(run.project.as_deref()),
    };
    let recorded = out_dir.display().to_string();
    if run.out_dir.as_deref() != Some(recorded.as_str()) {
        ledger.set_run_out_dir(&run.id, &recorded)?;
    }
    let manifest = outputs::lay_out(run, ledger, &**store, &out_dir, events).await?;
    let summary = RunSummary {
        run_id: run.id.clone(),
        requests: manifest.requests.len(),
        harvested: manifest.count(outputs::EntryStatus::Harvested),
        failed: manifest.count(outputs::EntryStatus::Failed),
        lost: manifest.count(outputs::EntryStatus::Lost),
        pending: manifest.requests.len()
            - manifest.count(outputs::EntryStatus::Harvested)
            - manifest.count(outputs::EntryStatus::Failed)
            - manifest.count(outputs::EntryStatus::Lost),
        manifest: Some(out_dir.join(outputs::MANIFEST_NAME)),
        laid_out: Some(manifest),
    };
    let finished = summary.pending == 0
        && ledger
            .unharvested_batches()?
            .iter()
            .all(|b| b.run_id != run.id);
    ledger.set_run_done(&run.id, finished)?;
    Ok(summary)
}
