//! The defects an attack on `render` found (issue 10), one test each: a server that forgets,
//! lies or never stops talking; a studio's habits (rehearsals back to back, two state folders
//! laying out into one renders/); and Unix manners.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use render_sandbox::SandboxConfig;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule, Malformation};

fn code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

fn report(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(output)))
}

#[test]
fn a_reference_the_provider_forgot_is_uploaded_again_not_reused() {
    let night = Night::new();
    night.write("first.png", png_of(1280, 720, 2));
    let list = |salt: &str| {
        format!(
            "project: refs\nshots:\n  - {{ id: a, prompt: \"{salt} from the first frame\", reference: first.png, seconds: 4 }}\n"
        )
    };
    night.write("a.yaml", list("monday"));
    night.full_night("a.yaml");
    // The provider restarts, or the upload expires: it no longer has the file.
    let stats = night.sandbox.stats();
    assert_eq!(stats.files_uploaded.get("vision"), Some(&1));
    let file_id = {
        let ledger =
            render_pipeline::ledger::Ledger::open(&night.state_dir().join("ledger.sqlite"))
                .unwrap();
        let sha = render_pipeline::cache::hash_file(&night.path("first.png")).unwrap();
        ledger.asset(&sha).unwrap().unwrap().file_id
    };
    let (status, _) = blocking_delete(&format!("{}/files/{file_id}", night.sandbox.base_url()));
    assert_eq!(status, 200);
    night.write("b.yaml", list("tuesday"));
    let report = night.full_night("b.yaml");
    assert_eq!(report["runs"][0]["harvested"], 1, "{report}");
    assert_eq!(night.sandbox.stats().files_uploaded.get("vision"), Some(&2));
}

