//! One night on the sandbox in each dialect — OpenAI, SGLang, vllm-omni, LiteLLM — through the
//! direct lane: every request sent once, every finished video laid out byte for byte, the
//! failure reported with the server's own message, no MP4 laid out as a picture, and a second
//! run that sends nothing.

mod common;

use common::*;
use render_sandbox::SandboxConfig;
use render_sandbox::faults::{FaultConfig, Trigger};
use render_wire::dialect::{ALL_DIALECTS, Dialect};

const NIGHTLY: &[&str] = NIGHTLY_WITH_PROVIDERS;

/// A sandbox speaking `dialect` whose third render fails, and a providers file naming it.
fn farm(dialect: Dialect) -> Night {
    let mut config = SandboxConfig::default()
        .dialect(dialect)
        .video_bytes(96 * 1024)
        .concurrency(3)
        .faults(FaultConfig::none().seed(9).moderation(Trigger::nth([3])));
    if dialect.facts().requires_key {
        config = config.api_key(API_KEY);
    }
    let night = Night::with(config);
    let key = if dialect.facts().requires_key {
        "    api_key_env: OPENAI_API_KEY\n"
    } else {
        ""
    };
    night.write(
        "providers.yaml",
        format!(
            "providers:\n  - name: farm\n    base_url: {}\n    dialect: {dialect}\n    lane: direct\n    max_in_flight: 3\n{key}",
            night.sandbox.base_url()
        ),
    );
    night.write("first.png", png_of(1280, 720, 5));
    night.write(
        "night.yaml",
        ten_request_night(
            "farm-night",
            "farm",
            "  - { id: n09, prompt: \"A cat asleep on a coil of rope\" }\n",
        ),
    );
    night
}

fn posts(night: &Night) -> u64 {
    night.sandbox.stats().requests_to("POST /v1/videos")
}

