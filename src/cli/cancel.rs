//! `render cancel RUN`: cancel a run's batches and jobs at their providers, keeping what
//! finished (the next `render harvest` downloads it).

use super::state::{Bounds, existing_ledger, find_run, providers, reachable_routes, runtime};
use super::{Format, GlobalArgs, Outcome, UsageError};
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
