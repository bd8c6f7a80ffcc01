//! A night through a real LiteLLM proxy (`litellm[proxy]==1.108.7`, installed by `.ci/run`) in
//! front of the sandbox: the direct lane, LiteLLM's own long ids kept as returned, its MP4
//! "thumbnails" never laid out as pictures, and — since the proxy cannot list jobs — a crash
//! between POST and record costs at most that one request twice, and `render` says so.

mod common;

use std::collections::HashSet;

use common::litellm::LiteLlm;
use common::*;
use render_sandbox::SandboxConfig;

const NIGHTLY: &[&str] = NIGHTLY_WITH_PROVIDERS;

/// The sandbox, a LiteLLM proxy in front of it, and a scratch folder whose providers file
/// names the proxy `gw`.
fn gateway() -> (Night, LiteLlm) {
    let night = Night::with(
        SandboxConfig::default()
            .video_bytes(48 * 1024)
            .api_key(API_KEY),
    );
    let proxy = LiteLlm::start(night.sandbox.base_url(), API_KEY, &["sora-2"])
        .unwrap_or_else(|e| panic!("the LiteLLM proxy must start (CI installs it): {e}"));
    night.write(
        "providers.yaml",
        format!(
            "providers:\n  - name: gw\n    base_url: {}\n    dialect: litellm\n    api_key_env: GW_KEY\n    max_in_flight: 3\n",
            proxy.base_url()
        ),
    );
    night.write("first.png", png_of(1280, 720, 3));
    // Ten requests, one the sandbox refuses (a real person's name).
    night.write(
        "night.yaml",
        ten_request_night(
            "gateway-night",
            "gw",
            "  - { id: n09-refused, prompt: \"Taylor Swift walking along the pier\" }\n",
        ),
    );
    (night, proxy)
}

fn nightly(night: &Night, proxy: &LiteLlm, env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec![("GW_KEY", proxy.master_key())];
    all.extend_from_slice(env);
    night.render_with(NIGHTLY, &all)
}

/// SHA-256 of every video the sandbox rendered.
fn served_digests(night: &Night) -> HashSet<String> {
    let listed = blocking_get(&format!("{}/videos?limit=100", night.sandbox.base_url()));
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] == "completed")
        .map(|v| {
            let id = v["id"].as_str().unwrap();
            night.sandbox.video_digest(id).unwrap().sha256
        })
        .collect()
}

#[test]
fn a_night_through_litellm_harvests_every_video_once_and_lays_out_no_mp4_as_a_thumbnail() {
    let (night, proxy) = gateway();
    let out = nightly(&night, &proxy, &[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "one refusal\n{}\nproxy log:\n{}",
        stderr_of(&out),
        proxy.logs()
    );
    let stats = night.sandbox.stats();
    assert_eq!(stats.videos_created, 9, "none rendered twice");
    assert_eq!(stats.batches_created, 0);

    let manifest = night.manifest("renders/gateway-night");
    let entries = manifest["requests"].as_array().unwrap();
    let served = served_digests(&night);
    let mut harvested = 0;
    for entry in entries.iter().filter(|e| e["status"] == "harvested") {
        // LiteLLM's own ids, kept exactly as returned.
        let id = entry["video_id"].as_str().unwrap();
        assert!(id.starts_with("video_") && id.len() > 200, "{id}");
        let path = night
            .path("renders/gateway-night")
            .join(entry["video_path"].as_str().unwrap());
        let sha = render_wire::key::Sha256Hex::of(&std::fs::read(&path).unwrap()).hex();
        assert!(
            served.contains(&sha),
            "{} is not a video the sandbox rendered",
            path.display()
        );
        assert!(entry["thumbnail_path"].is_null(), "{entry}");
        harvested += 1;
    }
    assert_eq!(harvested, 9);
    let refused = entries
        .iter()
        .find(|e| e["shot_id"] == "n09-refused")
        .unwrap();
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["error"]["kind"], "policy", "{refused}");
    let pictures = std::fs::read_dir(night.path("renders/gateway-night"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".jpg") || name.ends_with(".png") || name.ends_with(".webp")
        })
        .count();
    assert_eq!(pictures, 0, "no MP4 is laid out as a thumbnail");

    let again = nightly(&night, &proxy, &[]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr_of(&again));
    assert_eq!(
        night.sandbox.stats().videos_created,
        9,
        "a rerun sends nothing"
    );
}

#[test]
fn a_crash_after_a_post_litellm_cannot_confirm_costs_at_most_that_request_twice_and_says_so() {
    let (night, proxy) = gateway();
    let killed = nightly(&night, &proxy, &[("RENDER_FAILPOINT", "direct-after-post")]);
    assert!(!killed.status.success());
    assert_eq!(night.sandbox.stats().videos_created, 1);
    let rerun = nightly(&night, &proxy, &[]);
    assert_eq!(rerun.status.code(), Some(4), "{}", stderr_of(&rerun));
    let stderr = stderr_of(&rerun);
    assert!(
        stderr.contains("may be rendered (and billed) twice"),
        "{stderr}"
    );
    // Nine requests render; the one the crash left unconfirmed rendered twice, no other.
    assert_eq!(night.sandbox.stats().videos_created, 10);
    assert!(!stderr.contains(API_KEY) && !stderr.contains(proxy.master_key()));
}
