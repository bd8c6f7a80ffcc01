//! `render submit` against the sandbox: what is sent, what is not, and exactly once.

mod common;

use common::*;
use render_sandbox::SandboxConfig;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule};

/// Runs `render submit shots.yaml` until the failpoint kills it.
fn crash_submit(night: &Night, failpoint: &str) {
    let crashed = night.render_with(
        &["submit", "shots.yaml"],
        &[("RENDER_FAILPOINT", failpoint)],
    );
    assert!(
        !crashed.status.success(),
        "the failpoint {failpoint} must kill the process"
    );
}

#[test]
fn the_jsonl_the_sandbox_received_is_what_the_plan_says() {
    let night = Night::new();
    night.write("lists/refs/first.png", png_of(1280, 720, 1));
    night.write(
        "lists/shots.yaml",
        "project: check\nshots:\n  - id: a\n    prompt: a red kite over dunes\n    model: sora-2-pro\n    size: 1920x1080\n    seconds: 12\n  - id: b\n    prompt: a slow pan across a harbour\n    reference: refs/first.png\n    takes: 2\n",
    );
    let plan = night.json(&["plan", "lists/shots.yaml"]);
    let submitted = night.json(&["submit", "lists/shots.yaml"]);
    let batch_id = submitted["batches"][0]["batch_id"].as_str().unwrap();
    let url = format!("{}/batches/{batch_id}", night.sandbox.base_url());
    let batch: serde_json::Value = serde_json::from_slice(&blocking_get(&url)).unwrap();
    assert_eq!(batch["metadata"]["render_run"], submitted["run_id"]);
    assert_eq!(batch["metadata"]["render_part"], "1");
    assert_eq!(
        batch["metadata"]["render_shot_list"], "shots.yaml",
        "names, not folders"
    );

    let lines = batch_input_lines(&night, &night.state_dir());
    let planned = plan["shots"].as_array().unwrap();
    assert_eq!(lines.len(), planned.len());
    for line in &lines {
        assert_eq!(line["method"], "POST");
        assert_eq!(line["url"], "/v1/videos");
        let custom_id = line["custom_id"].as_str().unwrap();
        let shot = planned
            .iter()
            .find(|s| custom_id.ends_with(s["key"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{custom_id} maps to no planned request"));
        let body = &line["body"];
        match shot["id"].as_str().unwrap() {
            "a" => {
                assert_eq!(body["model"], "sora-2-pro");
                assert_eq!(body["size"], "1920x1080");
                assert_eq!(body["seconds"], "12");
                assert_eq!(body["prompt"], "a red kite over dunes");
                assert!(body.get("input_reference").is_none());
            }
            "b" => {
                assert_eq!(body["model"], "sora-2");
                assert_eq!(body["seconds"], "8");
                let file_id = body["input_reference"]["file_id"].as_str().unwrap();
                assert_eq!(night.file_content(file_id), png_of(1280, 720, 1));
            }
            other => panic!("unexpected shot {other}"),
        }
    }
}

#[test]
fn each_distinct_reference_is_uploaded_once_across_shots_and_nights() {
    let night = Night::new();
    night.write("refs/same.png", png_of(1280, 720, 7));
    night.write("refs/copy.png", png_of(1280, 720, 7));
    night.write("refs/other.png", png_of(1280, 720, 8));
    night.write(
        "monday.yaml",
        "shots:\n  - {id: a, prompt: one, reference: refs/same.png}\n  - {id: b, prompt: two, reference: refs/copy.png}\n  - {id: c, prompt: three, reference: refs/other.png}\n",
    );
    night.ok(&["submit", "monday.yaml"]);
    assert_eq!(night.sandbox.stats().files_uploaded.get("vision"), Some(&2));

    // Tomorrow's list reuses an image under a new name: nothing is uploaded again.
    night.write("refs/renamed.png", png_of(1280, 720, 8));
    night.write(
        "tuesday.yaml",
        "shots:\n  - {id: d, prompt: four, reference: refs/renamed.png}\n",
    );
    night.ok(&["submit", "tuesday.yaml"]);
    let stats = night.sandbox.stats();
    assert_eq!(stats.files_uploaded.get("vision"), Some(&2));
    assert_eq!(stats.batches_created, 2);
}

#[test]
fn a_night_over_the_request_limit_is_split_into_several_batches() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(7, "split"));
    let report = night.json(&["submit", "shots.yaml", "--max-batch-requests", "3"]);
    let sizes: Vec<u64> = report["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(night.sandbox.stats().batches_created, 3);
    assert_eq!(batch_input_lines(&night, &night.state_dir()).len(), 7);
}

#[test]
fn a_night_over_the_byte_limit_is_split_too() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(6, "bytes"));
    night.ok(&["submit", "shots.yaml", "--max-batch-bytes", "700"]);
    let stats = night.sandbox.stats();
    assert!(stats.batches_created >= 3, "{stats:?}");
    assert_eq!(batch_input_lines(&night, &night.state_dir()).len(), 6);
}

