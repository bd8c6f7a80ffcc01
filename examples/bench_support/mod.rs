//! What the hand-run benchmarks share: running a child process while measuring its wall time,
//! CPU time and peak memory, reading this process's own figures from `/proc`, and finding the
//! release `render` binary.
//!
//! Peak memory is the kernel's own high-water mark: `/usr/bin/time` reports `ru_maxrss` from
//! `wait4` (exact); without it, `/proc/<pid>/status` `VmHWM` is sampled until the child exits
//! (it may miss a spike in the last few milliseconds of a run).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const GNU_TIME: &str = "/usr/bin/time";

/// How a measured child process went.
#[derive(Debug)]
pub struct ChildRun {
    pub output: Output,
    pub wall: Duration,
    /// Peak resident memory of the child, MiB.
    pub peak_mib: f64,
    /// User + system CPU seconds of the child (NaN when unknown).
    pub cpu_secs: f64,
}

impl ChildRun {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Panics with the child's output unless it exited 0: a benchmark of a failed run is
    /// meaningless, so there is nothing to recover.
    pub fn expect_success(&self, what: &str) -> &ChildRun {
        assert!(
            self.output.status.success(),
            "{what} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.output.status.code(),
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        );
        self
    }
}

/// Runs `command` to completion, measuring it.
pub fn run_measured(command: &Command) -> ChildRun {
    if Path::new(GNU_TIME).is_file() {
        run_under_gnu_time(command)
    } else {
        run_sampling_vmhwm(command)
    }
}

/// `/usr/bin/time -f '%M %U %S' -o FILE PROGRAM ARGS…`, with the command's environment and
/// folder.
fn run_under_gnu_time(command: &Command) -> ChildRun {
    let report = tempfile::NamedTempFile::new().expect("a temp file for /usr/bin/time");
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["-f", "%M %U %S", "-o"])
        .arg(report.path())
        .arg(command.get_program())
        .args(command.get_args());
    copy_environment(command, &mut timed);
    let started = Instant::now();
    let output = timed.output().expect("the child runs");
    let wall = started.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    // A child killed by a signal makes GNU time write a "Command terminated…" line first.
    let fields: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let (peak_kib, user, system) = match fields.as_slice() {
        [m, u, s] => (*m, *u, *s),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    };
    ChildRun {
        output,
        wall,
        peak_mib: peak_kib / 1024.0,
        cpu_secs: user + system,
    }
}

/// Samples the child's `VmHWM` every few milliseconds until it exits.
fn run_sampling_vmhwm(command: &Command) -> ChildRun {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    copy_environment(command, &mut copy);
    let started = Instant::now();
    let child = copy.spawn().expect("the child runs");
    let status_path = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = f64::NAN;
        // The file loses its memory lines once the child has exited (a zombie has no mm).
        while let Ok(status) = std::fs::read_to_string(&status_path) {
            match status_kib(&status, "VmHWM:") {
                Some(kib) => peak = f64::max(peak.max(0.0), kib),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let output = child.wait_with_output().expect("the child runs");
    let wall = started.elapsed();
    let peak_kib = sampler.join().unwrap_or(f64::NAN);
    ChildRun {
        output,
        wall,
        peak_mib: peak_kib / 1024.0,
        cpu_secs: f64::NAN,
    }
}

fn copy_environment(from: &Command, to: &mut Command) {
    for (name, value) in from.get_envs() {
        match value {
            Some(value) => to.env(name, value),
            None => to.env_remove(name),
        };
    }
    if let Some(dir) = from.get_current_dir() {
        to.current_dir(dir);
    }
}

fn status_kib(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// This process's peak resident memory so far, MiB.
pub fn self_peak_mib() -> f64 {
    self_status_mib("VmHWM:")
}

/// This process's resident memory now, MiB.
pub fn self_rss_mib() -> f64 {
    self_status_mib("VmRSS:")
}

fn self_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_kib(&status, field).map_or(f64::NAN, |kib| kib / 1024.0)
}

/// User + system CPU seconds this process (all its threads) has used so far.
pub fn self_cpu_secs() -> f64 {
    // utime and stime: fields 14 and 15 of /proc/self/stat.
    stat_cpu_secs(14)
}

/// User + system CPU seconds of this process's children that have been waited for.
pub fn children_cpu_secs() -> f64 {
    // cutime and cstime: fields 16 and 17.
    stat_cpu_secs(16)
}

/// Field `first` plus field `first + 1` (1-based, as in proc(5)) of /proc/self/stat, in seconds.
fn stat_cpu_secs(first: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count from the state, field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<f64>().ok());
    match (ticks(first), ticks(first + 1)) {
        // USER_HZ is 100 on every Linux this runs on.
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// The release `render` binary next to this example (`target/release/render`), or
/// `$RENDER_BIN`. Exits with a hint when it is missing: examples do not build the binary.
pub fn render_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RENDER_BIN") {
        return PathBuf::from(bin);
    }
    let me = std::env::current_exe().expect("own path");
    // target/release/examples/bench_x → target/release/render
    let bin = me
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("render"))
        .unwrap_or_default();
    if !bin.is_file() {
        eprintln!(
            "no render binary at {}: run `cargo build --release` first (or set RENDER_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Decimal megabytes.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Total bytes of the regular files under `dir` (hard links counted once per name).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// `df -h` of the folder, for the log: the harvest benchmark writes many gigabytes.
pub fn disk_free(dir: &Path) -> String {
    Command::new("df")
        .arg("-h")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| text.lines().nth(1).map(str::to_string))
        .unwrap_or_else(|| "df unavailable".into())
}

/// The 1, 5 and 15 minute load averages: the machine may be shared, which moves wall times.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
