//! `render harvest` against the sandbox: every video collected, byte for byte, whatever happens.

mod common;

use common::*;
use render_sandbox::SandboxConfig;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule, Trigger};
use sha2::{Digest, Sha256};

fn sha256_file(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn assert_cache_is_sound(night: &Night) {
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
}

#[test]
fn every_video_in_the_store_is_what_the_sandbox_served() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(6, "bytes"));
    let report = night.full_night("shots.yaml");
    assert_eq!(report["runs"][0]["harvested"], 6);
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 6);
    assert!(night.path("renders/test-night/shot-000.jpg").is_file());
    assert_cache_is_sound(&night);
}

#[test]
fn a_second_harvest_downloads_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "again"));
    night.full_night("shots.yaml");
    let before = night.sandbox.stats().bytes_served;
    let again = night.json(&["harvest"]);
    assert_eq!(again["downloaded_videos"], 0);
    assert_eq!(night.sandbox.stats().bytes_served, before);

    let status = night.json(&["status"]);
    let run = &status[0];
    assert_eq!(
        (run["done"].as_bool(), run["requests"].as_u64()),
        (Some(true), Some(3))
    );
    let batch = &run["batches"][0];
    assert_eq!(batch["status"], "completed");
    assert_eq!(
        (batch["completed"].as_u64(), batch["harvested"].as_bool()),
        (Some(3), Some(true))
    );
}

#[test]
fn dropped_connections_mid_download_end_with_every_video_intact() {
    let faults = FaultConfig::none().seed(11).rule(
        FaultRule::new(
            "GET /v1/videos/*/content",
            Fault::Drop {
                after_bytes: 20_000,
            },
        )
        .rate(0.5),
    );
    let night = Night::with(SandboxConfig::default().video_bytes(200_000).faults(faults));
    night.write("shots.yaml", shot_list(6, "drops"));
    let report = night.full_night("shots.yaml");
    assert_eq!(report["runs"][0]["harvested"], 6);
    let stats = night.sandbox.stats();
    assert!(
        stats.faults_injected.get("drop").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        stats.requests_with("GET /v1/videos/{id}/content", 206) > 0,
        "resumed by Range: {stats:?}"
    );
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 6);
    assert_cache_is_sound(&night);
}

#[test]
fn a_process_killed_mid_download_resumes_and_loses_nothing() {
    let night = Night::with(SandboxConfig::default().video_bytes(3 * 1024 * 1024));
    night.write("shots.yaml", shot_list(3, "kill-mid"));
    night.ok(&["submit", "shots.yaml"]);
    let killed = night.render_with(
        &["harvest", "--watch", "--jobs", "1"],
        &[("RENDER_FAILPOINT", "harvest-mid-download")],
    );
    assert!(
        !killed.status.success(),
        "the failpoint must kill the process"
    );
    // It died past the second MiB of a video: all of it but the two write blocks (1 MiB at
    // most) is in the partial the rerun resumes from.
    let partials = partial_videos(&night.state_dir());
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert!(
        partials[0] > 1 << 20,
        "the partial holds {} bytes",
        partials[0]
    );

    let report = night.json(&["harvest", "--watch"]);
    assert_eq!(report["runs"][0]["harvested"], 3);
    assert!(
        night
            .sandbox
            .stats()
            .requests_with("GET /v1/videos/{id}/content", 206)
            > 0
    );
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 3);
    assert_cache_is_sound(&night);
}

/// The lengths of the partial video downloads under `dir`.
fn partial_videos(dir: &std::path::Path) -> Vec<u64> {
    let mut lengths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            lengths.extend(partial_videos(&path));
        } else if path.to_string_lossy().ends_with("-video.part") {
            lengths.push(std::fs::metadata(&path).unwrap().len());
        }
    }
    lengths
}

