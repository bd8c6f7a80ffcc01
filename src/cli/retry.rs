//! `render retry RUN`: resubmit the run's failed-but-retryable and lost requests, and only those.

use super::state::{Bounds, open_state, providers, reachable_routes, runtime};
use super::{GlobalArgs, Outcome, UsageError};
use crate::report::output;
use render_pipeline::ledger::RequestStatus;
use render_pipeline::plan::OverBudget;
use render_pipeline::submit::resubmit;
use render_wire::money::Usd;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run whose failures to resubmit: its id, a prefix only it has, or `last`.
    pub run: String,
    /// Refuse (exit 3) when resubmitting would cost more than this many dollars.
    #[arg(long, value_name = "USD")]
    pub budget: Option<Usd>,
    #[command(flatten)]
    pub limits: super::submit::LimitArgs,
}

// The run's requests go back to the providers they were sent to: routes are the providers
// configured here, and a request whose provider is not is reported, never sent elsewhere.

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let mut state = open_state(global)?;
    let run = super::state::find_run(&state.ledger, &args.run)?;
    let mut retryable = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in state.ledger.run_items(&run.id)? {
        let Some(request) = state.ledger.request(&item.key)? else {
            continue;
        };
        let wanted = match request.status {
            RequestStatus::Lost => true,
            RequestStatus::Failed => request.retryable,
            _ => false,
        };
        if wanted && seen.insert(request.key) {
            retryable.push(request);
        }
    }
    let cost: Usd = retryable.iter().map(|r| r.cost).sum();
    if let Some(budget) = args.budget
        && cost > budget
    {
        crate::report::plan::print_over_budget(&OverBudget {
            total: cost,
            budget,
        });
        return Ok(Outcome::OverBudget);
    }
    if retryable.is_empty() {
        output::note(
            global.format,
            format_args!("run {}: nothing to retry", run.id),
        )?;
    }
    let routes = reachable_routes(&providers(global)?, None, Bounds::default())?;
    let unreachable: std::collections::BTreeSet<&str> = retryable
        .iter()
        .map(|r| match r.provider.as_str() {
            "" => run.provider.as_str(),
            provider => provider,
        })
        .filter(|p| routes.get(p).is_none())
        .collect();
    if !unreachable.is_empty() {
        let names: Vec<&str> = unreachable.into_iter().collect();
        return Err(UsageError(format!(
            "run {} was submitted to {}, which is not configured here; add it to providers.yaml (or point OPENAI_BASE_URL at it) to retry this run",
            run.id,
            names.join(", ")
        ))
        .into());
    }
    let shared = state.shared.take();
    let progress = global.progress();
    let report = runtime()?.block_on(resubmit(
        &run,
        &retryable,
        &mut state.ledger,
        (&*state.store, shared.as_ref()),
        &routes,
        args.limits.limits(),
        &progress,
    ));
    progress.finish();
    let report = report?;
    // The run is open again until the resubmitted requests are harvested (or, fetched from the
    // shared cache or waited for there, laid out).
    if report.submitted + report.fetched_shared + report.skipped_elsewhere > 0 {
        state.ledger.set_run_done(&run.id, false)?;
    }
    output::print(&report, global.format)?;
    Ok(Outcome::Success)
}
