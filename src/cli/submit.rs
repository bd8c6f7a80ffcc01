//! `render submit`: plan, upload references once, compile and create the batches, exactly once.

use std::path::PathBuf;

use super::plan::{PlanArgs, Prepared, prepare};
use super::state::{Bounds, open_state, routes_for, runtime};
use super::{Format, GlobalArgs, Outcome};
use crate::report::output;
use crate::report::spend::WithSpend;
use crate::report::summary::{DryRunFile, DryRunFiles};
use render_pipeline::batch::BatchLimits;
use render_pipeline::plan::Plan;
use render_pipeline::provider::Providers;
use render_pipeline::submit::{dry_run, submit};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Write the JSONL batch files to --out and upload nothing.
    #[arg(long, requires = "out")]
    pub dry_run: bool,
    /// Folder for --dry-run's JSONL files.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Batch file limits; lower them to split a night into smaller batches.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Requests per batch file (the Batch API allows 50,000).
    // Zero is refused here, as a usage error, before a run is opened (not as exit 10 later).
    #[arg(long, value_name = "N", default_value_t = BatchLimits::default().max_requests,
          value_parser = at_least_one)]
    pub max_batch_requests: usize,
    /// Bytes per batch file (the Batch API allows 200 MB).
    #[arg(long, value_name = "BYTES", default_value_t = BatchLimits::default().max_bytes,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_bytes: u64,
}

/// A batch limit: a whole number of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("a batch must be allowed at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl LimitArgs {
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_requests: self.max_batch_requests,
            max_bytes: self.max_batch_bytes,
        }
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let (plan, providers) = match plan_or_exit(&args.plan, global)? {
        Ok(planned) => planned,
        Err(outcome) => return Ok(outcome),
    };
    let limits = args.limits.limits();
    if args.dry_run {
        let out = args
            .out
            .as_deref()
            .expect("clap requires --out with --dry-run");
        let state = open_state(global)?;
        let files = dry_run(&plan, &state.ledger, &state.store, limits, out)?;
        let files = files
            .into_iter()
            .map(|(path, requests)| DryRunFile { path, requests })
            .collect();
        output::print(&DryRunFiles { files }, global.format)?;
        return Ok(Outcome::Success);
    }
    let routes = routes_for(&providers, &plan.providers, Bounds::default())?;
    let mut state = open_state(global)?;
    let human = global.format == Format::Human;
    let estimate = super::spend::before_sending(&plan, &mut state.ledger, human)?;
    let progress = global.progress();
    let shared = state.shared.take();
    let report = runtime()?.block_on(submit(
        &plan,
        &mut state.ledger,
        &state.store,
        shared.as_ref(),
        &routes,
        limits,
        &progress,
    ));
    progress.finish();
    let report = report?;
    let spent = super::spend::spent(&state.ledger, &report.run_id)?;
    output::print(&WithSpend::new(&report, &estimate, spent), global.format)?;
    Ok(Outcome::Success)
}

/// Plans as `render plan` does, printing its diagnostics (and the budget refusal). `Err` is the
/// outcome to exit with when there is nothing to send: usage error, invalid, over budget.
pub fn plan_or_exit(
    args: &PlanArgs,
    global: &GlobalArgs,
) -> anyhow::Result<Result<(Plan, Providers), Outcome>> {
    match prepare(args, global) {
        Ok(prepared) => checked_plan(prepared, args),
        Err(usage) => {
            crate::report::plan::print_diagnostics(&[usage], &[])?;
            Ok(Err(Outcome::Usage))
        }
    }
}

/// Prints a prepared plan's diagnostics (and the budget refusal); the plan when it may be sent.
pub fn checked_plan(
    prepared: Prepared,
    args: &PlanArgs,
) -> anyhow::Result<Result<(Plan, Providers), Outcome>> {
    crate::report::plan::print_diagnostics(&prepared.run.diagnostics, &prepared.run.inputs)?;
    let outcome = prepared.outcome(args.budget);
    match (prepared.run.plan, outcome) {
        (Some(plan), Outcome::Success) => Ok(Ok((plan, prepared.providers))),
        (Some(plan), Outcome::OverBudget) => {
            if let Err(over) = plan.check_budget(args.budget.unwrap_or_default()) {
                crate::report::plan::print_over_budget(&over);
            }
            Ok(Err(outcome))
        }
        _ => Ok(Err(outcome)),
    }
}
