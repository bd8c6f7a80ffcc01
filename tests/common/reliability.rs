//! The reliability suite's shared parts: big nights against a sandbox, seeds that are printed
//! when a randomized case fails, and the one invariant every scenario ends with
//! ([`assert_night_invariant`]).
//!
//! Included by each `tests/reliability_*.rs` with `#[path = "common/reliability.rs"] mod
//! reliability;` next to `mod common;`, so the shared harness file stays untouched.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use render_pipeline::ledger::{Ledger, RequestStatus};
use render_sandbox::SandboxConfig;
use render_sandbox::faults::FaultConfig;
use render_wire::catalog::Catalog;
use sha2::{Digest, Sha256};

use crate::common::{API_KEY, Night, blocking_get, stderr_of, stdout_of};

/// Where `render nightly` lays out a [`big_list`] (its project is `test-night`).
pub const OUT: &str = "renders/test-night";

/// A model only these tests know, with a tiny frame: the sandbox draws every thumbnail at the
/// shot's size, and at 1280x720 that drawing (not anything `render` does) would dominate a
/// night of hundreds of requests in a debug build. Written to the state folder's
/// `catalog.yaml` for `render` and merged into the sandbox's catalog.
pub const TINY_MODEL: &str = "reliability-tiny";
pub const TINY_CATALOG: &str = "models:
  - name: reliability-tiny
    max_prompt_chars: 4000
    seconds: [4]
    sizes:
      - { size: 160x96, standard: \"0.02\", batch: \"0.01\" }
";

/// A sandbox for long nights: small videos, quick renders, the tiny model, and a virtual day
/// of ten real minutes so that no video expires while a slow machine is still harvesting.
pub fn sandbox(video_bytes: u64) -> SandboxConfig {
    let mut catalog = Catalog::builtin();
    catalog
        .merge_str(TINY_CATALOG, "<reliability>")
        .expect("the test catalog is valid");
    SandboxConfig::default()
        .video_bytes(video_bytes)
        .day(Duration::from_secs(600))
        .concurrency(32)
        .catalog(catalog)
}

/// A night on `config` whose state folder knows the tiny model.
pub fn night_on(config: SandboxConfig) -> Night {
    let night = Night::with(config);
    night.write(".render/catalog.yaml", TINY_CATALOG);
    night
}

/// A night on [`sandbox`] with `faults`.
pub fn night_with(video_bytes: u64, faults: FaultConfig) -> Night {
    night_on(sandbox(video_bytes).faults(faults))
}

/// `n` shots of the tiny model with distinct prompts (so every sandbox video can be traced
/// back to its request), `salt` making them distinct from other tests' shots.
pub fn big_list(n: usize, salt: &str) -> String {
    let mut yaml = String::from("project: test-night\nshots:\n");
    for i in 0..n {
        yaml.push_str(&shot(
            &format!("shot-{i:03}"),
            &format!("{salt} shot {i}: a paper boat on a pond"),
        ));
    }
    yaml
}

/// One YAML shot entry of the tiny model.
pub fn shot(id: &str, prompt: &str) -> String {
    format!(
        "  - id: {id}\n    prompt: \"{prompt}\"\n    model: {TINY_MODEL}\n    size: 160x96\n    seconds: 4\n"
    )
}

// ---------------------------------------------------------------- seeds

/// The seed of a randomized case: `RELIABILITY_SEED` when set (to replay a failure), else the
/// case's fixed default (so CI is deterministic).
pub fn seed_or(default: u64) -> u64 {
    match std::env::var("RELIABILITY_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RELIABILITY_SEED={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A seeded generator that prints how to replay its case if the test fails.
pub struct Seeded {
    pub seed: u64,
    pub rng: ChaCha8Rng,
    test: &'static str,
}

impl Seeded {
    pub fn new(test: &'static str, default_seed: u64) -> Seeded {
        let seed = seed_or(default_seed);
        eprintln!("{test}: seed {seed}");
        Seeded {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            test,
        }
    }
}

impl Drop for Seeded {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n{} failed with seed {}: replay with\n  RELIABILITY_SEED={} cargo test --test <file> {}\n",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

// ---------------------------------------------------------------- running render

/// `render ARGS` against the night's sandbox, not yet started: for tests that kill it.
pub fn command(night: &Night, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_render"));
    command
        .args(args)
        .current_dir(night.dir.path())
        .env("OPENAI_BASE_URL", night.sandbox.base_url())
        .env("OPENAI_API_KEY", API_KEY)
        .env("RENDER_STATE_DIR", night.state_dir())
        .env_remove("RENDER_FAILPOINT")
        .env_remove("RENDER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `render nightly SHOTLIST` with the flags every scenario wants (quick polls, JSON report).
pub fn nightly_args<'a>(shotlist: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "nightly",
        shotlist,
        "--max-poll-interval",
        "1",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `render ARGS`, insisting on `code`, on no panic, and on a non-empty error when it fails.
pub fn expect_exit(night: &Night, args: &[&str], env: &[(&str, &str)], code: i32) -> Output {
    let output = night.render_with(args, env);
    assert_eq!(
        output.status.code(),
        Some(code),
        "render {} exited {:?}, wanted {code}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status.code(),
        tail(&stdout_of(&output)),
        tail(&stderr_of(&output)),
    );
    assert_no_panic(&output);
    output
}

/// No `panicked` in stderr, and no death by signal.
pub fn assert_no_panic(output: &Output) {
    let stderr = stderr_of(output);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "render panicked:\n{}",
        tail(&stderr)
    );
}

/// The last lines of a long output, for assertion messages.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(40);
    lines[start..].join("\n")
}

/// Spawns `render ARGS`, lets it run for `after`, then SIGKILLs it (unless it finished first).
/// Returns whether the kill landed.
pub fn kill_after(night: &Night, args: &[&str], after: Duration) -> bool {
    let mut child: Child = command(night, args).spawn().expect("render starts");
    let started = Instant::now();
    // Poll rather than sleep the whole span, so a quick finish is noticed (its pipes must be
    // drained or a chatty child would block on a full pipe and never finish).
    let (stdout, stderr) = drain_pipes(&mut child);
    loop {
        if child.try_wait().expect("wait on render").is_some() {
            let _ = (stdout.join(), stderr.join());
            return false;
        }
        if started.elapsed() >= after {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL render");
    let status = child.wait().expect("reap render");
    let _ = (stdout.join(), stderr.join());
    status.code().is_none()
}

fn drain_pipes(child: &mut Child) -> (std::thread::JoinHandle<()>, std::thread::JoinHandle<()>) {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    (
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        }),
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        }),
    )
}

// ---------------------------------------------------------------- the invariant

/// What a scenario allows beyond "each request rendered at most once".
#[derive(Clone, Copy, Debug)]
pub struct Allow {
    /// Renders one request may have had: 1, or 2 where the scenario resubmits lost requests.
    pub renders_per_request: usize,
}

impl Allow {
    pub const ONCE: Allow = Allow {
        renders_per_request: 1,
    };
    pub const RETRIED: Allow = Allow {
        renders_per_request: 2,
    };
}

/// How a finished night ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub harvested: usize,
    pub failed: usize,
    pub lost: usize,
    /// Failure codes and how many requests carry each.
    pub failure_codes: BTreeMap<String, usize>,
    pub videos_created: u64,
    pub batches: usize,
}

/// The invariant every reliability scenario ends with, whatever happened during the night:
///
/// 1. every request of the run is harvested, failed with its reason, or lost and resubmittable —
///    in the manifest, in the ledger, and in `render status` (the run is done, every batch
///    harvested);
/// 2. the store holds no corrupt object (`render cache verify` is clean) and no partial download
///    is left for a harvested request;
/// 3. the ledger agrees with the sandbox: as many batches as it created, every harvested file
///    (in the store and in the output folder) hashes to what the sandbox served for its video;
/// 4. nothing was paid twice: each request was rendered at most `allow.renders_per_request`
///    times, every sandbox video belongs to a request of the run, and every harvested request
///    was rendered.
pub fn assert_night_invariant(night: &Night, out_dir: &str, allow: Allow) -> Tally {
    // The checks talk to the sandbox too: no more faults from here on.
    night
        .sandbox
        .set_faults(FaultConfig::none())
        .expect("clearing faults");
    let manifest = night.manifest(out_dir);
    let run_id = manifest["run_id"]
        .as_str()
        .expect("the manifest names its run");
    let entries = manifest["requests"].as_array().expect("manifest requests");
    let ledger = Ledger::open(&night.state_dir().join("ledger.sqlite")).expect("the ledger opens");

    let mut tally = Tally::default();
    for entry in entries {
        check_entry(night, out_dir, &ledger, entry, &mut tally);
    }
    assert_eq!(
        entries.len(),
        ledger.run_items(run_id).expect("run items").len(),
        "the manifest lists every request of run {run_id}"
    );
    check_status(night, run_id);
    check_store(night, entries);
    tally.batches = check_batches(night, &ledger);
    tally.videos_created = check_renders(night, entries, allow);
    tally
}

fn check_entry(
    night: &Night,
    out_dir: &str,
    ledger: &Ledger,
    entry: &serde_json::Value,
    tally: &mut Tally,
) {
    let key: render_wire::key::RequestKey = entry["key"]
        .as_str()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("entry without a key: {entry}"));
    let row = ledger
        .request(&key)
        .expect("ledger read")
        .unwrap_or_else(|| panic!("the ledger has no request for {entry}"));
    match entry["status"].as_str() {
        Some("harvested") => {
            check_harvested(night, out_dir, ledger, &key, entry);
            tally.harvested += 1;
        }
        Some("failed") => {
            assert_eq!(row.status, RequestStatus::Failed, "{entry}");
            let message = entry["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.trim().is_empty(),
                "failed without a reason: {entry}"
            );
            let code = entry["error"]["code"]
                .as_str()
                .unwrap_or("none")
                .to_string();
            *tally.failure_codes.entry(code).or_default() += 1;
            tally.failed += 1;
        }
        Some("lost") => {
            assert_eq!(row.status, RequestStatus::Lost, "{entry}");
            assert_eq!(
                entry["error"]["retryable"], true,
                "a lost request must be resubmittable: {entry}"
            );
            tally.lost += 1;
        }
        other => panic!("request neither harvested, failed nor lost ({other:?}): {entry}"),
    }
}

