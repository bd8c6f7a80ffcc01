//! `render retry RUN`: resubmit the run's failed-but-retryable and lost requests, and only those.

use super::state::{api_client, open_state, runtime};
use super::submit::print_report;
use super::{Format, GlobalArgs, Outcome, UsageError};
use crate::ledger::RequestStatus;
use crate::money::Usd;
use crate::report::progress::Progress;
use crate::submit::resubmit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run whose failures to resubmit (see `render status`).
    pub run: String,
    /// Refuse (exit 3) when resubmitting would cost more than this many dollars.
    #[arg(long, value_name = "USD")]
    pub budget: Option<Usd>,
    #[command(flatten)]
    pub limits: super::submit::LimitArgs,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let mut state = open_state(global)?;
    let run = state.ledger.run(&args.run)?.ok_or_else(|| {
        UsageError(format!(
            "no run named {} (`render status` lists them)",
            args.run
        ))
    })?;
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
        eprintln!(
            "error: resubmitting {} requests costs {cost}, over the budget of {budget}; nothing was sent",
            retryable.len()
        );
        return Ok(Outcome::OverBudget);
    }
    if retryable.is_empty() && global.format == Format::Human {
        println!("run {}: nothing to retry", run.id);
    }
    let client = api_client()?;
    if run.provider != client.provider() {
        return Err(UsageError(format!(
            "run {} was submitted to {}, but OPENAI_BASE_URL points at {}; point it at {} to retry this run",
            run.id,
            run.provider,
            client.provider(),
            run.provider
        ))
        .into());
    }
    let progress = Progress::new(global.format == Format::Json);
    let report = runtime()?.block_on(resubmit(
        &run,
        &retryable,
        &mut state.ledger,
        &client,
        args.limits.limits(),
        &progress,
    ));
    progress.finish();
    let report = report?;
    // The run is open again until the resubmitted requests are harvested.
    if report.submitted > 0 {
        state.ledger.set_run_done(&run.id, false)?;
    }
    print_report(&report, global.format)?;
    Ok(Outcome::Success)
}