#[test]
fn submit_sends_its_own_requests_and_leaves_an_unrelated_runs_leftovers_alone() {
    let night = Night::new();
    night.write("a.yaml", shot_list(2, "night-a"));
    let killed = night.render_with(
        &["submit", "a.yaml"],
        &[("RENDER_FAILPOINT", "submit-after-intent")],
    );
    assert!(!killed.status.success());
    night.write("b.yaml", shot_list(3, "night-b"));
    let b = night.json(&["submit", "b.yaml"]);
    assert_eq!(b["submitted"], 3, "{b}");
    assert_eq!(b["batches"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(
        night.sandbox.stats().batches_created,
        1,
        "A's intent is A's to finish"
    );
    // Night A, run again, finishes what it started: one batch for its two requests.
    let a = night.json(&["submit", "a.yaml"]);
    assert_eq!(a["batches"][0]["adopted"], true, "{a}");
    assert_eq!(night.sandbox.stats().batches_created, 2);
}

#[test]
fn rehearsals_back_to_back_each_start_afresh_and_never_wedge_the_ledger() {
    let night = Night::new();
    for (i, salt) in ["rehearsal-one", "rehearsal-two", "rehearsal-three"]
        .iter()
        .enumerate()
    {
        night.write("night.yaml", shot_list(2 + i, salt));
        let out = night.render(&[
            "nightly",
            "--sandbox",
            "night.yaml",
            "--max-poll-interval",
            "1",
        ]);
        assert_eq!(code(&out), Some(0), "{salt}: {}", stderr_of(&out));
    }
    // And an unchanged rehearsal sends nothing: it is all cached.
    let again = night.render(&["nightly", "--sandbox", "night.yaml", "--format", "json"]);
    assert_eq!(code(&again), Some(0), "{}", stderr_of(&again));
    assert_eq!(report(&again)["downloaded_videos"], 0);
}

#[test]
fn a_batch_stuck_in_an_unknown_status_past_its_deadline_is_lost_not_waited_for_forever() {
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(8 * 1024)
            .render_time(Duration::from_secs(3600)),
    );
    night.write("shots.yaml", shot_list(2, "stuck"));
    night.ok(&["submit", "shots.yaml"]);
    night
        .sandbox
        .set_faults(FaultConfig::none().rule(FaultRule::new(
            "GET /v1/batches/*",
            Fault::Malformed {
                shape: Malformation::UnknownStatus,
            },
        )))
        .unwrap();
    // The batch's 24-hour window and the hour of grace pass, by the server's clock.
    night.sandbox.advance_clock(26 * 3600);
    let out = night.render(&["harvest", "--watch", "--format", "json"]);
    assert_eq!(code(&out), Some(5), "{}", stderr_of(&out));
    assert_eq!(report(&out)["runs"][0]["lost"], 2);
    assert!(
        stderr_of(&out).contains("past its deadline"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_body_that_never_ends_is_abandoned_with_a_clear_error_and_no_partial_left() {
    let night = Night::with(SandboxConfig::default().video_bytes(300 * 1024));
    night.write("shots.yaml", shot_list(1, "endless"));
    night.ok(&["submit", "shots.yaml"]);
    let out = night.render(&["harvest", "--watch", "--max-video-bytes", "100000"]);
    assert_eq!(code(&out), Some(10), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("larger than 100000 bytes"),
        "{}",
        stderr_of(&out)
    );
    let partials = night.state_dir().join("cache");
    let leftovers: Vec<_> = walk(&partials)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("partial") && p.is_file())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn the_deadline_countdown_follows_the_servers_clock() {
    // Virtual time at real speed: only the jump below moves the server's clock ahead.
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(8 * 1024)
            .day(Duration::from_secs(24 * 3600)),
    );
    night.write("shots.yaml", shot_list(1, "deadline"));
    night.ok(&["submit", "shots.yaml"]);
    std::thread::sleep(Duration::from_millis(300));
    // 23 of the batch's 24 hours pass on the server, and its downloads fail for now.
    night.sandbox.advance_clock(23 * 3600);
    night
        .sandbox
        .set_faults(FaultConfig::none().rule(FaultRule::new(
            "GET /v1/videos/*/content",
            Fault::ServerError { status: 503 },
        )))
        .unwrap();
    let out = night.render(&["harvest"]);
    assert_eq!(code(&out), Some(10), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("its videos are deleted in"), "{stderr}");
    assert!(!stderr.contains("deleted in 24h"), "{stderr}");
    // `render status` counts down by the same clock, without asking the server.
    let status = night.json(&["status"]);
    let left = status[0]["batches"][0]["outputs_expire_in"]
        .as_i64()
        .unwrap();
    assert!(
        (0..2 * 3600).contains(&left),
        "{left} s left by the server's clock: {status}"
    );
    night.sandbox.set_faults(FaultConfig::none()).unwrap();
    let out = night.render(&["harvest", "--watch"]);
    assert_eq!(code(&out), Some(0), "{}", stderr_of(&out));
}

#[test]
fn stranded_temp_files_in_the_output_folder_are_swept_and_each_run_keeps_its_manifest() {
    let night = Night::new();
    night.write("a.yaml", shot_list(1, "sweep-a"));
    night.full_night("a.yaml");
    let out_dir = night.path("renders/test-night");
    let stranded = out_dir.join(".shot-000.mp4.0123456789abcdef.render-tmp");
    std::fs::write(&stranded, b"half a video").unwrap();
    // A second list of the same project, from a second state folder, into the same folder.
    night.write("b.yaml", shot_list(2, "sweep-b"));
    let other = night.path("other-state");
    let mut command = night.command(&["submit", "b.yaml"]);
    command.env("RENDER_STATE_DIR", &other);
    assert!(command.output().unwrap().status.success());
    let mut command = night.command(&["harvest", "--watch"]);
    command.env("RENDER_STATE_DIR", &other);
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!stranded.exists(), "the stranded temp was swept");
    let manifests: Vec<_> = std::fs::read_dir(out_dir.join("manifests"))
        .unwrap()
        .collect();
    assert_eq!(manifests.len(), 2, "one manifest per run, neither lost");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(latest["requests"].as_array().unwrap().len(), 2);
}

#[test]
fn hooks_get_the_run_and_manifest_but_no_key_and_never_write_into_the_json() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "hook"));
    let out = night.render(&[
        "nightly",
        "shots.yaml",
        "--format",
        "json",
        "--max-poll-interval",
        "1",
        "--on-complete",
        "env > hook-env.txt; echo HOOK-WAS-HERE",
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr_of(&out));
    let _ = report(&out); // stdout is the JSON document alone
    assert!(stderr_of(&out).contains("HOOK-WAS-HERE"));
    let env = std::fs::read_to_string(night.path("hook-env.txt")).unwrap();
    assert!(!env.contains(API_KEY), "the hook saw the API key");
    assert!(
        env.contains("RENDER_RUN_ID=run-") && env.contains("RENDER_MANIFEST="),
        "{env}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(30, "pipe"));
    night.full_night("shots.yaml");
    let render = env!("CARGO_BIN_EXE_render");
    for args in ["status", "cache ls", "plan shots.yaml"] {
        let script =
            format!("{render} {args} | head -c 1 > /dev/null; echo \"${{PIPESTATUS[0]}}\"");
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(night.dir.path())
            .env("RENDER_STATE_DIR", night.state_dir())
            .env("OPENAI_BASE_URL", night.sandbox.base_url())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args}: {stderr}"
        );
        let status = stdout_of(&output).trim().to_string();
        assert!(
            ["0", "141"].contains(&status.as_str()),
            "{args}: exit {status}"
        );
    }
}

#[test]
fn configuration_mistakes_are_usage_errors_and_looking_creates_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "usage"));
    for args in [&["status"][..], &["cache", "ls"], &["plan", "shots.yaml"]] {
        let out = night.render(args);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", stderr_of(&out));
    }
    assert!(
        !night.state_dir().exists(),
        "a read-only command created the state folder"
    );
    let out = night.render_with(&["submit", "shots.yaml"], &[("OPENAI_API_KEY", "")]);
    assert_eq!(code(&out), Some(2), "a missing key: {}", stderr_of(&out));
    assert!(stderr_of(&out).contains("OPENAI_API_KEY"));
}