fn check_harvested(
    night: &Night,
    out_dir: &str,
    ledger: &Ledger,
    key: &render_wire::key::RequestKey,
    entry: &serde_json::Value,
) {
    let video_id = entry["video_id"]
        .as_str()
        .expect("harvested with a video id");
    let sha = entry["sha256"].as_str().expect("harvested with a sha256");
    let served = night
        .sandbox
        .video_digest(video_id)
        .unwrap_or_else(|| panic!("the sandbox never made {video_id}"));
    assert_eq!(sha, served.sha256, "manifest vs sandbox for {video_id}");
    let output = ledger
        .output(key)
        .expect("ledger read")
        .unwrap_or_else(|| panic!("harvested but no output in the ledger: {entry}"));
    assert_eq!(output.video_sha.hex(), served.sha256, "ledger vs sandbox");
    assert_eq!(output.video_bytes, served.bytes);
    let stored = night
        .state_dir()
        .join("cache/v1/objects")
        .join(&sha[..2])
        .join(sha);
    assert_eq!(sha256_file(&stored), served.sha256, "{}", stored.display());
    let laid_out = night
        .path(out_dir)
        .join(entry["video_path"].as_str().expect("harvested with a path"));
    assert_eq!(
        sha256_file(&laid_out),
        served.sha256,
        "{}",
        laid_out.display()
    );
}

