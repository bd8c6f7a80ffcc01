//! `render cancel RUN`: cancel a run's batches and jobs at their providers, keeping what
//! finished (the next `render harvest` downloads it).

use super::state::{Bounds, existing_ledger, find_run, providers, reachable_routes, runtime};
use super::{GlobalArgs, Outcome, UsageError};
use crate::report::output;
use render_pipeline::cancel::cancel_run;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to cancel: its id, a prefix only it has, or `last`.
    pub run: String,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Without the state directory's lock: a cancel is wanted most while the night that holds
    // it runs. It only marks the run, records what it stopped (SQLite keeps the writes of two
    // processes apart) and asks the providers; the running night then finds its batches
    // cancelled and its jobs settled, harvests what finished and stops.
    let mut ledger = existing_ledger(global)?.ok_or_else(|| {
        UsageError(format!(
            "no runs to cancel (no ledger in {})",
            global.state_dir.display()
        ))
    })?;
    let run = find_run(&ledger, &args.run)?;
    let routes = reachable_routes(&providers(global)?, None, Bounds::default())?;
    let progress = global.progress();
    let outcome = runtime()?.block_on(cancel_run(&run, &mut ledger, &routes, &progress))?;
    progress.finish();
    output::print(&outcome, global.format)?;
    for problem in &outcome.problems {
        output::warn(problem);
    }
    Ok(if outcome.problems.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
