//! `render cancel RUN`: cancel a run's batches and jobs at their providers, keeping what
//! finished (the next `render harvest` downloads it).

use super::state::{Bounds, find_run, open_state, providers, reachable_routes, runtime};
use super::{Format, GlobalArgs, Outcome};
use crate::cancel::cancel_run;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to cancel: its id, a prefix only it has, or `last`.
    pub run: String,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let mut state = open_state(global)?;
    let run = find_run(&state.ledger, &args.run)?;
    let routes = reachable_routes(&providers(global)?, None, Bounds::default())?;
    let progress = global.progress();
    let outcome = runtime()?.block_on(cancel_run(&run, &mut state.ledger, &routes, &progress))?;
    progress.finish();
    match global.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        Format::Human => {
            println!(
                "run {}: cancelled {} batch(es) and {} job(s); {} harvested request(s) kept",
                outcome.run_id,
                outcome.batches_cancelled.len(),
                outcome.jobs_cancelled,
                outcome.kept
            );
            if !outcome.batches_cancelled.is_empty() || outcome.jobs_left_running > 0 {
                println!("  `render harvest` downloads what finished before the cancel");
            }
            for problem in &outcome.problems {
                eprintln!(
                    "warning: {}",
                    crate::report::terminal::escape_controls(problem)
                );
            }
        }
    }
    Ok(if outcome.problems.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