#[test]
fn a_second_submit_sends_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(4, "twice"));
    night.ok(&["submit", "shots.yaml"]);
    let before = night.sandbox.stats();
    let second = night.json(&["submit", "shots.yaml"]);
    assert_eq!(second["submitted"], 0);
    assert_eq!(second["skipped_in_flight"], 4);
    let after = night.sandbox.stats();
    assert_eq!(after.batches_created, before.batches_created);
    assert_eq!(after.files_uploaded, before.files_uploaded);
}

#[test]
fn a_crash_after_the_intent_is_written_ends_in_exactly_one_batch() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(5, "intent"));
    crash_submit(&night, "submit-after-intent");
    assert_eq!(night.sandbox.stats().batches_created, 0);

    let rerun = night.json(&["submit", "shots.yaml"]);
    assert_eq!(night.sandbox.stats().batches_created, 1);
    assert_eq!(rerun["batches"].as_array().unwrap().len(), 1);
    assert_eq!(batch_input_lines(&night, &night.state_dir()).len(), 5);
    // And a third run still sends nothing.
    night.ok(&["submit", "shots.yaml"]);
    assert_eq!(night.sandbox.stats().batches_created, 1);
}

#[test]
fn a_crash_after_the_batch_is_created_adopts_it_instead_of_creating_another() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(5, "created"));
    crash_submit(&night, "submit-after-create");
    assert_eq!(night.sandbox.stats().batches_created, 1);

    let rerun = night.json(&["submit", "shots.yaml"]);
    assert_eq!(night.sandbox.stats().batches_created, 1);
    assert_eq!(rerun["batches"][0]["adopted"], true);
    let harvest = night.json(&["harvest", "--watch"]);
    assert_eq!(harvest["runs"][0]["harvested"], 5);
    assert_eq!(night.sandbox.stats().videos_created, 5);
}

#[test]
fn a_lost_answer_to_batch_creation_does_not_create_a_second_batch() {
    // The sandbox creates the batch, then drops the connection before the answer arrives.
    let faults = FaultConfig::none()
        .rule(FaultRule::new("POST /v1/batches", Fault::Drop { after_bytes: 0 }).nth([1]));
    let night = Night::with(SandboxConfig::default().video_bytes(4096).faults(faults));
    night.write("shots.yaml", shot_list(3, "lost-answer"));
    night.ok(&["submit", "shots.yaml"]);
    let stats = night.sandbox.stats();
    assert_eq!(stats.faults_injected.get("drop"), Some(&1), "{stats:?}");
    assert_eq!(stats.batches_created, 1);
}

#[test]
fn transient_errors_are_retried_and_nothing_is_sent_twice() {
    let faults = FaultConfig::none()
        .seed(7)
        .rule(FaultRule::new("* /v1/*", Fault::RateLimit { retry_after_ms: 50 }).rate(0.25))
        .rule(FaultRule::new("* /v1/*", Fault::ServerError { status: 503 }).rate(0.15));
    let night = Night::with(SandboxConfig::default().video_bytes(4096).faults(faults));
    night.write("refs/r.png", png_of(1280, 720, 3));
    let mut list = shot_list(6, "storm");
    list.push_str("  - {id: with-ref, prompt: a ref shot, reference: refs/r.png}\n");
    night.write("shots.yaml", list);
    night.ok(&["submit", "shots.yaml", "--max-batch-requests", "4"]);
    let stats = night.sandbox.stats();
    assert!(
        stats.faults_total() > 0,
        "the storm must have hit: {stats:?}"
    );
    assert_eq!(stats.batches_created, 2);
    assert_eq!(stats.files_uploaded.get("vision"), Some(&1));
    let harvest = night.json(&["harvest", "--watch"]);
    assert_eq!(harvest["runs"][0]["harvested"], 7);
    assert_eq!(night.sandbox.stats().videos_created, 7);
}

