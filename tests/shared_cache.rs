//! A studio's machines sharing one cache on a real S3 server (moto, on 127.0.0.1): what one
//! rendered, no other pays for; two starting the same night at once render each request once.

mod common;

use common::moto::Moto;
use common::*;
use render_sandbox::{FaultConfig, SandboxConfig, Trigger};

/// Two "machines": two state folders (and output folders) beside one sandbox and one bucket.
struct Studio {
    night: Night,
    moto: Moto,
    cache: String,
}

impl Studio {
    fn new(bucket: &str) -> Studio {
        Studio::with(bucket, SandboxConfig::default().video_bytes(64 * 1024))
    }

    fn with(bucket: &str, config: SandboxConfig) -> Studio {
        Studio::around(bucket, Night::with(config))
    }

    /// A studio around a night built by hand (`Night::with` makes renders quick).
    fn around(bucket: &str, night: Night) -> Studio {
        let moto = Moto::start();
        let cache = moto.bucket(bucket);
        Studio { night, moto, cache }
    }

    /// `render ARGS` as machine `name`.
    fn command(&self, name: &str, args: &[&str]) -> std::process::Command {
        let mut command = self.night.command(args);
        command
            .env(
                "RENDER_STATE_DIR",
                self.night.path(&format!("{name}/.render")),
            )
            .env("RENDER_CACHE_URL", &self.cache);
        for (var, value) in self.moto.env() {
            command.env(var, value);
        }
        command
    }

    fn run(&self, name: &str, args: &[&str]) -> std::process::Output {
        self.command(name, args).output().unwrap()
    }

    fn nightly(&self, name: &str, list: &str) -> std::process::Output {
        self.nightly_with(name, list, &[]).output().unwrap()
    }

    /// `render nightly LIST --out NAME/renders …` as machine `name`, with `extra` flags.
    fn nightly_with(&self, name: &str, list: &str, extra: &[&str]) -> std::process::Command {
        let out = format!("{name}/renders");
        let mut args = vec![
            "nightly",
            list,
            "--out",
            &out,
            "--max-poll-interval",
            "1",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let mut command = self.command(name, &args);
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    }

    /// The claims in the bucket now.
    fn claims(&self, bucket: &str) -> Vec<String> {
        self.moto.list(bucket, "studio-cache/claims/")
    }

    /// SHA-256 of each laid-out video of machine `name`, by file name.
    fn outputs(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        let dir = self.night.path(&format!("{name}/renders"));
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name()?.to_str()?.to_string();
                name.ends_with(".mp4").then(|| {
                    (
                        name,
                        render_wire::key::Sha256Hex::of(&std::fs::read(&path).unwrap()).hex(),
                    )
                })
            })
            .collect()
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr_of(out));
}

#[test]
fn a_second_machine_plans_the_first_ones_night_at_zero_and_lays_it_out_without_rendering() {
    let studio = Studio::new("studio-one");
    studio.night.write("night.yaml", shot_list(3, "shared"));
    ok(&studio.nightly("a", "night.yaml"), "machine A");
    assert_eq!(studio.night.sandbox.stats().videos_created, 3);

    let plan = studio.run("b", &["plan", "night.yaml", "--format", "json"]);
    ok(&plan, "machine B plans");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["total_usd"], "0.00", "{plan}");
    assert_eq!(plan["cached"], 3);

    ok(&studio.nightly("b", "night.yaml"), "machine B");
    assert_eq!(
        studio.night.sandbox.stats().videos_created,
        3,
        "nothing rendered again"
    );
    assert_eq!(
        studio.outputs("a"),
        studio.outputs("b"),
        "byte-identical outputs"
    );
    assert_eq!(studio.outputs("b").len(), 3);
}