#[test]
fn a_process_killed_between_videos_loses_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(4, "kill-between"));
    night.ok(&["submit", "shots.yaml"]);
    let killed = night.render_with(
        &["harvest", "--watch"],
        &[("RENDER_FAILPOINT", "harvest-after-video")],
    );
    assert!(!killed.status.success());
    night.json(&["harvest", "--watch"]);
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 4);
    assert_eq!(night.sandbox.stats().videos_created, 4);
    assert_cache_is_sound(&night);
}

/// `--jobs 1` streams one video at a time, and the next one streams while the one before is
/// made durable and its thumbnail fetched: never a third download at once.
#[test]
fn the_next_video_streams_while_the_one_before_finishes() {
    // Every content answer waits 300 ms, so a thumbnail still in progress is seen beside the
    // next video's download whenever the two overlap.
    let faults = FaultConfig::none().rule(FaultRule::new(
        "GET /v1/videos/*/content",
        Fault::Slow { delay_ms: 300 },
    ));
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(64 * 1024)
            .faults(faults),
    );
    night.write("shots.yaml", shot_list(4, "overlap"));
    night.ok(&["submit", "shots.yaml"]);
    let report = night.json(&["harvest", "--watch", "--jobs", "1"]);
    assert_eq!(report["runs"][0]["harvested"], 4);
    let stats = night.sandbox.stats();
    assert!(stats.bytes_served["thumbnail"] > 0, "{stats:?}");
    assert_eq!(
        stats.peak_in_progress.get("GET /v1/videos/{id}/content"),
        Some(&2),
        "one video streaming, one finishing: {stats:?}"
    );
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 4);
}

#[test]
fn videos_that_expire_before_harvest_are_lost_and_retry_renders_only_those() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "expire"));
    let submitted = night.json(&["submit", "shots.yaml"]);
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    let batch_id = submitted["batches"][0]["batch_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_batch(&night, &batch_id, "completed");
    night.sandbox.advance_clock(25 * 3600);

    let lost = night.render(&["harvest", "--format", "json"]);
    assert_eq!(lost.status.code(), Some(5), "{}", stderr_of(&lost));
    let manifest = night.manifest("renders/test-night");
    for entry in manifest["requests"].as_array().unwrap() {
        assert_eq!(entry["status"], "lost");
        assert_eq!(entry["error"]["retryable"], true);
    }

    night.ok(&["retry", &run_id]);
    let report = night.json(&["harvest", "--watch"]);
    assert_eq!(report["runs"][0]["harvested"], 3);
    assert_eq!(
        night.sandbox.stats().videos_created,
        6,
        "the 3 lost ones rendered again, nothing more"
    );
    assert_eq!(night.json(&["retry", &run_id])["submitted"], 0);
}

