//! How long compiling and submitting a 50,000-request night takes, and how much memory it needs
//! (issue #4).
//!
//! Run by hand, after `cargo build --release` (the benchmark runs the real binary):
//! `cargo run --release --example bench_submit [SHOTS] [--no-submit]`
//!
//! Measures, on a generated list of SHOTS shots × 2 takes (default 25,000 → 50,000 requests,
//! three distinct reference images):
//! - `batch::compile` of the plan's requests, in-process (in a child, so its peak memory does
//!   not mix with the rest);
//! - `render plan LIST` and `render submit --dry-run --out DIR LIST` end to end (the release
//!   binary; peak memory is the child's own high-water mark);
//! - unless `--no-submit`, a real `render submit LIST` against an in-process sandbox with its
//!   default limits (reference uploads, JSONL upload, batch creation).

mod bench_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bench_support::{ChildRun, mb, ms, render_bin, run_measured, self_peak_mib, self_rss_mib};
use render_pipeline::batch::{self, BatchLimits};
use render_pipeline::ledger::Ledger;
use render_pipeline::plan::{PlanOptions, PlannedRequest, build};
use render_pipeline::shotlist::{Format, ShotListInput};
use render_pipeline::submit::dry_run;
use render_sandbox::{SandboxConfig, spawn};
use render_wire::catalog::Catalog;

const TAKES: usize = 2;
const COMPILE_ROUNDS: usize = 3;
/// Each end-to-end command runs this often: the machine is shared, so the spread matters.
const ROUNDS: usize = 3;
const API_KEY: &str = "sk-bench-0123456789";

/// The references the list cycles through: (file name, bytes, model, size) — each image must
/// match its shot's size.
const REFERENCES: [(&str, &[u8], &str, &str); 3] = [
    (
        "harbour.png",
        include_bytes!("../shotlists/refs/harbour.png"),
        "sora-2",
        "1280x720",
    ),
    (
        "alley.jpg",
        include_bytes!("../shotlists/refs/alley.jpg"),
        "sora-2",
        "1280x720",
    ),
    (
        "skyline.webp",
        include_bytes!("../shotlists/refs/skyline.webp"),
        "sora-2-pro",
        "1920x1080",
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, path] = args.as_slice()
        && mode == "compile"
    {
        return measure_compile(Path::new(path));
    }
    let shots: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(25_000);
    let real_submit = !args.iter().any(|a| a == "--no-submit");
    let bin = render_bin();
    println!("load average at start: {}", bench_support::load_average());

    let dir = tempfile::tempdir().expect("a temp dir");
    let list = dir.path().join("night.yaml");
    write_list(dir.path(), &list, shots);
    let yaml_bytes = std::fs::metadata(&list).map_or(0, |m| m.len());
    println!(
        "{shots} shots × {TAKES} takes = {} requests, {:.1} MB of YAML, {} distinct references",
        shots * TAKES,
        mb(yaml_bytes),
        REFERENCES.len()
    );
    println!();

    let me = std::env::current_exe().expect("own path");
    let mut compile = Command::new(me);
    compile.arg("compile").arg(&list);
    let run = run_measured(&compile);
    run.expect_success("the compile child");
    print!("{}", run.stdout());
    println!(
        "  compile child total: {:.0} ms wall, peak memory {:.1} MiB",
        ms(run.wall),
        run.peak_mib
    );
    println!();

    println!(
        "{:<44} {:>9} {:>8} {:>10}",
        "end to end", "wall ms", "cpu s", "peak MiB"
    );
    for round in 1..=ROUNDS {
        let mut plan = render_command(&bin, dir.path(), "state-plan");
        plan.arg("plan").arg(&list);
        let run = run_measured(&plan);
        row(
            &format!("render plan LIST (round {round})"),
            run.expect_success("render plan"),
        );
    }
    for round in 1..=ROUNDS {
        let out = dir.path().join(format!("dry-{round}"));
        let mut dry = render_command(&bin, dir.path(), &format!("state-dry-{round}"));
        dry.args(["submit", "--dry-run", "--out"])
            .arg(&out)
            .arg(&list);
        let run = run_measured(&dry);
        run.expect_success("render submit --dry-run");
        let (files, lines, bytes) = jsonl_summary(&out);
        row(&format!("render submit --dry-run (round {round})"), &run);
        println!(
            "    → {files} file(s), {lines} lines, {:.1} MB of JSONL",
            mb(bytes)
        );
    }

    if real_submit {
        submit_to_sandbox(&bin, dir.path(), &list);
    }
    println!("load average at end: {}", bench_support::load_average());
}

/// Runs `render submit LIST` against a sandbox with its default limits, time only (and the
/// client's peak memory, which comes for free).
fn submit_to_sandbox(bin: &Path, dir: &Path, list: &Path) {
    let sandbox = spawn(SandboxConfig::default().api_key(API_KEY)).expect("the sandbox starts");
    let cpu_before = bench_support::self_cpu_secs();
    let mut submit = render_command(bin, dir, "state-submit");
    submit
        .env("OPENAI_BASE_URL", sandbox.base_url())
        .env("OPENAI_API_KEY", API_KEY)
        .args(["submit", "--format", "json"])
        .arg(list);
    let run = run_measured(&submit);
    run.expect_success("render submit");
    let server_cpu = bench_support::self_cpu_secs() - cpu_before;
    row("render submit LIST (sandbox, default limits)", &run);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap_or_default();
    println!(
        "    → {} submitted in {} batch(es), {} references uploaded; sandbox used {server_cpu:.1} s CPU meanwhile",
        report["submitted"],
        report["batches"].as_array().map_or(0, Vec::len),
        report["uploaded_assets"],
    );
    let stats = sandbox.stats();
    println!(
        "    sandbox stats: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
}

fn render_command(bin: &Path, dir: &Path, state: &str) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .env("RENDER_STATE_DIR", dir.join(state))
        // A compatible server, as a night would use (api.openai.com has retired sora-2, which
        // only adds warnings); plan and --dry-run never contact it.
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env_remove("RENDER_LOG")
        .env_remove("RENDER_FAILPOINT");
    command
}

