//! Batches that do not end well: one expires, one fails validation, one is cancelled mid-run,
//! and requests are refused for policy. Each request ends harvested, failed with its reason or
//! lost and resubmittable; `render retry` sends again exactly the lost and retryable ones.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::time::{Duration, Instant};

use reliability::*;
use render_sandbox::faults::{FaultConfig, Trigger};

fn run_id_of(report: &serde_json::Value) -> String {
    report["runs"][0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {report}"))
        .to_string()
}

#[test]
fn an_expired_batch_loses_only_what_never_ran_and_a_retry_completes_the_night() {
    let faults = FaultConfig::none().batch_expire(Trigger::nth([2]));
    let night = night_with(4096, faults);
    night.write("shots.yaml", big_list(100, "expire"));
    let args = nightly_args("shots.yaml", &["--max-batch-requests", "25"]);
    let first = report_of(&expect_exit(&night, &args, &[], 5));
    let lost = first["runs"][0]["lost"].as_u64().unwrap_or_default();
    assert!(
        lost > 0 && lost < 25,
        "only part of the doomed batch is lost: {first}"
    );
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(
        (tally.harvested, tally.lost),
        (100 - lost as usize, lost as usize)
    );

    let retry = night.json(&["retry", &run_id_of(&first), "--max-batch-requests", "25"]);
    assert_eq!(retry["submitted"], lost, "exactly the lost ones: {retry}");
    let second = report_of(&expect_exit(&night, &args, &[], 0));
    assert_eq!(
        run_id_of(&second),
        run_id_of(&first),
        "the same run continues"
    );
    // Requests lost to the expiry never rendered, so even now each rendered once.
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.harvested, tally.videos_created), (100, 100));
}

#[test]
fn a_batch_that_fails_validation_fails_with_the_reason_and_can_be_sent_again() {
    // The provider takes at most 30 requests a batch; render does not know and sends 60.
    let night = night_on(sandbox(4096).max_batch_requests(30));
    night.write("shots.yaml", big_list(60, "invalid-batch"));
    let args = nightly_args("shots.yaml", &[]);
    let first = report_of(&expect_exit(&night, &args, &[], 4));
    let manifest = night.manifest(OUT);
    let failed = entries_with(&manifest, "failed");
    assert_eq!(failed.len(), 60, "{first}");
    for entry in &failed {
        let message = entry["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("at most 30"),
            "the provider's reason: {entry}"
        );
        assert_eq!(entry["error"]["retryable"], true, "nothing ran: {entry}");
    }
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.failed, tally.videos_created), (60, 0));

    let retry = night.json(&["retry", &run_id_of(&first), "--max-batch-requests", "30"]);
    assert_eq!(retry["submitted"], 60, "{retry}");
    expect_exit(&night, &args, &[], 0);
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.harvested, tally.batches), (60, 3));
}

#[test]
fn a_batch_cancelled_mid_run_loses_only_what_had_not_run() {
    // Two renders at a time, so the night lasts long enough to cancel a batch halfway.
    let night = night_on(
        sandbox(4096)
            .concurrency(2)
            .render_time(Duration::from_millis(15)),
    );
    night.write("shots.yaml", big_list(80, "cancel"));
    let args = nightly_args("shots.yaml", &["--max-batch-requests", "40"]);
    let (output, cancelled) = std::thread::scope(|scope| {
        let nightly = scope.spawn(|| night.render(&args));
        let cancelled = cancel_a_batch_halfway(&night);
        (nightly.join().expect("nightly thread"), cancelled)
    });
    assert_eq!(
        output.status.code(),
        Some(5),
        "{}",
        tail(&common::stderr_of(&output))
    );
    assert_no_panic(&output);
    let first = report_of(&output);
    let lost = first["runs"][0]["lost"].as_u64().unwrap_or_default();
    assert!(
        lost > 0,
        "batch {cancelled} was cancelled with work left: {first}"
    );
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(tally.harvested + tally.lost, 80);

    night.json(&["retry", &run_id_of(&first)]);
    expect_exit(&night, &args, &[], 0);
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!((tally.harvested, tally.videos_created), (80, 80));
}