#[test]
fn an_expired_batch_loses_only_what_never_ran_and_retry_renders_only_those() {
    let faults = FaultConfig::none().batch_expire(Trigger::nth([1]));
    let night = Night::with(SandboxConfig::default().video_bytes(4096).faults(faults));
    night.write("shots.yaml", shot_list(4, "batch-expire"));
    let run_id = night.json(&["submit", "shots.yaml"])["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = night.render(&["harvest", "--watch", "--format", "json"]);
    assert_eq!(first.status.code(), Some(5), "{}", stderr_of(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let lost = report["runs"][0]["lost"].as_u64().unwrap();
    let harvested = report["runs"][0]["harvested"].as_u64().unwrap();
    assert!(lost > 0 && lost + harvested == 4, "{report}");
    let created_before = night.sandbox.stats().videos_created;

    let retry = night.json(&["retry", &run_id]);
    assert_eq!(retry["submitted"].as_u64().unwrap(), lost);
    let after = night.json(&["harvest", "--watch"]);
    assert_eq!(after["runs"][0]["harvested"], 4);
    assert_eq!(night.sandbox.stats().videos_created, created_before + lost);
}

#[test]
fn failed_requests_carry_their_errors_into_the_manifest() {
    let faults = FaultConfig::none()
        .moderation(Trigger::nth([1]))
        .batch_request_failure(Trigger::nth([2]));
    let night = Night::with(SandboxConfig::default().video_bytes(4096).faults(faults));
    night.write("shots.yaml", shot_list(4, "failures"));
    night.ok(&["submit", "shots.yaml"]);
    let output = night.render(&["harvest", "--watch", "--format", "json"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    let manifest = night.manifest("renders/test-night");
    let failed: Vec<&serde_json::Value> = manifest["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{manifest}");
    let kinds: std::collections::BTreeSet<&str> = failed
        .iter()
        .map(|e| e["error"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["policy", "server"].into_iter().collect());
    for entry in failed {
        assert!(!entry["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[test]
fn a_cached_shot_is_laid_out_from_the_store_under_a_new_name_without_any_request() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(2, "reuse"));
    night.full_night("shots.yaml");
    let before = night.sandbox.stats();

    let renamed = shot_list(2, "reuse")
        .replace("id: shot-000", "id: opening")
        .replace("project: test-night", "project: recut");
    night.write("recut.yaml", renamed);
    let plan = night.json(&["plan", "recut.yaml"]);
    assert_eq!(plan["cached"], 2);
    assert_eq!(plan["total_usd"], "0.00");
    let submit = night.json(&["submit", "recut.yaml"]);
    assert_eq!(submit["submitted"], 0);
    night.json(&["harvest"]);
    assert!(night.path("renders/recut/opening.mp4").is_file());
    assert_eq!(
        sha256_file(&night.path("renders/recut/opening.mp4")),
        sha256_file(&night.path("renders/test-night/shot-000.mp4"))
    );
    let after = night.sandbox.stats();
    assert_eq!(after.videos_created, before.videos_created);
    assert_eq!(after.batches_created, before.batches_created);
    assert_eq!(after.bytes_served, before.bytes_served);
}

#[test]
fn shot_ids_in_the_ledger_cannot_write_outside_the_output_folder() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "escape"));
    night.full_night("shots.yaml");
    // A ledger written by something else (or an older render) names a path-like shot.
    let ledger =
        render_pipeline::ledger::Ledger::open(&night.state_dir().join("ledger.sqlite")).unwrap();
    let run = ledger.runs().unwrap().remove(0);
    drop(ledger);
    let conn = rusqlite::Connection::open(night.state_dir().join("ledger.sqlite")).unwrap();
    conn.execute(
        "UPDATE run_items SET shot_id = '../../escaped' WHERE run_id = ?1",
        [&run.id],
    )
    .unwrap();
    conn.execute("UPDATE runs SET done = 0", []).unwrap();
    drop(conn);
    night.json(&["harvest", &run.id]);
    assert!(!night.path("escaped.mp4").exists());
    assert!(
        !night
            .dir
            .path()
            .parent()
            .unwrap()
            .join("escaped.mp4")
            .exists()
    );
}

/// Polls the sandbox until the batch reaches `status`.
fn wait_for_batch(night: &Night, batch_id: &str, status: &str) {
    let url = format!("{}/batches/{batch_id}", night.sandbox.base_url());
    for _ in 0..200 {
        let batch: serde_json::Value = serde_json::from_slice(&blocking_get(&url)).unwrap();
        if batch["status"] == status {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("batch {batch_id} never reached {status}");
}

#[test]
fn cache_gc_keeps_what_retained_runs_use_and_forgets_the_rest() {
    let night = Night::new();
    night.write("old.yaml", shot_list(2, "old"));
    night.full_night("old.yaml");
    night.write("new.yaml", shot_list(3, "new"));
    night.full_night("new.yaml");
    assert_eq!(night.json(&["cache", "ls"]).as_array().unwrap().len(), 5);

    let gc = night.json(&["cache", "gc", "--keep-runs", "1"]);
    assert_eq!(
        gc["removed"], 4,
        "two videos and two thumbnails of the old run: {gc}"
    );
    let left = night.json(&["cache", "ls"]);
    assert_eq!(left.as_array().unwrap().len(), 3);
    assert_cache_is_sound(&night);
    // The old run's shots are no longer cached: planning them prices them again.
    assert_eq!(night.json(&["plan", "old.yaml"])["cached"], 0);
    assert_eq!(night.json(&["plan", "new.yaml"])["cached"], 3);
}

#[test]
fn two_shots_never_write_the_same_output_file() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: clash\nshots:\n  - {id: a, prompt: first, takes: 2}\n  - {id: a_take2, prompt: second}\n  - {id: B, prompt: third}\n  - {id: b, prompt: fourth}\n",
    );
    night.ok(&["submit", "shots.yaml"]);
    let harvest = night.render(&["harvest", "--watch"]);
    assert_eq!(harvest.status.code(), Some(0), "{}", stderr_of(&harvest));
    // Renamed outputs are said once, through the reporter, as a warning naming the shot.
    let stderr = stderr_of(&harvest);
    let renamed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is taken by another shot"))
        .collect();
    assert_eq!(renamed.len(), 2, "{stderr}");
    assert!(
        renamed.iter().all(|l| l.starts_with("warning: ")),
        "{stderr}"
    );
    let manifest = night.manifest("renders/clash");
    let paths: std::collections::BTreeSet<String> = manifest["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["video_path"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(paths.len(), 5, "{manifest}");
    assert_eq!(assert_byte_exact(&night, "renders/clash"), 5);
}

#[test]
fn retry_reuploads_only_an_unchanged_reference_and_works_from_any_folder() {
    let night = Night::new();
    night.write("refs/first.png", png_of(1280, 720, 1));
    night.write(
        "shots.yaml",
        "project: ref-retry\nshots:\n  - {id: a, prompt: a kite, reference: refs/first.png}\n",
    );
    let submitted = night.json(&["submit", "shots.yaml"]);
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    wait_for_batch(
        &night,
        submitted["batches"][0]["batch_id"].as_str().unwrap(),
        "completed",
    );
    night.sandbox.advance_clock(25 * 3600);
    assert_eq!(night.render(&["harvest"]).status.code(), Some(5));
    // The upload is a day old: make the provider forget it so retry must upload again.
    let conn = rusqlite::Connection::open(night.state_dir().join("ledger.sqlite")).unwrap();
    conn.execute("DELETE FROM assets", []).unwrap();
    drop(conn);

    night.write("refs/first.png", png_of(1280, 720, 2));
    let changed = night.render(&["retry", &run_id]);
    assert_eq!(changed.status.code(), Some(10));
    assert!(
        stderr_of(&changed).contains("changed since"),
        "{}",
        stderr_of(&changed)
    );
    assert_eq!(night.sandbox.stats().videos_created, 1);

    night.write("refs/first.png", png_of(1280, 720, 1));
    let elsewhere = tempfile::tempdir().unwrap();
    let output = night
        .command(&["retry", &run_id])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_success(&output, &["retry"]);
    assert_eq!(
        night.json(&["harvest", "--watch"])["runs"][0]["harvested"],
        1
    );
    assert_eq!(night.sandbox.stats().videos_created, 2);
}

#[test]
fn nightly_also_collects_what_an_earlier_night_left_unharvested() {
    let night = Night::new();
    let monday = shot_list(2, "monday").replace("project: test-night", "project: monday");
    night.write("monday.yaml", monday);
    let submitted = night.json(&["submit", "monday.yaml"]);
    wait_for_batch(
        &night,
        submitted["batches"][0]["batch_id"].as_str().unwrap(),
        "completed",
    );

    let tuesday = shot_list(2, "tuesday").replace("project: test-night", "project: tuesday");
    night.write("tuesday.yaml", tuesday);
    night.ok(&["nightly", "tuesday.yaml"]);
    for project in ["monday", "tuesday"] {
        assert_eq!(assert_byte_exact(&night, &format!("renders/{project}")), 2);
    }
}
