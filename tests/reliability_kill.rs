//! `render` killed with SIGKILL at seeded random moments, several times in one night, during
//! submit and during harvest, then run again until it completes: nothing is submitted twice,
//! nothing is lost, nothing in the store is corrupt.
//!
//! Each test prints its seed; replay a failure with `RELIABILITY_SEED=N cargo test --test
//! reliability_kill NAME`.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::time::Duration;

use rand::Rng;
use reliability::*;
use render_sandbox::faults::FaultConfig;

/// Kills `render ARGS` `kills` times, each after a random 0..`window_ms` ms; returns how many
/// kills landed before the command finished on its own.
fn kill_repeatedly(
    night: &common::Night,
    args: &[&str],
    seeded: &mut Seeded,
    kills: usize,
    window_ms: u64,
) -> usize {
    let mut landed = 0;
    for _ in 0..kills {
        let after = Duration::from_millis(seeded.rng.random_range(0..window_ms));
        if kill_after(night, args, after) {
            landed += 1;
        }
    }
    landed
}

#[test]
fn kills_during_submit_never_create_a_batch_twice() {
    let mut seeded = Seeded::new("kills_during_submit_never_create_a_batch_twice", 61);
    let night = night_with(4096, FaultConfig::none());
    night.write("shots.yaml", big_list(150, "kill-submit"));
    // Ten requests a batch: fifteen batch creations for the kills to land between.
    let submit = ["submit", "shots.yaml", "--max-batch-requests", "10"];
    let landed = kill_repeatedly(&night, &submit, &mut seeded, 8, 400);
    eprintln!("{landed} kills landed during submit");

    let (output, _) = rerun_until_settled(&night, &submit, 3);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        tail(&common::stderr_of(&output))
    );
    let batches = night.sandbox.stats().batches_created;
    assert_eq!(batches, 15, "one batch per part, however often submit died");
    let again = night.json(&["submit", "shots.yaml", "--max-batch-requests", "10"]);
    assert_eq!(again["submitted"], 0, "{again}");

    let (harvest, _) = rerun_until_settled(&night, &["harvest", "--watch"], 3);
    assert_eq!(harvest.status.code(), Some(0));
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.harvested, tally.batches), (150, 15));
}

#[test]
fn kills_during_harvest_resume_downloads_and_corrupt_nothing() {
    let mut seeded = Seeded::new(
        "kills_during_harvest_resume_downloads_and_corrupt_nothing",
        7,
    );
    // Large videos, so kills land mid-download.
    let night = night_with(1536 * 1024, FaultConfig::none());
    night.write("shots.yaml", big_list(10, "kill-harvest"));
    night.ok(&["submit", "shots.yaml"]);
    let harvest = ["harvest", "--watch", "--jobs", "2"];
    let landed = kill_repeatedly(&night, &harvest, &mut seeded, 8, 700);
    eprintln!("{landed} kills landed during harvest");

    let (output, _) = rerun_until_settled(&night, &harvest, 3);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        tail(&common::stderr_of(&output))
    );
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(tally.harvested, 10);
    assert!(
        landed > 0,
        "no kill landed: the window is too short for this machine"
    );
}

#[test]
fn a_nightly_killed_again_and_again_finishes_the_same_run() {
    let mut seeded = Seeded::new(
        "a_nightly_killed_again_and_again_finishes_the_same_run",
        1999,
    );
    let night = night_with(8192, FaultConfig::none());
    night.write("shots.yaml", big_list(120, "kill-nightly"));
    let args = nightly_args("shots.yaml", &["--max-batch-requests", "20"]);
    let landed = kill_repeatedly(&night, &args, &mut seeded, 6, 1500);
    eprintln!("{landed} kills landed during nightly");

    let (output, _) = rerun_until_settled(&night, &args, 3);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        tail(&common::stderr_of(&output))
    );
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.harvested, tally.batches), (120, 6));
    // Every kill before the end was continued by the next run; only a rerun after the night
    // was complete starts a fresh (all cached, empty) run.
    let runs = night.json(&["status"]);
    let with_batches = runs.as_array().map_or(0, |all| {
        all.iter()
            .filter(|r| r["batches"] != serde_json::json!([]))
            .count()
    });
    assert_eq!(with_batches, 1, "one run submitted everything: {runs}");
}
