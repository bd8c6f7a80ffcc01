//! `render harvest`.

use std::path::PathBuf;
use std::time::Duration;

use super::state::{Bounds, open_state, providers, reachable_routes, runtime};
use super::{GlobalArgs, Outcome};
use crate::report::output;
use render_pipeline::api::client::DEFAULT_MAX_DOWNLOAD_BYTES;
use render_pipeline::harvest::{HarvestOptions, HarvestReport, harvest};
use render_pipeline::lanes::direct::MissingRule;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs to harvest (default: every run with unharvested batches).
    pub runs: Vec<String>,
    /// Videos downloading at once (as many more are made durable and fetch their thumbnails).
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
    pub trust: TrustArgs,
}

/// How far a server's answers are believed, and how much of them is read.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// How long a server must keep answering "not found" for a batch, job or video (on 3
    /// polls or more) before its requests are taken as lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub missing_grace: u64,
    /// The most bytes one video may be; a longer body is abandoned (default: 2 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DOWNLOAD_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_video_bytes: u64,
    /// The longest silence while a video downloads before the attempt is given up.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: u64,
}

impl TrustArgs {
    pub fn rule(&self) -> MissingRule {
        MissingRule {
            grace: Duration::from_secs(self.missing_grace),
            ..MissingRule::default()
        }
    }

    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_download_bytes: self.max_video_bytes,
            stall: Duration::from_secs(self.stall_timeout),
        }
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let routes = reachable_routes(
        &providers(global)?,
        args.provider.as_deref(),
        args.trust.bounds(),
    )?;
    let mut state = open_state(global)?;
    let options = HarvestOptions {
        jobs: args.jobs,
        watch: args.watch,
        out_dir: args.out,
        max_poll_interval: Duration::from_secs(60),
        missing: args.trust.rule(),
        shared: state.shared.take(),
    };
    let progress = global.progress();
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
    output::print(&report, global.format)?;
    super::report::write_sheets(&report, &state.ledger, global)?;
    Ok(outcome(&report, args.watch))
}

/// The exit status of a harvest. After waiting (`watched`), a request still pending means
/// something is stuck: that is a failure to report, never a success.
pub fn outcome(report: &HarvestReport, watched: bool) -> Outcome {
    if watched && !report.all_done() {
        let pending: usize = report.runs.iter().map(|r| r.pending).sum();
        output::error(format!(
            "{pending} requests are still pending after waiting; run again to continue"
        ));
        Outcome::Failure
    } else if report.any_lost() {
        Outcome::SomeLost
    } else if report.any_failed() {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    }
}
