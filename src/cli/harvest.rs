//! `render harvest`.

use std::path::PathBuf;
use std::time::Duration;

use super::state::{open_state, providers, reachable_routes, runtime};
use super::{Format, GlobalArgs, Outcome};
use crate::harvest::{HarvestOptions, HarvestReport, harvest};
use crate::lanes::direct::MissingRule;
use crate::report::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs to harvest (default: every run with unharvested batches).
    pub runs: Vec<String>,
    /// Concurrent downloads.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Poll (with backoff) until every batch is finished and harvested.
    #[arg(long)]
    pub watch: bool,
    /// Output folder (default: renders/<project>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the work sent to this provider (default: every provider configured here).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    #[command(flatten)]
    pub missing: MissingArgs,
}

/// When a server's "not found" is believed.
#[derive(Debug, Clone, clap::Args)]
pub struct MissingArgs {
    /// How long a server must keep answering "not found" for a batch, job or video (on 3
    /// polls or more) before its requests are taken as lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub missing_grace: u64,
}

impl MissingArgs {
    pub fn rule(&self) -> MissingRule {
        MissingRule {
            grace: Duration::from_secs(self.missing_grace),
            ..MissingRule::default()
        }
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let routes = reachable_routes(&providers(global)?, args.provider.as_deref())?;
    let mut state = open_state(global)?;
    let options = HarvestOptions {
        jobs: args.jobs,
        watch: args.watch,
        out_dir: args.out,
        max_poll_interval: Duration::from_secs(60),
        missing: args.missing.rule(),
    };
    let progress = Progress::new(global.format == Format::Json);
    let report = runtime()?.block_on(harvest(
        &args.runs,
        &mut state.ledger,
        &routes,
        &state.store,
        &options,
        &progress,
    ));
    progress.finish();
    let report = report?;
    print_report(&report, global.format)?;
    Ok(outcome(&report, args.watch))
}

/// The exit status of a harvest. After waiting (`watched`), a request still pending means
/// something is stuck: that is a failure to report, never a success.
pub fn outcome(report: &HarvestReport, watched: bool) -> Outcome {
    if watched && !report.all_done() {
        let pending: usize = report.runs.iter().map(|r| r.pending).sum();
        eprintln!(
            "error: {pending} requests are still pending after waiting; run again to continue"
        );
        Outcome::Failure
    } else if report.any_lost() {
        Outcome::SomeLost
    } else if report.any_failed() {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    }
}

pub fn print_report(report: &HarvestReport, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "downloaded {} videos ({} bytes)",
        report.downloaded_videos, report.downloaded_bytes
    );
    for run in &report.runs {
        println!(
            "{}: {} harvested, {} failed, {} lost, {} pending of {}{}",
            run.run_id,
            run.harvested,
            run.failed,
            run.lost,
            run.pending,
            run.requests,
            run.manifest
                .as_ref()
                .map(|m| format!(" — manifest {}", m.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
