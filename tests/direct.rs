//! The direct lane (one `POST /v1/videos` per request) against the sandbox: every request sent
//! once, whatever crashes in between; slots kept full but never overfilled; a rerun sends nothing.

mod common;

use common::*;
use render_sandbox::SandboxConfig;

/// Ten requests for `lab`, one the sandbox refuses (a real person's name).
fn night_yaml() -> String {
    ten_request_night(
        "direct-night",
        "lab",
        "  - { id: n09-refused, prompt: \"Taylor Swift walking along the pier\" }\n",
    )
}

/// The night of these tests: `lab` on the direct lane, a first frame and ten requests.
fn lab(night: &Night, max_in_flight: usize) {
    direct_lab(night, max_in_flight);
    night.write("first.png", png_of(1280, 720, 7));
    night.write("night.yaml", night_yaml());
}

fn posts(night: &Night) -> u64 {
    night.sandbox.stats().requests_to("POST /v1/videos")
}

fn created(night: &Night) -> u64 {
    night.sandbox.stats().videos_created
}

const NIGHTLY: &[&str] = NIGHTLY_WITH_PROVIDERS;

#[test]
fn a_direct_night_renders_each_request_once_and_a_rerun_sends_nothing() {
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(64 * 1024)
            .concurrency(3),
    );
    lab(&night, 3);
    let out = night.render(NIGHTLY);
    // One request refused for policy: exit 4, everything else harvested.
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    let manifest = night.manifest("renders/direct-night");
    let entries = manifest["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    let refused: Vec<_> = entries.iter().filter(|e| e["status"] == "failed").collect();
    assert_eq!(refused.len(), 1, "{manifest}");
    assert_eq!(refused[0]["shot_id"], "n09-refused");
    let message = refused[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Taylor Swift") || message.contains("moderation"),
        "{message}"
    );
    assert_eq!(refused[0]["error"]["kind"], "policy");
    assert_eq!(assert_byte_exact(&night, "renders/direct-night"), 9);
    // Ten POSTs (the refusal among them), nine videos, no batch.
    assert_eq!((posts(&night), created(&night)), (10, 9));
    assert_eq!(night.sandbox.stats().batches_created, 0);
    // The reference travelled once, as an uploaded file (OpenAI's dialect names it by id).
    assert_eq!(night.sandbox.stats().files_uploaded.get("vision"), Some(&1));

    let again = night.render(NIGHTLY);
    assert_eq!(again.status.code(), Some(4), "{}", stderr_of(&again));
    assert_eq!(
        (posts(&night), created(&night)),
        (10, 9),
        "a rerun sends nothing"
    );
}