/// `render status RUN`: the run is done and every batch harvested.
fn check_status(night: &Night, run_id: &str) {
    let status = night.json(&["status", run_id]);
    let run = &status[0];
    assert_eq!(run["done"], true, "run not done: {run}");
    for batch in run["batches"].as_array().expect("batches") {
        if batch["batch_id"].is_null() {
            // An intent the provider refused: nothing was created.
            continue;
        }
        assert_eq!(batch["harvested"], true, "batch left unharvested: {batch}");
        let terminal = ["completed", "failed", "expired", "cancelled"];
        assert!(
            terminal.contains(&batch["status"].as_str().unwrap_or_default()),
            "batch not finished: {batch}"
        );
    }
}

fn check_store(night: &Night, entries: &[serde_json::Value]) {
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(
        verify["problems"].as_array().map(Vec::len),
        Some(0),
        "the cache holds corrupt objects: {verify}"
    );
    let partial = night.state_dir().join("cache/v1/partial");
    for entry in entries.iter().filter(|e| e["status"] == "harvested") {
        // Partials are named by the hash of the video id (see `harvest::download_variant`).
        let video_id = entry["video_id"].as_str().unwrap_or_default();
        let name = &render_wire::key::Sha256Hex::of(video_id.as_bytes()).hex()[..32];
        let leftover = partial.join(format!("{name}-video.part"));
        assert!(
            !leftover.exists(),
            "a partial download outlived its harvest: {}",
            leftover.display()
        );
    }
}

