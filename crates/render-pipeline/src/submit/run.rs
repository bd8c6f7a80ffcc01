//! The run a plan continues, or a new one: "the same night" is the same plan hash.

use rand::RngCore;

use crate::ledger::{Ledger, RunItem, RunRow, unix_now};
use crate::plan::Plan;
use render_wire::key::Sha256Hex;

use super::SubmitError;

/// The run this plan continues (an unfinished run of the same plan), or a new one.
pub(super) fn open_run(plan: &Plan, ledger: &mut Ledger) -> Result<(RunRow, bool), SubmitError> {
    let plan_hash = plan_hash(plan);
    if let Some(run) = ledger.open_run_for_plan(&plan_hash)? {
        return Ok((run, true));
    }
    let created_at = unix_now();
    let run = RunRow {
        id: new_run_id(created_at),
        created_at,
        project: plan.project.clone(),
        plan_hash,
        sources: plan
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        provider: plan.provider_summary(),
        out_dir: None,
        done: false,
        partial: plan.partial,
        cancelled: false,
    };
    let items: Vec<RunItem> = plan
        .requests
        .iter()
        .map(|r| RunItem {
            shot_id: r.shot_id.to_string(),
            provider: Some(r.provider.to_string()),
            lane: r.lane,
            take: r.take,
            takes: r.takes,
            key: r.key,
            cost: r.cost(),
            tags: r.tags.to_vec(),
        })
        .collect();
    ledger.create_run(&run, &items)?;
    Ok((run, false))
}

/// What identifies "the same night": the set of requests and where they came from.
pub fn plan_hash(plan: &Plan) -> String {
    let mut lines: Vec<String> = plan
        .requests
        .iter()
        .map(|r| format!("{}\t{}\t{}\t{}", r.shot_id, r.take, r.key, r.lane))
        .collect();
    lines.sort();
    let mut text = lines.join("\n");
    for source in &plan.sources {
        text.push('\n');
        text.push_str(&source.display().to_string());
    }
    Sha256Hex::of(text.as_bytes()).hex()
}

fn new_run_id(now: i64) -> String {
    let mut suffix = [0u8; 3];
    rand::rng().fill_bytes(&mut suffix);
    format!("run-{now}-{}", hex::encode(suffix))
}