#[test]
fn submit_fills_the_slots_and_harvest_refills_them() {
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(16 * 1024)
            .concurrency(2),
    );
    lab(&night, 2);
    let submitted = night.json(&["--providers", "providers.yaml", "submit", "night.yaml"]);
    assert_eq!(submitted["jobs_sent"], 2, "{submitted}");
    assert_eq!(submitted["jobs_waiting"], 8, "{submitted}");
    assert_eq!(created(&night), 2, "no more than max_in_flight at once");
    let out = night.render(&[
        "--providers",
        "providers.yaml",
        "harvest",
        "--watch",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "one refusal: {}",
        stderr_of(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"][0]["harvested"], 9, "{report}");
    assert_eq!(report["runs"][0]["failed"], 1, "{report}");
    assert_eq!(posts(&night), 10);
}

/// Kills at `failpoint` on the first attempt, then reruns the night to the end. Videos are
/// 3 MiB, past where `harvest-mid-download` kills.
fn killed_then_rerun(failpoint: &str) -> Night {
    let night = Night::with(SandboxConfig::default().video_bytes(3 * 1024 * 1024));
    lab(&night, 2);
    let killed = night.render_with(NIGHTLY, &[("RENDER_FAILPOINT", failpoint)]);
    assert!(
        !killed.status.success(),
        "{failpoint} must kill the process"
    );
    let rerun = night.render(NIGHTLY);
    assert_eq!(rerun.status.code(), Some(4), "{}", stderr_of(&rerun));
    assert_eq!(assert_byte_exact(&night, "renders/direct-night"), 9);
    night
}

#[test]
fn a_kill_between_intent_and_post_sends_the_request_once() {
    let night = killed_then_rerun("direct-after-intent");
    assert_eq!((posts(&night), created(&night)), (10, 9));
}

#[test]
fn a_kill_between_post_and_record_adopts_the_job_instead_of_sending_it_again() {
    let night = killed_then_rerun("direct-after-post");
    // The job the killed process created was found in the server's list and adopted.
    assert_eq!((posts(&night), created(&night)), (10, 9));
}

#[test]
fn a_kill_mid_download_resumes_and_renders_nothing_twice() {
    let night = killed_then_rerun("harvest-mid-download");
    assert_eq!((posts(&night), created(&night)), (10, 9));
    assert!(
        night
            .sandbox
            .stats()
            .requests_with("GET /v1/videos/{id}/content", 206)
            > 0,
        "the partial download was resumed by Range"
    );
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
}

#[test]
fn a_rush_shot_goes_direct_at_the_standard_price_while_the_rest_batch() {
    let night = Night::new();
    night.write(
        "night.yaml",
        "project: mixed\nshots:\n  - { id: m1, prompt: \"Slow night\", seconds: 4 }\n  - { id: m2, prompt: \"Director wants it now\", seconds: 4, priority: rush }\n",
    );
    let plan = night.json(&["plan", "night.yaml"]);
    let shots = plan["shots"].as_array().unwrap();
    assert_eq!(
        (shots[0]["lane"].as_str(), shots[0]["cost_usd"].as_str()),
        (Some("batch"), Some("0.20"))
    );
    assert_eq!(
        (shots[1]["lane"].as_str(), shots[1]["cost_usd"].as_str()),
        (Some("direct"), Some("0.40"))
    );
    assert_eq!(
        shots[1]["batch_cost_usd"], "0.20",
        "the Batch price it could have had"
    );
    let out = night.render(&["nightly", "night.yaml", "--max-poll-interval", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stats = night.sandbox.stats();
    assert_eq!(stats.batches_created, 1);
    assert_eq!(stats.requests_to("POST /v1/videos"), 1);
    assert_eq!(stats.videos_created, 2);
}

#[test]
fn an_unknown_provider_is_a_diagnostic_at_its_place_with_the_known_names() {
    let night = Night::new();
    lab(&night, 1);
    night.write(
        "bad.yaml",
        "shots:\n  - { id: a, prompt: x, provider: wan-frm }\n",
    );
    let out = night.render(&["--providers", "providers.yaml", "plan", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("bad.yaml:2:35: error: unknown provider `wan-frm`"),
        "{stderr}"
    );
    assert!(stderr.contains("default, lab"), "{stderr}");
}

#[test]
fn a_rate_limited_post_is_waited_for_and_sent_once() {
    use render_sandbox::faults::{Fault, FaultConfig, FaultRule};
    let faults = FaultConfig::none().rule(
        FaultRule::new(
            "POST /v1/videos",
            Fault::RateLimit {
                retry_after_ms: 300,
            },
        )
        .nth([2, 3, 6]),
    );
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(16 * 1024)
            .faults(faults),
    );
    lab(&night, 3);
    let out = night.render(NIGHTLY);
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    let stats = night.sandbox.stats();
    assert_eq!(stats.requests_with("POST /v1/videos", 429), 3);
    // Ten requests, each accepted once (one of them refused for policy).
    assert_eq!(stats.requests_to("POST /v1/videos") - 3, 10);
    assert_eq!(assert_byte_exact(&night, "renders/direct-night"), 9);
}

/// A 503 that asks for time (an overloaded server, or a gateway in front of one) gets it:
/// nothing more is sent to the provider until the wait is over, though the job it answered
/// for is still checked for, never assumed not created.
#[test]
fn an_unavailable_server_is_left_alone_as_long_as_it_asks() {
    use render_sandbox::faults::{Fault, FaultConfig, FaultRule};
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_millis(3_000);
    // Submit sends three; the fourth POST, harvest's first refill, is answered 503.
    let faults = FaultConfig::none().rule(
        FaultRule::new(
            "POST /v1/videos",
            Fault::Unavailable {
                retry_after_ms: WAIT.as_millis() as u64,
            },
        )
        .nth([4]),
    );
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(16 * 1024)
            .faults(faults),
    );
    lab(&night, 3);
    let mut child = night
        .command(NIGHTLY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut refused_at, mut next_post_at) = (None, None);
    let accepted = |night: &Night| night.sandbox.stats().requests_with("POST /v1/videos", 200);
    let mut accepted_then = 0;
    while child.try_wait().unwrap().is_none() {
        let now = Instant::now();
        if refused_at.is_none() && night.sandbox.stats().requests_with("POST /v1/videos", 503) == 1
        {
            refused_at = Some(now);
            accepted_then = accepted(&night);
        } else if refused_at.is_some() && next_post_at.is_none() && accepted(&night) > accepted_then
        {
            next_post_at = Some(now);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(child.wait().unwrap().code(), Some(4), "one refused shot");
    let (refused_at, next_post_at) = (refused_at.unwrap(), next_post_at.unwrap());
    let paused = next_post_at - refused_at;
    assert!(
        paused >= WAIT - Duration::from_millis(100),
        "sent again after {paused:?}, asked to wait {WAIT:?}"
    );
    // Every request accepted once, the 503's included: nothing paid twice.
    let stats = night.sandbox.stats();
    assert_eq!(stats.requests_to("POST /v1/videos") - 1, 10, "{stats:?}");
    assert_eq!(assert_byte_exact(&night, "renders/direct-night"), 9);
}