/// Batches the ledger knows (with a provider id) == batches the sandbox created.
fn check_batches(night: &Night, ledger: &Ledger) -> usize {
    let mut ids = HashSet::new();
    for run in ledger.runs().expect("runs") {
        for batch in ledger.batches_of_run(&run.id).expect("batches") {
            if let Some(id) = batch.batch_id {
                assert!(ids.insert(id.clone()), "batch {id} recorded twice");
            }
        }
    }
    let created = night.sandbox.stats().batches_created;
    assert_eq!(
        ids.len() as u64,
        created,
        "the ledger knows {} batches, the sandbox created {created}",
        ids.len()
    );
    ids.len()
}

/// Every sandbox video traced back to its request by prompt: none outside the run, none
/// rendered more often than allowed, every harvested one rendered.
fn check_renders(night: &Night, entries: &[serde_json::Value], allow: Allow) -> u64 {
    let videos = all_videos(night);
    let created = night.sandbox.stats().videos_created;
    assert_eq!(videos.len() as u64, created, "listed vs created videos");
    let mut renders: HashMap<String, usize> = HashMap::new();
    for video in &videos {
        let prompt = video["prompt"].as_str().unwrap_or_default().to_string();
        *renders.entry(prompt).or_default() += 1;
    }
    let mut requests: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let prompt = entry["prompt"].as_str().unwrap_or_default().to_string();
        *requests.entry(prompt).or_default() += 1;
    }
    for (prompt, count) in &renders {
        let wanted = requests.get(prompt).unwrap_or_else(|| {
            panic!("the sandbox rendered {prompt:?}, which no request asked for")
        });
        assert!(
            *count <= wanted * allow.renders_per_request,
            "{prompt:?} was rendered {count} times for {wanted} request(s): paid twice"
        );
    }
    for entry in entries.iter().filter(|e| e["status"] == "harvested") {
        let prompt = entry["prompt"].as_str().unwrap_or_default();
        assert!(
            renders.contains_key(prompt),
            "harvested but never rendered: {entry}"
        );
    }
    created
}

/// Every video the sandbox holds, through its list endpoint (100 a page).
pub fn all_videos(night: &Night) -> Vec<serde_json::Value> {
    let mut videos = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/videos?limit=100&order=asc", night.sandbox.base_url());
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let page: serde_json::Value =
            serde_json::from_slice(&blocking_get(&url)).expect("a video list");
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|v| v["id"].as_str())
            .map(str::to_string);
        videos.extend(data);
        if page["has_more"] != true || after.is_none() {
            return videos;
        }
    }
}

pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
}

/// The JSON report a `--format json` command printed.
pub fn report_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: not a JSON report:\n{}", tail(&stdout_of(output))))
}

/// Runs `render ARGS` until it stops failing at runtime (exit 10, the documented "rerun to
/// continue"), at most `max_runs` times; every failed run must say why and never panic.
/// Returns the last run's output and how many runs it took.
pub fn rerun_until_settled(night: &Night, args: &[&str], max_runs: usize) -> (Output, usize) {
    for run in 1..=max_runs {
        let output = night.render_with(args, &[]);
        assert_no_panic(&output);
        if output.status.code() != Some(10) {
            return (output, run);
        }
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("error:"),
            "exit 10 without an error message:\n{}",
            tail(&stderr)
        );
    }
    panic!(
        "render {} still failed after {max_runs} runs",
        args.join(" ")
    );
}

/// A plain POST with the test key, on a private runtime; the answer's status and JSON.
pub fn blocking_post(url: &str) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("POST reaches the sandbox");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    })
}

/// The sandbox's batches, newest first (one page is plenty for these tests).
pub fn sandbox_batches(night: &Night) -> Vec<serde_json::Value> {
    let url = format!("{}/batches?limit=100", night.sandbox.base_url());
    let page: serde_json::Value =
        serde_json::from_slice(&blocking_get(&url)).expect("a batch list");
    page["data"].as_array().cloned().unwrap_or_default()
}

/// The manifest's entries with `status`.
pub fn entries_with(manifest: &serde_json::Value, status: &str) -> Vec<serde_json::Value> {
    manifest["requests"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| e["status"] == status)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
