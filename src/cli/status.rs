//! `render status`: each run and batch with its status, counts and time left before expiry.

use serde::Serialize;

use super::{Format, GlobalArgs, Outcome, UsageError};
use crate::harvest::human_duration;
use crate::ledger::{BatchRow, Ledger, RunRow, unix_now};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this run (default: every run, newest first).
    pub run: Option<String>,
}

#[derive(Serialize)]
struct RunStatus {
    run_id: String,
    project: Option<String>,
    created_at: i64,
    done: bool,
    sources: Vec<String>,
    requests: usize,
    batches: Vec<BatchStatus>,
}

#[derive(Serialize)]
struct BatchStatus {
    part: u32,
    batch_id: Option<String>,
    status: String,
    requests: u64,
    completed: u64,
    failed: u64,
    /// Seconds until the provider deletes the batch's videos (by this machine's clock).
    outputs_expire_in: Option<i64>,
    harvested: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ledger = Ledger::open(&global.state_dir.join(super::state::LEDGER_FILE))?;
    let runs = match &args.run {
        Some(id) => vec![ledger.run(id)?.ok_or_else(|| {
            UsageError(format!("no run named {id} (`render status` lists them)"))
        })?],
        None => ledger.runs()?,
    };
    let statuses = runs
        .iter()
        .map(|run| run_status(run, &ledger))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match global.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&statuses)?),
        Format::Human => print_human(&statuses),
    }
    Ok(Outcome::Success)
}

fn run_status(run: &RunRow, ledger: &Ledger) -> anyhow::Result<RunStatus> {
    let now = unix_now();
    let batches = ledger
        .batches_of_run(&run.id)?
        .iter()
        .map(|b: &BatchRow| BatchStatus {
            part: b.part,
            batch_id: b.batch_id.clone(),
            status: b.status.clone(),
            requests: b.request_count,
            completed: b.completed,
            failed: b.failed,
            outputs_expire_in: b.outputs_expire_at().map(|t| t - now),
            harvested: b.harvested,
        })
        .collect();
    Ok(RunStatus {
        run_id: run.id.clone(),
        project: run.project.clone(),
        created_at: run.created_at,
        done: run.done,
        sources: run.sources.clone(),
        requests: ledger.run_items(&run.id)?.len(),
        batches,
    })
}

fn print_human(runs: &[RunStatus]) {
    if runs.is_empty() {
        println!("no runs yet (`render submit SHOTLIST` starts one)");
    }
    for run in runs {
        let state = if run.done { "done" } else { "open" };
        println!(
            "{}  {}  {} requests  {}  [{}]",
            run.run_id,
            run.project.as_deref().unwrap_or("-"),
            run.requests,
            run.sources.join(", "),
            state
        );
        for b in &run.batches {
            let expiry = match (b.harvested, b.outputs_expire_in) {
                (true, _) => "harvested".to_string(),
                (false, Some(left)) if left <= 0 => "videos expired".to_string(),
                (false, Some(left)) => format!("videos deleted in {}", human_duration(left)),
                (false, None) => String::new(),
            };
            println!(
                "  part {:<3} {:<28} {:<12} {:>5} done {:>5} failed of {:<5} {expiry}",
                b.part,
                b.batch_id.as_deref().unwrap_or("(not created)"),
                b.status,
                b.completed,
                b.failed,
                b.requests,
            );
        }
    }
}