fn one_night(dialect: Dialect) {
    let night = farm(dialect);
    let out = night.render(NIGHTLY);
    assert_eq!(out.status.code(), Some(4), "{dialect}: {}", stderr_of(&out));
    assert_eq!(posts(&night), 10, "{dialect}: every request sent once");
    let manifest = night.manifest("renders/farm-night");
    let entries = manifest["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{dialect}");

    let failed: Vec<_> = entries.iter().filter(|e| e["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{dialect}: {manifest}");
    let message = failed[0]["error"]["message"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.contains("without a reason"),
        "{dialect}: the server's own message, got {message:?}"
    );

    let mut laid_out = 0;
    for entry in entries.iter().filter(|e| e["status"] == "harvested") {
        let id = entry["video_id"].as_str().unwrap();
        let served = night
            .sandbox
            .video_digest(id)
            .unwrap_or_else(|| panic!("{dialect}: the sandbox knows {id} exactly as returned"));
        let path = night
            .path("renders/farm-night")
            .join(entry["video_path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            render_wire::key::Sha256Hex::of(&bytes).hex(),
            served.sha256,
            "{dialect}: {id}"
        );
        let picture = entry["thumbnail_path"].as_str();
        match dialect {
            Dialect::Openai => assert!(picture.is_some_and(|p| p.ends_with(".jpg")), "{entry}"),
            _ => assert!(
                picture.is_none(),
                "{dialect}: no thumbnail from this server: {entry}"
            ),
        }
        laid_out += 1;
    }
    assert_eq!(laid_out, 9, "{dialect}");

    let again = night.render(NIGHTLY);
    assert_eq!(
        again.status.code(),
        Some(4),
        "{dialect}: {}",
        stderr_of(&again)
    );
    assert_eq!(posts(&night), 10, "{dialect}: a second run sends nothing");
}

#[test]
fn a_night_renders_once_on_each_dialect() {
    for dialect in ALL_DIALECTS {
        one_night(dialect);
    }
}

#[test]
fn a_self_hosted_wan_farm_gets_its_served_model_name_and_the_image_itself() {
    let night = Night::with(
        SandboxConfig::default()
            .dialect(Dialect::Sglang)
            .video_bytes(32 * 1024),
    );
    night.write(
        "providers.yaml",
        format!(
            r#"providers:
  - name: wan-farm
    base_url: {}
    dialect: sglang
    max_in_flight: 1
    models:
      - name: wan2.2-t2v
        served_as: Wan-AI/Wan2.2-T2V-A14B-Diffusers
        seconds: [5]
        sizes:
          - {{ size: 1280x720, standard: "0.02" }}
"#,
            night.sandbox.base_url()
        ),
    );
    night.write("first.png", png_of(1280, 720, 1));
    night.write(
        "night.yaml",
        "project: wan\ndefaults: { provider: wan-farm }\nshots:\n  - { id: w1, prompt: \"Mist over the estuary\", reference: first.png }\n  - { id: w2, prompt: \"A heron lifting off\" }\n",
    );
    let plan = night.json(&["--providers", "providers.yaml", "plan", "night.yaml"]);
    let shots = plan["shots"].as_array().unwrap();
    // The provider's only model, its only duration, its price, and no Batch lane.
    assert_eq!(shots[0]["model"], "wan2.2-t2v");
    assert_eq!(shots[0]["seconds"], 5);
    assert_eq!(shots[0]["cost_usd"], "0.10");
    assert_eq!(shots[0]["lane"], "direct");
    assert!(shots[0]["batch_cost_usd"].is_null());
    let out = night.render(NIGHTLY);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let listed = blocking_get(&format!("{}/videos", night.sandbox.base_url()));
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    for video in listed["data"].as_array().unwrap() {
        assert_eq!(
            video["model"], "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            "{video}"
        );
    }
    // SGLang has no Files API: nothing was uploaded, the image went with the job.
    assert!(night.sandbox.stats().files_uploaded.is_empty());
}

#[test]
fn a_restarted_server_loses_its_jobs_only_after_denying_them_for_the_grace_period() {
    let night = Night::with(
        SandboxConfig::default()
            .dialect(Dialect::Sglang)
            .video_bytes(16 * 1024)
            .render_time(std::time::Duration::from_secs(30)),
    );
    night.write(
        "providers.yaml",
        format!(
            "providers:\n  - {{ name: farm, base_url: \"{}\", dialect: sglang, max_in_flight: 2 }}\n",
            night.sandbox.base_url()
        ),
    );
    night.write(
        "night.yaml",
        "project: restart\ndefaults: { provider: farm }\nshots:\n  - { id: r1, prompt: \"One\" }\n  - { id: r2, prompt: \"Two\" }\n",
    );
    let submitted = night.json(&["--providers", "providers.yaml", "submit", "night.yaml"]);
    assert_eq!(submitted["jobs_sent"], 2);
    night.sandbox.restart();
    // One harvest right after the restart: a 404 proves nothing yet.
    let early = night.json(&[
        "--providers",
        "providers.yaml",
        "harvest",
        "--missing-grace",
        "3600",
    ]);
    assert_eq!(early["runs"][0]["pending"], 2, "{early}");
    assert_eq!(early["runs"][0]["lost"], 0, "{early}");
    // Denied on poll after poll past the grace: lost, and resubmittable.
    let out = night.render(&[
        "--providers",
        "providers.yaml",
        "harvest",
        "--watch",
        "--missing-grace",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("no longer knows job"),
        "{}",
        stderr_of(&out)
    );
    // `render retry` sends exactly those again, through the same lane.
    let status = night.json(&["status"]);
    let run = status[0]["run_id"].as_str().unwrap().to_string();
    let retried = night.json(&["--providers", "providers.yaml", "retry", &run]);
    assert_eq!(retried["jobs_sent"], 2, "{retried}");
    let done = night.json(&["--providers", "providers.yaml", "harvest", "--watch"]);
    assert_eq!(done["runs"][0]["harvested"], 2, "{done}");
    assert_eq!(night.sandbox.stats().requests_to("POST /v1/videos"), 4);
}
