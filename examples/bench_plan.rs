//! How long `render plan` takes on a 100,000-shot list, and how much memory it needs: end to end
//! (the release binary, nothing cached and with 90% of the shots cached, and a one-shot list for
//! the memory any plan needs), in-process, and beside PyYAML's C loader merely loading the same
//! file (when python3 has PyYAML with libyaml).
//!
//! Run by hand, after `cargo build --release` (the end-to-end cases run the real binary):
//! `cargo run --release --example bench_plan [SHOTS] [--rounds N]`. Each measurement runs in
//! its own child process so the peak-memory figures do not mix; every round runs each case once,
//! side by side, so the ratios of one round share the machine's load. Medians of the rounds.
//! `BENCH_KEEP=1` keeps the generated list and state folders, for a profiler.

mod bench_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bench_support::{ChildRun, median, ms, render_bin, run_measured};
use render_pipeline::plan::{PlanOptions, build};
use render_pipeline::shotlist::{Format, ShotListInput};
use render_wire::catalog::Catalog;

const HARBOUR_PNG: &[u8] = include_bytes!("../shotlists/refs/harbour.png");
const DEFAULT_ROUNDS: usize = 3;
/// One shot in ten is not cached in the cached case.
const UNCACHED_EVERY: usize = 10;
const PYYAML: &str = "import sys, yaml\nwith open(sys.argv[1], 'rb') as f:\n    \
                      doc = yaml.load(f, Loader=yaml.CSafeLoader)\nprint(len(doc['shots']))";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, path] = args.as_slice()
        && !mode.starts_with("--")
    {
        return measure(mode, Path::new(path));
    }
    let rounds_at = args.iter().position(|a| a == "--rounds");
    let rounds = rounds_at
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    // The first number that is not the value of --rounds.
    let shots: usize = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| rounds_at.is_none_or(|r| *i != r + 1))
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(100_000);
    let bin = render_bin();
    let dir = tempfile::tempdir().expect("a temp dir");
    let list = dir.path().join("big.yaml");
    write_list(&list, shots);
    // What `render plan` needs whatever the list: the constant of the memory goal.
    let one_shot = dir.path().join("one.yaml");
    write_list(&one_shot, 1);
    std::fs::write(dir.path().join("harbour.png"), HARBOUR_PNG).expect("write the reference");
    let bytes = std::fs::metadata(&list).map_or(0, |m| m.len());
    let file_mib = bytes as f64 / 1048576.0;
    println!("load average at start: {}", bench_support::load_average());
    println!("{shots} shots, {file_mib:.1} MiB of YAML, {rounds} rounds");
    let cached_state = dir.path().join("state-cached");
    let cached = populate_cache(&bin, dir.path(), &list, &cached_state);
    println!("cached case: {cached} requests cached (every shot but one in {UNCACHED_EVERY})");
    let python = pyyaml_available();
    if !python {
        println!("python3 with PyYAML (libyaml) not found: no PyYAML comparison");
    }

    let me = std::env::current_exe().expect("own path");
    let mut results: Vec<(&str, Vec<ChildRun>)> = Vec::new();
    let mut record =
        |name: &'static str, run: ChildRun| match results.iter_mut().find(|(n, _)| *n == name) {
            Some((_, runs)) => runs.push(run),
            None => results.push((name, vec![run])),
        };
    for round in 1..=rounds {
        for mode in ["plain", "build"] {
            let mut child = Command::new(&me);
            child.arg(mode).arg(&list);
            let run = run_measured(&child);
            print!("round {round}: {}", run.expect_success(mode).stdout());
            record(if mode == "plain" { "plain" } else { "build" }, run);
        }
        let empty_state = dir.path().join("state-empty");
        let run = run_measured(&plan_command(&bin, dir.path(), &empty_state, &list));
        run.expect_success("render plan");
        record("plan", run);
        let run = run_measured(&plan_command(&bin, dir.path(), &cached_state, &list));
        run.expect_success("render plan (cached)");
        record("plan-cached", run);
        let run = run_measured(&plan_command(&bin, dir.path(), &empty_state, &one_shot));
        run.expect_success("render plan (one shot)");
        record("plan-one", run);
        if python {
            let mut py = Command::new("python3");
            py.args(["-c", PYYAML]).arg(&list);
            let run = run_measured(&py);
            run.expect_success("PyYAML");
            record("pyyaml", run);
        }
    }

    println!();
    println!(
        "{:<52} {:>9} {:>9} {:>9}   all rounds (wall ms)",
        "median of rounds", "wall ms", "cpu ms", "peak MiB"
    );
    let labels = [
        ("plain", "serde-saphyr plain parse, no spans (in-process)"),
        ("build", "plan::build (in-process)"),
        ("plan", "render plan LIST, nothing cached"),
        ("plan-cached", "render plan LIST, 90% of shots cached"),
        ("plan-one", "render plan of a one-shot list (the constant)"),
        ("pyyaml", "PyYAML CSafeLoader yaml.load"),
    ];
    for (name, label) in labels {
        let Some((_, runs)) = results.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let walls: Vec<f64> = runs.iter().map(|r| ms(r.wall)).collect();
        let peaks: Vec<f64> = runs.iter().map(|r| r.peak_mib).collect();
        let cpus: Vec<f64> = runs.iter().map(|r| r.cpu_secs * 1000.0).collect();
        println!(
            "{label:<52} {:>9.0} {:>9.0} {:>9.1}   {}",
            median(&walls),
            median(&cpus),
            median(&peaks),
            walls
                .iter()
                .map(|w| format!("{w:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let figures = |name: &str, figure: fn(&ChildRun) -> f64| -> Vec<f64> {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, runs)| runs.iter().map(figure).collect())
            .unwrap_or_default()
    };
    let walls = |name: &str| figures(name, |r| ms(r.wall));
    let cpus = |name: &str| figures(name, |r| r.cpu_secs);
    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>()
    };
    println!();
    if python {
        let per_round = ratios(&walls("plan"), &walls("pyyaml"));
        println!(
            "render plan ÷ PyYAML yaml.load: median {:.3} (rounds: {})",
            median(&per_round),
            list_of(&per_round)
        );
        // CPU time is less moved by other work on a shared machine (but counts both threads).
        let per_round = ratios(&cpus("plan"), &cpus("pyyaml"));
        println!(
            "  the same in CPU time: median {:.3} (rounds: {})",
            median(&per_round),
            list_of(&per_round)
        );
    }
    let per_round = ratios(&walls("plan-cached"), &walls("plan"));
    println!(
        "90%-cached plan ÷ uncached plan: median {:.3} (rounds: {})",
        median(&per_round),
        list_of(&per_round)
    );
    let per_round = ratios(&cpus("plan-cached"), &cpus("plan"));
    println!(
        "  the same in CPU time: median {:.3} (rounds: {})",
        median(&per_round),
        list_of(&per_round)
    );
    let peak = median(&figures("plan", |r| r.peak_mib));
    let constant = median(&figures("plan-one", |r| r.peak_mib));
    println!(
        "render plan peak memory: {peak:.1} MiB = {constant:.1} MiB (a one-shot list) + {:.2} × \
         the file ({file_mib:.1} MiB); {:.2} × the file in all",
        (peak - constant) / file_mib,
        peak / file_mib
    );
    println!("load average at end: {}", bench_support::load_average());
    // `BENCH_KEEP=1` leaves the list and both state folders behind, to profile `render plan`.
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!(
            "kept the list and the state folders in {}",
            dir.keep().display()
        );
    }
}

