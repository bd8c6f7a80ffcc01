//! `render status`: each run's standing, asked of its providers, with the time left before
//! its videos expire; `--shots` for every request, `--watch` to keep looking.

use std::io::IsTerminal;
use std::time::Duration;

use super::state::{Bounds, find_run, providers, reachable_routes, runtime};
use super::{Format, GlobalArgs, Outcome, UsageError};
use crate::report::output;
use crate::report::status::Statuses;
use render_pipeline::lanes::Routes;
use render_pipeline::ledger::Ledger;
use render_pipeline::status::{RunStatus, look};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this run: its id, a prefix only it has, or `last` (default: every run, newest
    /// first).
    pub run: Option<String>,
    /// A row for every request: shot, take, provider, lane, status, progress, cost, and its
    /// deadline or the reason it failed.
    #[arg(long)]
    pub shots: bool,
    /// Look again every few seconds until nothing is left pending (for people; scripts call
    /// `render status --format json` when they want to know).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between looks with --watch.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, requires = "watch")]
    pub interval: u64,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    if args.watch && global.format == Format::Json {
        return Err(UsageError(
            "--watch redraws a table for people; with --format json, call `render status` \
             whenever you want to know"
                .into(),
        )
        .into());
    }
    // Asking is not changing: no state directory is created to answer.
    let Some(ledger) = super::state::existing_ledger(global)? else {
        if let Some(id) = &args.run {
            return Err(UsageError(format!(
                "no run named {id} (no ledger in {})",
                global.state_dir.display()
            ))
            .into());
        }
        output::print(&Statuses(&[]), global.format)?;
        return Ok(Outcome::Success);
    };
    let routes = status_routes(global);
    let rt = runtime()?;
    loop {
        let statuses = rt.block_on(gather(&args, &ledger, &routes))?;
        if args.watch && std::io::stdout().is_terminal() {
            // Home and clear: the table replaces itself rather than scrolling.
            output::print_text("\x1b[H\x1b[2J")?;
        }
        output::print(&Statuses(&statuses), global.format)?;
        let settled = statuses.iter().all(|s| s.counts.pending == 0);
        if !args.watch || settled {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

/// Every provider that can be asked from here; none at all (no key, say) is no error: the
/// answer is then the ledger's, as of the last harvest.
fn status_routes(global: &GlobalArgs) -> Routes {
    providers(global)
        .and_then(|p| reachable_routes(&p, None, Bounds::default()))
        .unwrap_or_default()
}

async fn gather(args: &Args, ledger: &Ledger, routes: &Routes) -> anyhow::Result<Vec<RunStatus>> {
    let runs = match &args.run {
        Some(spec) => vec![find_run(ledger, spec)?],
        None => ledger.runs()?,
    };
    let mut statuses = Vec::with_capacity(runs.len());
    for run in &runs {
        // Finished runs have nothing to ask about; only open ones cost a question.
        statuses.push(look(run, ledger, routes, args.shots).await?);
    }
    Ok(statuses)
}
