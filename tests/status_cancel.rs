//! `render status` asks the provider (or says it could not), `--shots` lists every request,
//! runs are named by prefix or `last`, and `render cancel` stops a run keeping what finished.

mod common;

use std::time::Duration;

use common::*;
use render_sandbox::{SandboxConfig, spawn};

/// A night whose renders take `render_time`, so work can be caught in flight.
fn slow_night(render_time: Duration) -> Night {
    Night {
        sandbox: spawn(
            SandboxConfig::default()
                .video_bytes(16 * 1024)
                .concurrency(2)
                .render_time(render_time),
        )
        .expect("the sandbox starts"),
        dir: tempfile::tempdir().unwrap(),
    }
}

fn wait_for_batch(night: &Night, batch_id: &str, status: &str) {
    let url = format!("{}/batches/{batch_id}", night.sandbox.base_url());
    for _ in 0..400 {
        let batch: serde_json::Value = serde_json::from_slice(&blocking_get(&url)).unwrap();
        if batch["status"] == status {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("batch {batch_id} never reached {status}");
}

#[test]
fn status_asks_the_provider_and_counts_down_by_its_clock() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "live"));
    let submitted = night.json(&["submit", "shots.yaml"]);
    let batch_id = submitted["batches"][0]["batch_id"].as_str().unwrap();
    wait_for_batch(&night, batch_id, "completed");

    // Nothing was harvested, so the ledger still has the batch as submitted: status asks.
    let status = night.json(&["status", "last"]);
    let run = &status[0];
    assert_eq!(run["freshness"], "live", "{run}");
    assert_eq!(run["batches"][0]["status"], "completed", "{run}");
    assert_eq!(run["batches"][0]["live"], true);
    assert_eq!(run["counts"]["pending"], 3);
    let left = run["expires_in"].as_i64().unwrap();
    assert!((23 * 3600..=24 * 3600).contains(&left), "{left}");

    // By the provider's clock: two hours on, two hours less.
    night.sandbox.advance_clock(2 * 3600);
    let later = night.json(&["status", "last"])[0]["expires_in"]
        .as_i64()
        .unwrap();
    assert!((21 * 3600..=22 * 3600).contains(&later), "{later}");

    // Without a key nothing can be asked: the ledger's word, labelled as such.
    let offline = night.render_with(
        &["status", "last", "--format", "json"],
        &[("OPENAI_API_KEY", "")],
    );
    assert_eq!(offline.status.code(), Some(0), "{}", stderr_of(&offline));
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(offline[0]["freshness"], "as_of_last_harvest");
    assert_ne!(offline[0]["batches"][0]["status"], "completed");
    assert!(!offline[0]["not_asked"].as_array().unwrap().is_empty());

    night.ok(&["harvest"]);
    // `--watch` looks until nothing is pending: with everything harvested, it looks once.
    let mut watch = night
        .command(&["status", "--watch", "--interval", "1"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while watch.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            watch.kill().unwrap();
            panic!("status --watch kept watching a settled night");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = night.json(&["status"]);
    assert_eq!(done[0]["counts"]["harvested"], 3, "{done}");
    assert_eq!(done[0]["done"], true);
}

#[test]
fn shots_lists_every_request_and_runs_are_found_by_prefix_or_last() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: table\nshots:\n  - {id: kite, prompt: a kite, takes: 2}\n  - {id: refused, prompt: \"Taylor Swift on the pier\"}\n",
    );
    let first = night.json(&["submit", "shots.yaml"]);
    // One request refused for policy: exit 4.
    assert_eq!(night.render(&["harvest", "--watch"]).status.code(), Some(4));
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let table = night.ok(&["status", &run_id[..run_id.len() - 2], "--shots"]);
    assert!(table.contains("SHOT"), "{table}");
    let kite_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("kite"))
        .collect();
    assert_eq!(kite_rows.len(), 2, "{table}");
    assert!(kite_rows.iter().all(|l| l.contains("harvested")), "{table}");
    let refused = table
        .lines()
        .find(|l| l.contains("refused "))
        .expect("a refused row");
    assert!(refused.contains("failed"), "{table}");

    let json = night.json(&["status", "last", "--shots"]);
    let shots = json[0]["shots"].as_array().unwrap();
    assert_eq!(shots.len(), 3);
    let takes: Vec<u64> = shots.iter().map(|s| s["take"].as_u64().unwrap()).collect();
    assert_eq!(takes, [1, 2, 1]);
    assert!(
        shots[2]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );

    // Two runs: `run-` is the start of both.
    night.write("more.yaml", shot_list(1, "more"));
    night.ok(&["submit", "more.yaml"]);
    let ambiguous = night.render(&["status", "run-"]);
    assert_eq!(ambiguous.status.code(), Some(2));
    assert!(
        stderr_of(&ambiguous).contains("give more of it"),
        "{}",
        stderr_of(&ambiguous)
    );
    let unknown = night.render(&["status", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    let watch_json = night.render(&["status", "--watch", "--format", "json"]);
    assert_eq!(watch_json.status.code(), Some(2));
}

#[test]
fn cancel_stops_a_batch_keeps_what_finished_and_a_rerun_starts_afresh() {
    // Four-second renders, two at a time: the cancel lands while the first two render.
    let night = slow_night(Duration::from_secs(4));
    night.write("shots.yaml", shot_list(4, "cancel"));
    let submitted = night.json(&["submit", "shots.yaml"]);
    let batch_id = submitted["batches"][0]["batch_id"].as_str().unwrap();
    wait_for_batch(&night, batch_id, "in_progress");

    let cancelled = night.json(&["cancel", "last"]);
    assert_eq!(cancelled["batches_cancelled"][0], batch_id, "{cancelled}");
    wait_for_batch(&night, batch_id, "cancelled");
    let harvested = night.render(&["harvest", "--watch", "--format", "json"]);
    assert_eq!(
        harvested.status.code(),
        Some(5),
        "{}",
        stderr_of(&harvested)
    );
    let status = night.json(&["status", "last"]);
    assert_eq!(status[0]["cancelled"], true);
    // What finished before the cancel is kept; what never started is lost (retryable).
    let counts = &status[0]["counts"];
    assert_eq!(
        (counts["harvested"].as_u64(), counts["lost"].as_u64()),
        (Some(2), Some(2)),
        "{status}"
    );
    assert_eq!(status[0]["done"], true);
    assert_eq!(assert_byte_exact(&night, "renders/test-night"), 2);

    // The same list again is a new run, not the cancelled one continued.
    let again = night.json(&["submit", "shots.yaml"]);
    assert_ne!(again["run_id"], submitted["run_id"]);
    assert_eq!(night.sandbox.stats().batches_created, 2);
}

#[test]
fn cancel_stops_running_direct_jobs_once_and_marks_them_lost() {
    let night = slow_night(Duration::from_secs(60));
    direct_lab(&night, 4);
    night.write(
        "shots.yaml",
        "project: direct-cancel\ndefaults: {provider: lab}\nshots:\n  - {id: a, prompt: a kite}\n  - {id: b, prompt: a boat}\n",
    );
    night.ok(&["--providers", "providers.yaml", "submit", "shots.yaml"]);
    let cancelled = night.json(&["--providers", "providers.yaml", "cancel", "last"]);
    assert_eq!(cancelled["jobs_cancelled"], 2, "{cancelled}");
    assert_eq!(
        night.sandbox.stats().requests_to("DELETE /v1/videos/{id}"),
        2
    );
    let status = night.json(&["--providers", "providers.yaml", "status", "last", "--shots"]);
    for shot in status[0]["shots"].as_array().unwrap() {
        assert_eq!(shot["status"], "lost", "{status}");
        assert!(shot["reason"].as_str().unwrap().contains("render cancel"));
    }
    // Cancelling again finds nothing running: no job is deleted twice.
    night.json(&["--providers", "providers.yaml", "cancel", "last"]);
    assert_eq!(
        night.sandbox.stats().requests_to("DELETE /v1/videos/{id}"),
        2
    );
}

#[test]
fn cancel_works_while_the_night_runs_and_the_night_then_ends() {
    let night = slow_night(Duration::from_secs(120));
    direct_lab(&night, 2);
    night.write(
        "night.yaml",
        "project: live-cancel\ndefaults: {provider: lab}\nshots:\n  - {id: a, prompt: a kite}\n  - {id: b, prompt: a boat}\n  - {id: c, prompt: a bird}\n",
    );
    let mut nightly = night
        .command(NIGHTLY_WITH_PROVIDERS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Two jobs rendering (slots full), the third waiting for a slot.
    let started = std::time::Instant::now();
    while night.sandbox.stats().videos_created < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the night never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled = night.json(&["--providers", "providers.yaml", "cancel", "last"]);
    assert_eq!(cancelled["jobs_cancelled"], 2, "{cancelled}");
    // The night sees its jobs settled and ends long before a render would have finished.
    let ended = std::time::Instant::now();
    let status = loop {
        if let Some(status) = nightly.try_wait().unwrap() {
            break status;
        }
        if ended.elapsed() > Duration::from_secs(30) {
            nightly.kill().unwrap();
            panic!("the night kept running after its cancel");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(5), "lost (cancelled) requests");
    // The waiting third request was never sent.
    assert_eq!(night.sandbox.stats().videos_created, 2);
}