#[test]
fn dry_run_writes_the_jsonl_and_uploads_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(5, "dry"));
    let out = night.json(&[
        "submit",
        "shots.yaml",
        "--dry-run",
        "--out",
        "jsonl",
        "--max-batch-requests",
        "2",
    ]);
    assert_eq!(out["files"].as_array().unwrap().len(), 3);
    let first = std::fs::read_to_string(night.path("jsonl/batch-001.jsonl")).unwrap();
    assert_eq!(first.lines().count(), 2);
    let stats = night.sandbox.stats();
    assert_eq!((stats.batches_created, stats.files_uploaded.len()), (0, 0));
}

#[test]
fn an_invalid_or_over_budget_plan_uploads_nothing() {
    let night = Night::new();
    night.write(
        "bad.yaml",
        "shots:\n  - {id: a, prompt: x, model: sora-3}\n",
    );
    assert_eq!(night.render(&["submit", "bad.yaml"]).status.code(), Some(1));
    night.write("shots.yaml", shot_list(10, "budget"));
    let over = night.render(&["submit", "shots.yaml", "--budget", "1.00"]);
    assert_eq!(over.status.code(), Some(3));
    assert!(stderr_of(&over).contains("budget"), "{}", stderr_of(&over));
    let stats = night.sandbox.stats();
    assert_eq!((stats.batches_created, stats.files_uploaded.len()), (0, 0));
}

#[test]
fn a_missing_api_key_is_a_clear_error_and_the_key_is_never_printed() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "key"));
    let missing = night.render_with(&["submit", "shots.yaml"], &[("OPENAI_API_KEY", "")]);
    assert!(!missing.status.success());
    assert!(
        stderr_of(&missing).contains("OPENAI_API_KEY"),
        "{}",
        stderr_of(&missing)
    );

    let output = night.render_with(&["submit", "shots.yaml", "-vv"], &[]);
    assert_success(&output, &["submit"]);
    let log = std::fs::read_to_string(night.state_dir().join("logs/render.log")).unwrap();
    assert!(
        log.contains("created batch"),
        "the state log records the night: {log}"
    );
    for text in [stdout_of(&output), stderr_of(&output), log] {
        assert!(!text.contains(API_KEY), "the key leaked: {text}");
    }
}

#[test]
fn a_second_render_on_the_same_state_directory_is_refused_not_run_twice() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "locked"));
    std::fs::create_dir_all(night.state_dir()).unwrap();
    let held = std::fs::File::create(night.state_dir().join("lock")).unwrap();
    held.try_lock().unwrap();
    for args in [
        &["submit", "shots.yaml"][..],
        &["harvest"],
        &["cache", "gc"],
    ] {
        let refused = night.render(args);
        assert_eq!(refused.status.code(), Some(10), "{args:?}");
        assert!(
            stderr_of(&refused).contains("another render is working"),
            "{}",
            stderr_of(&refused)
        );
    }
    assert_eq!(night.sandbox.stats().batches_created, 0);

    drop(held);
    let both: Vec<_> = (0..2)
        .map(|_| night.command(&["submit", "shots.yaml"]).spawn().unwrap())
        .collect();
    for mut child in both {
        child.wait().unwrap();
    }
    assert_eq!(
        night.sandbox.stats().batches_created,
        1,
        "two processes, one batch"
    );
}

#[test]
fn a_gateway_that_drops_metadata_still_gets_each_batch_once() {
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(4096)
            .drop_metadata(true),
    );
    night.write("shots.yaml", shot_list(3, "no-metadata"));
    crash_submit(&night, "submit-after-create");
    assert_eq!(night.sandbox.stats().batches_created, 1);
    let rerun = night.json(&["submit", "shots.yaml"]);
    assert_eq!(
        rerun["batches"][0]["adopted"], true,
        "found by its input file"
    );
    assert_eq!(night.sandbox.stats().batches_created, 1);
}