/// Waits for a batch with some but not all requests done and cancels it through the API.
fn cancel_a_batch_halfway(night: &common::Night) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for batch in sandbox_batches(night) {
            let done = batch["request_counts"]["completed"].as_u64().unwrap_or(0);
            let total = batch["request_counts"]["total"].as_u64().unwrap_or(0);
            if batch["status"] == "in_progress" && done >= 3 && done + 10 < total {
                let id = batch["id"].as_str().unwrap_or_default().to_string();
                let url = format!("{}/batches/{id}/cancel", night.sandbox.base_url());
                let (status, answer) = blocking_post(&url);
                assert_eq!(status, 200, "{answer}");
                return id;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no batch was ever halfway through");
}

#[test]
fn requests_refused_for_policy_fail_with_the_reason_and_are_not_resent() {
    // Five prompts name a public figure or a character; moderation refuses a few more at random
    // and some renders fail on the server's side (retryable).
    let faults = FaultConfig::none()
        .seed(17)
        .moderation(Trigger::rate(0.04))
        .batch_request_failure(Trigger::rate(0.04));
    let night = night_with(4096, faults);
    let mut list = big_list(120, "policy");
    for (i, name) in ["Darth Vader", "Pikachu", "Homer Simpson", "Batman", "Shrek"]
        .iter()
        .enumerate()
    {
        list.push_str(&shot(
            &format!("famous-{i}"),
            &format!("{name} waves from a boat"),
        ));
    }
    night.write("shots.yaml", list);
    let args = nightly_args("shots.yaml", &[]);
    let first = report_of(&expect_exit(&night, &args, &[], 4));
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    let manifest = night.manifest(OUT);
    let failed = entries_with(&manifest, "failed");
    let policy: Vec<&serde_json::Value> = failed
        .iter()
        .filter(|e| e["error"]["kind"] == "policy")
        .collect();
    let server = failed.len() - policy.len();
    assert!(policy.len() >= 5 && server > 0, "{:?}", tally.failure_codes);
    for entry in &policy {
        assert_eq!(entry["error"]["retryable"], false, "{entry}");
        assert_eq!(entry["error"]["code"], "moderation_blocked", "{entry}");
    }
    for i in 0..5 {
        let shot = format!("famous-{i}");
        assert!(
            policy.iter().any(|e| e["shot_id"] == shot.as_str()),
            "{shot} must be refused"
        );
    }

    // Retry sends the server failures again, never the refused ones.
    let retry = night.json(&["retry", &run_id_of(&first)]);
    assert_eq!(retry["submitted"], server, "{retry}");
    night.sandbox.set_faults(FaultConfig::none()).expect("calm");
    expect_exit(&night, &args, &[], 4);
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(
        (tally.failed, tally.harvested),
        (policy.len(), 125 - policy.len())
    );
}

#[test]
fn a_request_already_in_flight_for_another_list_is_waited_for_not_left_pending() {
    // Monday's list is submitted and still rendering when Tuesday's nightly starts; they share
    // shots. Tuesday must not send them again, and must not exit 0 before they are harvested.
    let night = night_on(sandbox(4096).concurrency(4));
    let mut monday = String::from("project: monday\nshots:\n");
    let mut tuesday = String::from("project: test-night\nshots:\n");
    for i in 0..30 {
        let line = shot(
            &format!("shared-{i}"),
            &format!("shared shot {i}: gulls over the quay"),
        );
        monday.push_str(&line);
        tuesday.push_str(&line);
        tuesday.push_str(&shot(
            &format!("new-{i}"),
            &format!("tuesday shot {i}: nets drying"),
        ));
    }
    night.write("monday.yaml", monday);
    night.write("tuesday.yaml", tuesday);
    night.ok(&["submit", "monday.yaml"]);
    let output = expect_exit(&night, &nightly_args("tuesday.yaml", &[]), &[], 0);
    let report = report_of(&output);
    assert_eq!(report["runs"][0]["harvested"], 60, "{report}");
    assert_eq!(report["runs"][0]["pending"], 0, "{report}");
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(
        (tally.harvested, tally.videos_created, tally.batches),
        (60, 60, 2)
    );
}