#[test]
fn two_machines_starting_one_new_night_at_once_render_each_request_once() {
    let studio = Studio::new("studio-two");
    studio.night.write("night.yaml", shot_list(8, "at-once"));
    let spawn = |name: &str| {
        studio
            .command(
                name,
                &[
                    "nightly",
                    "night.yaml",
                    "--out",
                    &format!("{name}/renders"),
                    "--max-poll-interval",
                    "1",
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    ok(&a, "machine A");
    ok(&b, "machine B");
    assert_eq!(
        studio.night.sandbox.stats().videos_created,
        8,
        "each request rendered once"
    );
    assert_eq!(studio.outputs("a"), studio.outputs("b"));
    assert_eq!(studio.outputs("a").len(), 8);
}

#[test]
fn a_corrupted_shared_object_is_caught_by_its_hash_and_never_laid_out() {
    let studio = Studio::new("studio-three");
    studio.night.write("night.yaml", shot_list(2, "corrupt"));
    ok(&studio.nightly("a", "night.yaml"), "machine A");
    let objects = studio.moto.list("studio-three", "studio-cache/objects/");
    assert_eq!(objects.len(), 4, "two videos, two thumbnails: {objects:?}");
    for damaged in &objects {
        studio
            .moto
            .overwrite("studio-three", damaged, b"not what was rendered");
    }

    let b = studio.nightly("b", "night.yaml");
    ok(&b, "machine B");
    assert!(
        stderr_of(&b).contains("does not hash to its name"),
        "{}",
        stderr_of(&b)
    );
    for (name, sha) in studio.outputs("b") {
        assert_ne!(
            sha,
            render_wire::key::Sha256Hex::of(b"not what was rendered").hex(),
            "{name}"
        );
    }
    assert_eq!(studio.outputs("b").len(), 2);
    // Machine B rendered both again, rather than lay out damaged bytes.
    assert_eq!(studio.night.sandbox.stats().videos_created, 4);
}

#[test]
fn an_interrupted_upload_leaves_no_index_entry_without_its_object() {
    let studio = Studio::new("studio-four");
    studio
        .night
        .write("night.yaml", shot_list(1, "interrupted"));
    let killed = studio
        .command("a", &["nightly", "night.yaml", "--max-poll-interval", "1"])
        .env("RENDER_FAILPOINT", "shared-after-objects")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert!(
        !studio
            .moto
            .list("studio-four", "studio-cache/objects/")
            .is_empty()
    );
    assert!(
        studio
            .moto
            .list("studio-four", "studio-cache/index/")
            .is_empty()
    );
    let plan = studio.run("b", &["plan", "night.yaml", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["cached"], 0,
        "nothing is shared before its index entry: {plan}"
    );
    // Machine A, run again, finishes and publishes.
    ok(
        &studio.run("a", &["nightly", "night.yaml", "--max-poll-interval", "1"]),
        "A again",
    );
    assert_eq!(
        studio.moto.list("studio-four", "studio-cache/index/").len(),
        1
    );
}

#[test]
fn an_unreachable_store_mid_night_leaves_the_night_to_the_local_cache_and_says_so() {
    let mut studio = Studio::new("studio-five");
    studio
        .night
        .write("night.yaml", shot_list(2, "unreachable"));
    ok(&studio.run("a", &["submit", "night.yaml"]), "submit");
    studio.moto.stop();
    let out = studio.run("a", &["harvest", "--watch", "--format", "json"]);
    ok(&out, "harvest without the store");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"][0]["harvested"], 2);
    assert!(
        stderr_of(&out).contains("the night goes on with the local cache"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_night_longer_than_the_lease_renews_its_claims_and_is_not_taken_over() {
    // Renders take longer than the lease: without renewals, machine B would find A's claims
    // silent past the lease, take them over and render everything again.
    let config = SandboxConfig::default()
        .video_bytes(64 * 1024)
        .render_time(std::time::Duration::from_secs(10));
    let studio = Studio::around("studio-renew", slow_night(config));
    studio.night.write("night.yaml", shot_list(2, "long"));
    let lease = ["--cache-lease", "4"];
    let a = studio
        .nightly_with("a", "night.yaml", &lease)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while studio.claims("studio-renew").len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "machine A never claimed its requests"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Well past the lease since A claimed, and A is still rendering.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let b = studio
        .nightly_with("b", "night.yaml", &lease)
        .output()
        .unwrap();
    let a = a.wait_with_output().unwrap();
    ok(&a, "machine A");
    ok(&b, "machine B");
    assert!(
        !stderr_of(&b).contains("taking it over"),
        "{}",
        stderr_of(&b)
    );
    assert_eq!(
        studio.night.sandbox.stats().videos_created,
        2,
        "each request rendered once: machine A kept its claims"
    );
    assert_eq!(studio.outputs("a"), studio.outputs("b"));
    assert_eq!(studio.outputs("b").len(), 2);
}

/// A night whose sandbox renders take `render_time` (`Night::with` makes them quick).
fn slow_night(config: SandboxConfig) -> Night {
    Night {
        sandbox: render_sandbox::spawn(config).expect("the sandbox starts"),
        dir: tempfile::tempdir().expect("a scratch folder"),
    }
}

#[test]
fn a_retried_request_another_machine_is_rendering_is_waited_for_not_rendered_twice() {
    let config = SandboxConfig::default()
        .video_bytes(64 * 1024)
        .render_time(std::time::Duration::from_secs(4))
        .faults(FaultConfig::none().batch_request_failure(Trigger::rate(1.0)));
    let studio = Studio::around("studio-retry", slow_night(config));
    studio.night.write("night.yaml", shot_list(2, "retry"));
    // Machine A's night fails with a retryable server error on every request. Its claims go
    // with them: another machine need not wait out the lease.
    let a = studio.nightly("a", "night.yaml");
    assert_eq!(a.status.code(), Some(4), "{}", stderr_of(&a));
    assert_eq!(studio.claims("studio-retry"), Vec::<String>::new());

    // Machine B claims the failed requests at once and renders them, slowly.
    studio
        .night
        .sandbox
        .set_faults(FaultConfig::none())
        .unwrap();
    let before = studio.night.sandbox.stats().videos_created;
    let b = studio.nightly_with("b", "night.yaml", &[]).spawn().unwrap();
    let started = std::time::Instant::now();
    while studio.claims("studio-retry").len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "machine B never claimed the failed requests"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A retries while B renders: the requests are B's now, so A waits for them, sends nothing.
    let retry = studio.run("a", &["retry", "last", "--format", "json"]);
    ok(&retry, "machine A retries");
    let retry: serde_json::Value = serde_json::from_slice(&retry.stdout).unwrap();
    assert_eq!(retry["submitted"], 0, "{retry}");
    assert_eq!(retry["skipped_elsewhere"], 2, "{retry}");
    let harvest = studio.run("a", &["harvest", "--watch"]);
    ok(&harvest, "machine A harvests B's renders");
    ok(&b.wait_with_output().unwrap(), "machine B");
    assert_eq!(
        studio.night.sandbox.stats().videos_created - before,
        2,
        "machine B rendered the retried requests, machine A did not"
    );
    assert_eq!(studio.outputs("a"), studio.outputs("b"));
    assert_eq!(studio.outputs("a").len(), 2);
}

#[test]
fn a_retry_fetches_what_another_machine_has_published_since() {
    let faults = FaultConfig::none().batch_request_failure(Trigger::rate(1.0));
    let studio = Studio::with(
        "studio-retry-fetch",
        SandboxConfig::default()
            .video_bytes(64 * 1024)
            .faults(faults),
    );
    studio
        .night
        .write("night.yaml", shot_list(2, "retry-fetch"));
    let a = studio.nightly("a", "night.yaml");
    assert_eq!(a.status.code(), Some(4), "{}", stderr_of(&a));
    studio
        .night
        .sandbox
        .set_faults(FaultConfig::none())
        .unwrap();
    // Machine B takes A's silent claims over at once (lease 0), renders and publishes them.
    ok(
        &studio
            .nightly_with("b", "night.yaml", &["--cache-lease", "0"])
            .output()
            .unwrap(),
        "machine B",
    );
    let before = studio.night.sandbox.stats().videos_created;

    let retry = studio.run("a", &["retry", "last", "--format", "json"]);
    ok(&retry, "machine A retries");
    let retry: serde_json::Value = serde_json::from_slice(&retry.stdout).unwrap();
    assert_eq!(retry["submitted"], 0, "{retry}");
    assert_eq!(retry["fetched_shared"], 2, "{retry}");
    ok(&studio.run("a", &["harvest"]), "machine A lays them out");
    assert_eq!(studio.night.sandbox.stats().videos_created, before);
    assert_eq!(studio.outputs("a"), studio.outputs("b"));
    assert_eq!(studio.outputs("a").len(), 2);
}