#[test]
fn a_corrupt_cache_has_its_own_exit_status() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "corrupt"));
    night.full_night("shots.yaml");
    let objects = night.state_dir().join("cache");
    let object = walk(&objects)
        .into_iter()
        .find(|p| p.is_file() && p.to_string_lossy().contains("objects"))
        .expect("an object");
    let mut permissions = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&object, permissions).unwrap();
    std::fs::write(&object, b"not the video").unwrap();
    let out = night.render(&["cache", "verify"]);
    assert_eq!(code(&out), Some(6), "{}", stdout_of(&out));
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let night =
        Night::with(SandboxConfig::default().faults(
            FaultConfig::none().rule(
                FaultRule::new("POST /v1/files", Fault::ServerError { status: 503 }).nth([1]),
            ),
        ));
    night.write("shots.yaml", shot_list(1, "colour"));
    let out = night.render(&["submit", "shots.yaml"]);
    assert_eq!(code(&out), Some(0), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn a_hostile_result_file_wedges_nothing_keeps_the_video_and_never_stores_the_key() {
    use render_sandbox::faults::Trigger;
    let night = Night::with(
        SandboxConfig::default()
            .api_key(API_KEY)
            .hostile_results(true)
            .faults(FaultConfig::none().batch_request_failure(Trigger::nth([3]))),
    );
    night.write("shots.yaml", shot_list(4, "hostile"));
    let out = night.render(&["nightly", "shots.yaml", "--max-poll-interval", "1"]);
    // One request failed; the rest harvested; nothing left pending by the lines not ours.
    assert_eq!(code(&out), Some(4), "{}", stderr_of(&out));
    let manifest = night.manifest("renders/test-night");
    let statuses: Vec<&str> = manifest["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "harvested").count(),
        3,
        "{manifest}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "failed").count(),
        1,
        "{manifest}"
    );
    let stderr = stderr_of(&out);
    for said in [
        "1 result line(s) could not be read",
        "1 result line(s) are not requests of this batch",
        "1 request(s) were answered both with a video and with a failure; the video is kept",
    ] {
        assert_eq!(stderr.matches(said).count(), 1, "{said:?} once:\n{stderr}");
    }
    // The key the server echoed reached none of what render keeps or shows.
    let mut kept = vec![
        night.state_dir().join("ledger.sqlite"),
        night.state_dir().join("logs/render.log"),
        night.path("renders/test-night/manifest.json"),
    ];
    kept.extend(
        ["ledger.sqlite-wal"]
            .iter()
            .map(|f| night.state_dir().join(f))
            .filter(|p| p.exists()),
    );
    for path in kept {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(API_KEY.len())
                .any(|w| w == API_KEY.as_bytes()),
            "{} holds the key",
            path.display()
        );
    }
    assert!(!stderr.contains(API_KEY));
    assert!(
        std::fs::read_to_string(night.path("renders/test-night/manifest.json"))
            .unwrap()
            .contains("redacted"),
        "the failure's message is kept, the key masked"
    );
}

#[test]
fn a_restarted_server_that_reuses_a_batch_id_never_wedges_the_ledger() {
    let first = Night::with(SandboxConfig::default().seed(7).video_bytes(8 * 1024));
    let lab = |base_url: &str| {
        format!(
            "providers:\n  - {{ name: lab, base_url: \"{base_url}\", api_key_env: OPENAI_API_KEY, lane: batch }}\n"
        )
    };
    let list = |salt: &str| {
        format!(
            "project: reuse\ndefaults: {{ provider: lab, seconds: 4 }}\nshots:\n  - {{ id: a, prompt: \"{salt} a\" }}\n  - {{ id: b, prompt: \"{salt} b\" }}\n"
        )
    };
    first.write("providers.yaml", lab(first.sandbox.base_url()));
    first.write("night.yaml", list("monday"));
    let args = [
        "--providers",
        "providers.yaml",
        "nightly",
        "night.yaml",
        "--max-poll-interval",
        "1",
    ];
    let out = first.render(&args);
    assert_eq!(code(&out), Some(0), "{}", stderr_of(&out));
    // The same server restarted from the same seed: its ids start over.
    let again = render_sandbox::spawn(
        SandboxConfig::default()
            .seed(7)
            .video_bytes(8 * 1024)
            .render_time(Duration::from_millis(20)),
    )
    .unwrap();
    first.write("providers.yaml", lab(again.base_url()));
    first.write("night.yaml", list("tuesday"));
    let out = first.render(&args);
    assert_eq!(code(&out), Some(0), "{}", stderr_of(&out));
    assert_eq!(again.stats().batches_created, 1);
    let ledger =
        render_pipeline::ledger::Ledger::open(&first.state_dir().join("ledger.sqlite")).unwrap();
    let ids: Vec<String> = ledger
        .runs()
        .unwrap()
        .iter()
        .flat_map(|run| ledger.batches_of_run(&run.id).unwrap())
        .filter_map(|b| b.batch_id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.iter().any(|id| id.contains("#superseded-")),
        "the id was reused and the earlier batch set aside: {ids:?}"
    );
}
