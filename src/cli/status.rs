//! `render status`: each run and batch with its status, counts and time left before expiry.

use serde::Serialize;

use super::{Format, GlobalArgs, Outcome, UsageError};
use crate::harvest::human_duration;
use crate::ledger::{BatchRow, Ledger, RunRow, unix_now};
use crate::report::terminal::escape_controls;

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
    /// How many of the run's requests stand where: harvested, failed, lost, pending, …
    by_status: std::collections::BTreeMap<&'static str, usize>,
    batches: Vec<BatchStatus>,
    /// The run's direct-lane jobs still rendering (or sent and not yet confirmed).
    jobs: Vec<JobStatus>,
}

#[derive(Serialize)]
struct JobStatus {
    shot_id: String,
    provider: String,
    video_id: Option<String>,
    /// `intent` (sent, not yet confirmed) or the server's last word (`queued`, `in_progress`).
    status: String,
    progress: Option<u32>,
}

#[derive(Serialize)]
struct BatchStatus {
    part: u32,
    batch_id: Option<String>,
    status: String,
    requests: u64,
    completed: u64,
    failed: u64,
    /// Seconds until the provider deletes the batch's videos (by the provider's clock, as the
    /// last harvest found it).
    outputs_expire_in: Option<i64>,
    harvested: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Asking is not changing: no state directory is created to answer.
    let Some(ledger) = super::state::existing_ledger(global)? else {
        if let Some(id) = &args.run {
            return Err(UsageError(format!(
                "no run named {id} (no ledger in {})",
                global.state_dir.display()
            ))
            .into());
        }
        match global.format {
            Format::Json => println!("[]"),
            Format::Human => print_human(&[]),
        }
        return Ok(Outcome::Success);
    };
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
            // By the provider's clock as the last poll found it: the sandbox's runs fast, and a
            // real server's may simply differ from this machine's.
            outputs_expire_in: b
                .outputs_expire_at()
                .map(|t| t - (now + b.clock_offset.unwrap_or(0))),
            harvested: b.harvested,
        })
        .collect();
    let items = ledger.run_items(&run.id)?;
    let mut by_status = std::collections::BTreeMap::new();
    let mut keys = std::collections::HashSet::new();
    for item in &items {
        let status = ledger
            .request(&item.key)?
            .map_or("pending", |r| r.status.as_str());
        *by_status.entry(status).or_insert(0) += 1;
        keys.insert(item.key);
    }
    let mut jobs = Vec::new();
    for job in ledger
        .open_jobs()?
        .into_iter()
        .filter(|j| keys.contains(&j.key))
    {
        let shot_id = ledger
            .request(&job.key)?
            .map(|r| r.shot_id)
            .unwrap_or_default();
        jobs.push(JobStatus {
            shot_id,
            provider: job.provider,
            video_id: job.video_id,
            status: job
                .server_status
                .unwrap_or_else(|| job.status.as_str().to_string()),
            progress: job.progress,
        });
    }
    Ok(RunStatus {
        run_id: run.id.clone(),
        project: run.project.clone(),
        created_at: run.created_at,
        done: run.done,
        sources: run.sources.clone(),
        requests: items.len(),
        by_status,
        batches,
        jobs,
    })
}

fn print_human(runs: &[RunStatus]) {
    if runs.is_empty() {
        println!("no runs yet (`render submit SHOTLIST` starts one)");
    }
    for run in runs {
        let state = if run.done { "done" } else { "open" };
        let counts: Vec<String> = run
            .by_status
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        println!(
            "{}  {}  {} requests ({})  {}  [{}]",
            run.run_id,
            run.project.as_deref().unwrap_or("-"),
            run.requests,
            counts.join(", "),
            run.sources.join(", "),
            state
        );
        for job in &run.jobs {
            let progress = job.progress.map(|p| format!(" {p}%")).unwrap_or_default();
            println!(
                "  job  {:<20} {:<12} {} {}{progress}",
                job.shot_id,
                job.provider,
                escape_controls(job.video_id.as_deref().unwrap_or("(not confirmed)")),
                escape_controls(&job.status),
            );
        }
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
                escape_controls(b.batch_id.as_deref().unwrap_or("(not created)")),
                escape_controls(&b.status),
                b.completed,
                b.failed,
                b.requests,
            );
        }
    }
}
