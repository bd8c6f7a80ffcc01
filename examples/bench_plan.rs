//! How long `render plan` takes on a 100,000-shot list, and how much memory it needs, compared
//! with parsing the same file into a plain value without spans.
//!
//! Run by hand: `cargo run --release --example bench_plan [SHOTS]`. Each measurement runs in its
//! own child process so the peak-memory figures (`VmHWM`) do not mix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use render::catalog::Catalog;
use render::plan::{PlanOptions, build};
use render::shotlist::{Format, ShotListInput};

const HARBOUR_PNG: &[u8] = include_bytes!("../shotlists/refs/harbour.png");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, path] = args.as_slice() {
        return measure(mode, Path::new(path));
    }
    let shots: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let list = dir.path().join("big.yaml");
    write_list(&list, shots);
    std::fs::write(dir.path().join("harbour.png"), HARBOUR_PNG).expect("write the reference");
    let bytes = std::fs::metadata(&list).map_or(0, |m| m.len());
    println!("{shots} shots, {:.1} MiB of YAML", bytes as f64 / 1048576.0);
    let me = std::env::current_exe().expect("own path");
    for mode in ["baseline", "plain", "plan"] {
        let out = Command::new(&me)
            .arg(mode)
            .arg(&list)
            .output()
            .expect("child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
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

fn measure(mode: &str, path: &Path) {
    let text = std::fs::read_to_string(path).expect("read the list");
    let start = Instant::now();
    let summary = match mode {
        "baseline" => "read the file only".to_string(),
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
    let elapsed = start.elapsed();
    println!(
        "{mode:>9}: {:>8.1} ms, peak memory {:>7.1} MiB  ({summary})",
        elapsed.as_secs_f64() * 1000.0,
        peak_mib()
    );
}

/// The process's peak resident memory, from `/proc/self/status` (Linux only).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