fn row(name: &str, run: &ChildRun) {
    println!(
        "{name:<44} {:>9.0} {:>8.2} {:>10.1}",
        ms(run.wall),
        run.cpu_secs,
        run.peak_mib
    );
}

/// Files, lines and bytes of the JSONL files in `dir`.
fn jsonl_summary(dir: &Path) -> (usize, usize, u64) {
    let mut summary = (0, 0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        summary.0 += 1;
        summary.1 += bytes.iter().filter(|b| **b == b'\n').count();
        summary.2 += bytes.len() as u64;
    }
    summary
}

fn write_list(dir: &Path, list: &Path, shots: usize) {
    for (name, bytes, _, _) in REFERENCES {
        std::fs::write(dir.join(name), bytes).expect("write a reference");
    }
    let mut text = String::with_capacity(shots * 200);
    text.push_str("project: bench-submit\ndefaults:\n  model: sora-2\n  seconds: 8\n");
    text.push_str(&format!("  takes: {TAKES}\nshots:\n"));
    for i in 0..shots {
        text.push_str(&format!(
            "  - id: shot-{i:06}\n    prompt: A lighthouse at dusk, angle {i}, waves breaking slowly on the rocks below.\n"
        ));
        // Three shots in four use one of the references; the fourth has none.
        if let Some((name, _, model, size)) = REFERENCES.get(i % 4) {
            text.push_str(&format!(
                "    reference: {name}\n    model: {model}\n    size: {size}\n"
            ));
        }
    }
    std::fs::write(list, text).expect("write the list");
}

/// Child mode: plans the list in-process, then times `batch::compile` of its requests.
fn measure_compile(list: &Path) {
    let text = std::fs::read_to_string(list).expect("read the list");
    let base = list.parent().unwrap_or(Path::new("."));
    let started = Instant::now();
    let input = ShotListInput::new("night.yaml", base, text, Format::Yaml);
    let plan = match build(
        &[input],
        &PlanOptions::single("api.openai.com", Catalog::builtin()),
        &|_| false,
    ) {
        Ok((plan, _)) => plan,
        Err(diagnostics) => panic!("the generated list is invalid: {:?}", diagnostics.first()),
    };
    let planned = started.elapsed();
    println!(
        "in-process: plan of {} requests {:.0} ms (context)",
        plan.requests.len(),
        ms(planned)
    );

    let rss_before = self_rss_mib();
    let mut rounds: Vec<(Duration, Duration, usize, usize)> = Vec::new();
    for _ in 0..COMPILE_ROUNDS {
        let started = Instant::now();
        let bodies: Vec<_> = plan
            .requests
            .iter()
            .map(|r| {
                let mut body = batch::video_body(
                    r.model.as_str(),
                    &r.size.to_string(),
                    r.seconds.0,
                    &r.prompt,
                );
                body.input_reference = placeholder_file_id(r)
                    .map(|file_id| render_wire::api::InputReference::FileId { file_id });
                (r.key, body)
            })
            .collect();
        let built = started.elapsed();
        let started = Instant::now();
        let parts = batch::compile(bodies, BatchLimits::default()).expect("the plan compiles");
        let compiled = started.elapsed();
        let bytes = parts.iter().map(|p| p.jsonl.len()).sum();
        rounds.push((built, compiled, parts.len(), bytes));
    }
    let best = rounds
        .iter()
        .min_by_key(|r| r.0 + r.1)
        .expect("at least one round");
    let per_request_us = (best.0 + best.1).as_secs_f64() * 1e6 / plan.requests.len() as f64;
    println!(
        "in-process: batch::compile, best of {COMPILE_ROUNDS}: bodies {:.0} ms + compile {:.0} ms = {:.2} µs/request → {} part(s), {:.1} MB JSONL",
        ms(best.0),
        ms(best.1),
        per_request_us,
        best.2,
        mb(best.3 as u64)
    );
    println!(
        "in-process: all rounds (bodies+compile ms): {}",
        rounds
            .iter()
            .map(|r| format!("{:.0}", ms(r.0 + r.1)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "in-process: memory: {rss_before:.1} MiB resident after planning, peak {:.1} MiB after compiling (compile adds ≤ {:.1} MiB)",
        self_peak_mib(),
        self_peak_mib() - rss_before
    );
    dry_run_breakdown(&plan);
}

/// `submit::dry_run` in-process against an empty ledger and cache: request selection (two
/// ledger lookups per request), compile and writing the JSONL.
fn dry_run_breakdown(plan: &render_pipeline::plan::Plan) {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let ledger = Ledger::open(&scratch.path().join("ledger.sqlite")).expect("the ledger opens");
    let store = render_pipeline::cache::LocalStore::open(scratch.path()).expect("the cache opens");
    let out = scratch.path().join("jsonl");
    let started = Instant::now();
    dry_run(plan, &ledger, &store, BatchLimits::default(), &out).expect("dry run");
    println!(
        "in-process: submit::dry_run (select + compile + write JSONL) {:.0} ms",
        ms(started.elapsed())
    );
}

/// The id `dry_run` would write for a reference not uploaded yet.
fn placeholder_file_id(request: &PlannedRequest) -> Option<String> {
    request
        .reference
        .as_ref()
        .map(|r| format!("file-pending-{}", &r.sha256.hex()[..16]))
}