fn list_of(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pyyaml_available() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; sys.exit(0 if yaml.__with_libyaml__ else 1)",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `render plan LIST` as a night would run it: a compatible server (plan never contacts it),
/// the table on stdout.
fn plan_command(bin: &Path, dir: &Path, state: &Path, list: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .env("RENDER_STATE_DIR", state)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env_remove("RENDER_LOG")
        .env_remove("RENDER_CACHE_URL")
        .arg("plan")
        .arg(list);
    command
}

/// Records an output (ledger row and cache object) for every request of every shot but one in
/// ten, with the keys `render plan --format json` computes; returns how many.
fn populate_cache(bin: &Path, dir: &Path, list: &Path, state: &Path) -> usize {
    let mut command = plan_command(bin, dir, state, list);
    command.args(["--format", "json"]);
    let run = run_measured(&command);
    run.expect_success("render plan --format json");
    let doc: serde_json::Value = serde_json::from_slice(&run.output.stdout).expect("plan JSON");
    let keys: Vec<&str> = doc["shots"]
        .as_array()
        .expect("the plan's requests")
        .iter()
        .filter(|r| {
            !shot_number(r["id"].as_str().unwrap_or_default()).is_multiple_of(UNCACHED_EVERY)
        })
        .filter_map(|r| r["key"].as_str())
        .collect();
    let ledger_path = state.join("ledger.sqlite");
    render_pipeline::ledger::Ledger::open(&ledger_path).expect("the ledger opens");
    let store = render_pipeline::cache::LocalStore::open(state).expect("the cache opens");
    let mut conn = rusqlite::Connection::open(&ledger_path).expect("the ledger opens");
    let tx = conn.transaction().expect("a transaction");
    for key in &keys {
        // One object per output, as harvest leaves them (written directly: no fsync needed).
        let video = format!("video of {key}");
        let sha = render_wire::key::Sha256Hex::of(video.as_bytes());
        let path = store.path(&sha);
        std::fs::create_dir_all(path.parent().expect("a fan-out folder")).expect("mkdir");
        std::fs::write(&path, &video).expect("write an object");
        tx.execute(
            "INSERT INTO outputs (key, video_sha, video_bytes, harvested_at) VALUES (?1, ?2, ?3, 0)",
            rusqlite::params![key, sha.hex(), video.len()],
        )
        .expect("record an output");
    }
    tx.commit().expect("commit");
    keys.len()
}

fn shot_number(id: &str) -> usize {
    id.trim_start_matches("shot-").parse().unwrap_or(0)
}

fn write_list(path: &PathBuf, shots: usize) {
    let mut text = String::with_capacity(shots * 160);
    text.push_str("project: bench\ndefaults:\n  model: sora-2\n  seconds: 8\nshots:\n");
    for i in 0..shots {
        text.push_str(&format!(
            "  - id: shot-{i:06}\n    prompt: A lighthouse at dusk, take the {i}th angle, waves breaking slowly.\n"
        ));
        match i % 4 {
            0 => text.push_str("    model: sora-2-pro\n    size: 1792x1024\n    seconds: 12\n"),
            1 => text.push_str("    takes: 2\n    tags: [exterior, night]\n"),
            2 => text.push_str("    reference: harbour.png\n"),
            _ => {}
        }
    }
    std::fs::write(path, text).expect("write the list");
}

/// Child mode: one in-process measurement.
fn measure(mode: &str, path: &Path) {
    let text = std::fs::read_to_string(path).expect("read the list");
    let start = Instant::now();
    let summary = match mode {
        "plain" => {
            let value: serde_json::Value =
                serde_saphyr::from_str_with_options(&text, serde_saphyr::options! { budget: None })
                    .expect("valid YAML");
            let shots = value["shots"].as_array().map_or(0, Vec::len);
            format!("{shots} shots as a plain value")
        }
        _ => {
            let base = path.parent().unwrap_or(Path::new("."));
            let input = ShotListInput::new("big.yaml", base, text, Format::Yaml);
            let opts = PlanOptions::single("127.0.0.1", Catalog::builtin());
            match build(&[input], &opts, &|_| false) {
                Ok((plan, _)) => format!(
                    "{} requests, {} at Batch rates",
                    plan.requests.len(),
                    plan.total()
                ),
                Err(d) => format!("invalid: {} diagnostics, first {:?}", d.len(), d.first()),
            }
        }
    };
    println!(
        "{mode:>6}: {:>8.1} ms in-process ({summary})",
        start.elapsed().as_secs_f64() * 1000.0
    );
}
