//! How busy the direct lane keeps a render farm: on a sandbox with N render slots and a
//! provider with `max_in_flight` = N, the share of slot time spent rendering between the first
//! POST and the last render's end (busy ÷ (N × span); the goal is ≥ 0.9 for 1-second jobs).
//!
//! Run by hand, after `cargo build --release` (the benchmark runs the real binary):
//! `cargo run --release --example bench_direct -- [--slots 4] [--jobs 40] [--render-ms 1000]
//! [--dialect sglang] [--runs 3]`
//!
//! Each run starts a fresh in-process sandbox of the dialect (its render slots queue what
//! exceeds them, as one GPU per job does) and a fresh state folder, then times
//! `render nightly` of JOBS distinct shots; the sandbox's own accounting gives the busy time.

mod bench_support;

use std::process::Command;
use std::time::{Duration, Instant};

use bench_support::{render_bin, run_measured};
use render_sandbox::{SandboxConfig, spawn};
use render_wire::dialect::Dialect;

struct Options {
    slots: usize,
    jobs: usize,
    render: Duration,
    dialect: Dialect,
    runs: usize,
}

fn options() -> Options {
    let mut options = Options {
        slots: 4,
        jobs: 40,
        render: Duration::from_millis(1000),
        dialect: Dialect::Sglang,
        runs: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--slots" => options.slots = value.parse().expect("--slots N"),
            "--jobs" => options.jobs = value.parse().expect("--jobs N"),
            "--render-ms" => {
                options.render = Duration::from_millis(value.parse().expect("--render-ms MS"))
            }
            "--dialect" => options.dialect = value.parse().expect("--dialect NAME"),
            "--runs" => options.runs = value.parse().expect("--runs N"),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn main() {
    let options = options();
    println!(
        "direct lane: {} jobs of {} ms on {} slots ({} dialect), max_in_flight = {}",
        options.jobs,
        options.render.as_millis(),
        options.slots,
        options.dialect,
        options.slots
    );
    println!(
        "{:>4} {:>10} {:>10} {:>12} {:>6}",
        "run", "wall s", "span s", "utilisation", "peak"
    );
    let mut shares = Vec::new();
    for run in 1..=options.runs {
        let (wall, span, share, peak) = one_run(&options);
        println!(
            "{run:>4} {:>10.2} {:>10.2} {:>12.3} {peak:>6}",
            wall.as_secs_f64(),
            span,
            share
        );
        shares.push(share);
    }
    shares.sort_by(f64::total_cmp);
    println!(
        "median utilisation {:.3} (min {:.3}, max {:.3})",
        shares[shares.len() / 2],
        shares[0],
        shares[shares.len() - 1]
    );
}

fn one_run(options: &Options) -> (Duration, f64, f64, usize) {
    let mut config = SandboxConfig::default()
        .dialect(options.dialect)
        .seed(rand::random())
        .concurrency(options.slots)
        .render_time(options.render)
        .day(Duration::from_secs(24 * 3600))
        .video_bytes(64 * 1024);
    let key = options
        .dialect
        .facts()
        .requires_key
        .then_some("sk-bench-0123456789");
    if let Some(key) = key {
        config = config.api_key(key);
    }
    let sandbox = spawn(config).expect("the sandbox starts");
    let dir = tempfile::tempdir().expect("a scratch folder");
    let key_line = if key.is_some() {
        "    api_key_env: BENCH_KEY\n"
    } else {
        ""
    };
    std::fs::write(
        dir.path().join("providers.yaml"),
        format!(
            "providers:\n  - name: farm\n    base_url: {}\n    dialect: {}\n    lane: direct\n    max_in_flight: {}\n{key_line}",
            sandbox.base_url(),
            options.dialect,
            options.slots
        ),
    )
    .unwrap();
    let mut yaml =
        String::from("project: bench-direct\ndefaults: { provider: farm, seconds: 4 }\nshots:\n");
    for i in 0..options.jobs {
        yaml.push_str(&format!(
            "  - {{ id: j{i:04}, prompt: \"job {i} of the farm benchmark\" }}\n"
        ));
    }
    std::fs::write(dir.path().join("night.yaml"), yaml).unwrap();
    let mut command = Command::new(render_bin());
    command
        .current_dir(dir.path())
        .env("RENDER_STATE_DIR", dir.path().join(".render"))
        .env("BENCH_KEY", key.unwrap_or_default())
        .args([
            "--providers",
            "providers.yaml",
            "nightly",
            "night.yaml",
            "--format",
            "json",
        ]);
    let started = Instant::now();
    run_measured(&command).expect_success("render nightly");
    let wall = started.elapsed();
    let stats = sandbox.stats();
    let span = match (stats.first_create_ms, stats.last_finish_ms) {
        (Some(first), Some(last)) => (last - first) as f64 / 1000.0,
        _ => 0.0,
    };
    let share = stats.utilisation().expect("the sandbox rendered");
    assert_eq!(
        stats.videos_created as usize, options.jobs,
        "every job sent once"
    );
    (wall, span, share, stats.peak_renders)
}
