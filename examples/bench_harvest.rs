//! How fast `render harvest` downloads a night of videos, and whether its memory stays flat as
//! the videos grow (issue #5), compared with plain `curl` on the same loopback and sandbox.
//!
//! Run by hand, after `cargo build --release` (the benchmark runs the real binary):
//! `cargo run --release --example bench_harvest -- [--videos 200] [--sizes 8,64] [--jobs 4]
//! [--rounds 1] [--pin] [--no-curl]`  (sizes in decimal MB; `--jobs 1,4,8` runs each;
//! `--rounds N` pairs N harvests with N runs of the curl it is compared with, one after the
//! other, and prints the median of the N ratios: one pair varies by ±15% on a small shared
//! machine; `--pin` (Linux) runs the sandbox on core 0 and the clients on core 1, as when the
//! server is another machine, instead of letting all of them share every core).
//!
//! For each video size, one sandbox runs in this process (two worker threads: it generates the
//! bytes at ~2 GB/s per core, so on a small machine it competes with the client for CPU; its
//! CPU time is reported beside the client's). For each `--jobs` value, a fresh state folder
//! submits VIDEOS requests, waits until the batch has completed, then runs
//! `render harvest --watch --jobs J` under measurement. Outputs are deleted between runs, and
//! every measured run starts after a `sync`, so none pays for another's writeback. curl is also
//! measured with its files fsynced (durable, as harvest's are).
//! Disk: VIDEOS × size per copy (12.8 GB for 200 × 64 MB); set `TMPDIR` to a roomy disk.

mod bench_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bench_support::{
    ChildRun, children_cpu_secs, disk_free, mb, median, render_bin, run_measured, self_cpu_secs,
};
use render_pipeline::ledger::Ledger;
use render_sandbox::{SandboxConfig, SandboxHandle, spawn};

const API_KEY: &str = "sk-bench-0123456789";
/// Real time of 24 virtual hours: long enough that no video expires during a slow run.
const DAY: Duration = Duration::from_secs(6 * 3600);
const RENDER_TIME: Duration = Duration::from_millis(20);
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);

struct Options {
    videos: usize,
    sizes_mb: Vec<u64>,
    jobs: Vec<usize>,
    rounds: usize,
    pin: bool,
    curl: bool,
}

/// One measured line of the final table.
struct Figure {
    what: String,
    size_mb: u64,
    bytes: u64,
    wall: Duration,
    client_cpu: f64,
    server_cpu: f64,
    peak_mib: Option<f64>,
}

impl Figure {
    /// Throughput in decimal MB/s.
    fn rate(&self) -> f64 {
        mb(self.bytes) / self.wall.as_secs_f64()
    }

    fn print(&self) {
        let peak = self
            .peak_mib
            .map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
        println!(
            "{:<42} {:>5} {:>9.1} {:>8.1} {:>10.1} {:>10.1} {:>9}",
            self.what,
            self.size_mb,
            self.wall.as_secs_f64(),
            self.rate(),
            self.client_cpu,
            self.server_cpu,
            peak
        );
    }
}

fn print_header() {
    println!(
        "{:<42} {:>5} {:>9} {:>8} {:>10} {:>10} {:>9}",
        "run", "MB", "wall s", "MB/s", "client cpu", "server cpu", "peak MiB"
    );
}

fn main() {
    let options = parse_options();
    let bin = render_bin();
    let root = tempfile::tempdir().expect("a temp dir");
    println!(
        "{} videos per run, sizes {:?} MB, jobs {:?}; scratch in {} ({})",
        options.videos,
        options.sizes_mb,
        options.jobs,
        root.path().display(),
        disk_free(root.path())
    );
    println!("load average at start: {}", bench_support::load_average());
    if options.pin {
        println!("pinned: the sandbox on core 0, render and curl on core 1");
    }
    println!(
        "disk baseline (write 1 GB + fsync): {:.0} MB/s",
        disk_baseline(root.path())
    );

    sandbox_costs(&options.sizes_mb);

    let mut figures = Vec::new();
    let mut ratios = Vec::new();
    for &size_mb in &options.sizes_mb {
        // The sandbox's threads take the core of the thread that starts them; every client
        // process started after, the other one.
        if options.pin {
            run_on_core(0);
        }
        let sandbox = spawn(
            SandboxConfig::default()
                .api_key(API_KEY)
                .video_bytes(size_mb * 1_000_000)
                .render_time(RENDER_TIME)
                .day(DAY)
                .concurrency(32),
        )
        .expect("the sandbox starts");
        if options.pin {
            run_on_core(1);
        }
        let mut paired = Vec::new();
        for round in 0..options.rounds {
            let mut video_ids = Vec::new();
            for (i, &jobs) in options.jobs.iter().enumerate() {
                let salt = round * options.jobs.len() + i;
                let (figure, ids) =
                    harvest_once(&bin, &sandbox, root.path(), &options, size_mb, jobs, salt);
                figure.print();
                figures.push(figure);
                if video_ids.is_empty() {
                    video_ids = ids;
                }
            }
            if !options.curl {
                continue;
            }
            // The comparison and its durable twin every round; the others once.
            let every_round = [
                (
                    "curl 4 parallel, +thumbnail (as harvest)",
                    4,
                    CurlTo::FilesAndThumbnails,
                ),
                (
                    "  the same, then fsynced (durable)",
                    4,
                    CurlTo::FilesAndThumbnailsDurable,
                ),
            ];
            let first_round = [
                ("curl sequential → files", 1, CurlTo::Files),
                ("curl 4 in parallel → files", 4, CurlTo::Files),
                ("curl sequential → /dev/null", 1, CurlTo::Null),
            ];
            let runs = every_round
                .iter()
                .chain(first_round.iter().filter(|_| round == 0));
            let from = figures.len();
            for &(what, workers, to) in runs {
                let figure = curl_all(
                    &sandbox,
                    root.path(),
                    &video_ids,
                    size_mb,
                    what,
                    workers,
                    to,
                );
                figure.print();
                figures.push(figure);
            }
            let render = figures[from - options.jobs.len()].rate();
            paired.push((
                render / figures[from].rate(),
                render / figures[from + 1].rate(),
            ));
        }
        if let Some(line) = ratios_line(&paired, size_mb) {
            println!("{line}");
            ratios.push(line);
        }
        let stats = sandbox.stats();
        println!(
            "  sandbox served {:?} bytes by variant; {}",
            stats.bytes_served,
            disk_free(root.path())
        );
    }
    println!();
    println!("load average at end: {}", bench_support::load_average());
    print_header();
    for figure in &figures {
        figure.print();
    }
    for line in &ratios {
        println!("{line}");
    }
}

/// Keeps the calling thread, and every thread and process it starts from now on, on `core`.
#[cfg(target_os = "linux")]
fn run_on_core(core: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch
    // the set passed by reference, for the calling thread (pid 0).
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        pinned,
        0,
        "pin to core {core}: {}",
        std::io::Error::last_os_error()
    );
}

#[cfg(not(target_os = "linux"))]
fn run_on_core(_: usize) {
    eprintln!("--pin needs Linux");
    std::process::exit(2);
}

/// render's throughput over curl's, four at a time with thumbnails (the comparison),
/// and over the same curl made durable, for one size: the medians of the rounds' pairs (the
/// first `--jobs` value's harvest against the curl run right after it).
fn ratios_line(paired: &[(f64, f64)], size_mb: u64) -> Option<String> {
    let summary = |values: Vec<f64>| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match values.len() {
            1 => format!("{low:.2}"),
            n => format!(
                "median {:.2} of {n} rounds ({low:.2}–{high:.2})",
                median(&values)
            ),
        }
    };
    if paired.is_empty() {
        return None;
    }
    Some(format!(
        "{size_mb} MB: render ÷ curl 4 parallel + thumbnails {}; ÷ the same, durable {}",
        summary(paired.iter().map(|p| p.0).collect()),
        summary(paired.iter().map(|p| p.1).collect())
    ))
}

fn parse_options() -> Options {
    let mut options = Options {
        videos: 200,
        sizes_mb: vec![8, 64],
        jobs: vec![4],
        rounds: 1,
        pin: false,
        curl: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |value: Option<&String>| -> Vec<u64> {
        value
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match args[i].as_str() {
            "--videos" => options.videos = list(value).first().map_or(200, |n| *n as usize),
            "--sizes" => options.sizes_mb = list(value),
            "--jobs" => options.jobs = list(value).into_iter().map(|n| n as usize).collect(),
            "--rounds" => options.rounds = list(value).first().map_or(0, |n| *n as usize),
            "--no-curl" => {
                options.curl = false;
                i += 1;
                continue;
            }
            "--pin" => {
                options.pin = true;
                i += 1;
                continue;
            }
            other => {
                eprintln!("unknown argument {other}; see the header of bench_harvest.rs");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if options.sizes_mb.is_empty()
        || options.jobs.is_empty()
        || options.videos == 0
        || options.rounds == 0
    {
        eprintln!("--videos, --sizes, --jobs and --rounds need positive numbers");
        std::process::exit(2);
    }
    options
}

/// Submits a fresh night, waits for its batch, then measures `render harvest --watch`.
/// Returns the figure and the video ids (for curl); deletes everything it wrote.
fn harvest_once(
    bin: &Path,
    sandbox: &SandboxHandle,
    root: &Path,
    options: &Options,
    size_mb: u64,
    jobs: usize,
    round: usize,
) -> (Figure, Vec<String>) {
    let scratch = tempfile::tempdir_in(root).expect("a scratch folder");
    let list = scratch.path().join("night.yaml");
    write_list(&list, options.videos, &format!("{size_mb}MB round {round}"));

    let mut submit = render_command(bin, sandbox, scratch.path());
    submit.args(["submit", "--format", "json"]).arg(&list);
    let submitted = run_measured(&submit);
    submitted.expect_success("render submit");
    let report: serde_json::Value =
        serde_json::from_str(&submitted.stdout()).expect("submit prints JSON");
    let batch_ids: Vec<String> = report["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["batch_id"].as_str().map(str::to_string))
        .collect();
    let waited = Instant::now();
    for id in &batch_ids {
        wait_until_completed(sandbox, id);
    }
    let waited = waited.elapsed();
    warm_thumbnails(sandbox);

    let mut harvest = render_command(bin, sandbox, scratch.path());
    harvest.args([
        "harvest",
        "--watch",
        "--format",
        "json",
        "--jobs",
        &jobs.to_string(),
    ]);
    settle_disk();
    let cpu_before = self_cpu_secs();
    let run = run_measured(&harvest);
    let server_cpu = self_cpu_secs() - cpu_before;
    run.expect_success("render harvest");
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout()).expect("harvest prints JSON");
    let videos = report["downloaded_videos"].as_u64().unwrap_or(0);
    let bytes = report["downloaded_bytes"].as_u64().unwrap_or(0);
    assert_eq!(
        videos, options.videos as u64,
        "harvest downloaded {videos} of {} videos: {report}",
        options.videos
    );
    println!(
        "  {size_mb} MB, jobs {jobs}: submit {:.1} s, batch ready after {:.1} s more, harvest {:.1} s",
        submitted.wall.as_secs_f64(),
        waited.as_secs_f64(),
        run.wall.as_secs_f64()
    );
    let ids = video_ids(&scratch.path().join(".render"));
    let figure = harvest_figure(&run, size_mb, jobs, bytes, server_cpu);
    drop(scratch);
    (figure, ids)
}

fn harvest_figure(
    run: &ChildRun,
    size_mb: u64,
    jobs: usize,
    bytes: u64,
    server_cpu: f64,
) -> Figure {
    Figure {
        what: format!("render harvest --jobs {jobs}"),
        size_mb,
        bytes,
        wall: run.wall,
        client_cpu: run.cpu_secs,
        server_cpu,
        peak_mib: Some(run.peak_mib),
    }
}

fn render_command(bin: &Path, sandbox: &SandboxHandle, dir: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .env("OPENAI_BASE_URL", sandbox.base_url())
        .env("OPENAI_API_KEY", API_KEY)
        .env("RENDER_STATE_DIR", dir.join(".render"))
        .env_remove("RENDER_LOG")
        .env_remove("RENDER_FAILPOINT");
    command
}

fn write_list(path: &Path, videos: usize, salt: &str) {
    let mut yaml = String::from(
        "project: bench-harvest\ndefaults:\n  model: sora-2\n  size: 1280x720\n  seconds: 4\nshots:\n",
    );
    for i in 0..videos {
        yaml.push_str(&format!(
            "  - id: shot-{i:04}\n    prompt: \"{salt}, shot {i}: a paper boat drifting on a pond\"\n"
        ));
    }
    std::fs::write(path, yaml).expect("write the list");
}

/// Polls the batch until it has completed (renders are quick; this keeps waiting out of the
/// harvest's figures).
fn wait_until_completed(sandbox: &SandboxHandle, batch_id: &str) {
    let url = format!("{}/batches/{batch_id}", sandbox.base_url());
    let started = Instant::now();
    loop {
        let output = Command::new("curl")
            .args(["-sS", "--fail", "-H"])
            .arg(format!("Authorization: Bearer {API_KEY}"))
            .arg(&url)
            .output()
            .expect("curl runs");
        let batch: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        match batch["status"].as_str() {
            Some("completed") => return,
            Some(status @ ("failed" | "expired" | "cancelled")) => {
                panic!("batch {batch_id} ended {status}: {batch}")
            }
            _ if started.elapsed() > BATCH_TIMEOUT => {
                panic!("batch {batch_id} not completed after {BATCH_TIMEOUT:?}: {batch}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Asks for every video's thumbnail once, before anything is measured: the sandbox encodes a
/// thumbnail on its first request and keeps it, so without this render would pay for every
/// encoding and curl, measured after it, for none.
fn warm_thumbnails(sandbox: &SandboxHandle) {
    let auth = format!("Authorization: Bearer {API_KEY}");
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/videos?limit=100&order=asc", sandbox.base_url());
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let output = Command::new("curl")
            .args(["-sS", "--fail", "-H", &auth, &url])
            .output()
            .expect("curl runs");
        let page: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let ids: Vec<&str> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["id"].as_str())
            .collect();
        if !ids.is_empty() {
            let mut curl = Command::new("curl");
            curl.args(["-s", "--fail", "-H", &auth]);
            for id in &ids {
                curl.args(["-o", "/dev/null"]).arg(format!(
                    "{}/videos/{id}/content?variant=thumbnail",
                    sandbox.base_url()
                ));
            }
            assert!(curl.status().expect("curl runs").success(), "thumbnails");
        }
        match (page["has_more"].as_bool(), ids.last()) {
            (Some(true), Some(last)) => after = Some(last.to_string()),
            _ => return,
        }
    }
}

/// Every video id the ledger knows, in its batches' order.
fn video_ids(state_dir: &Path) -> Vec<String> {
    let ledger = Ledger::open(&state_dir.join("ledger.sqlite")).expect("the ledger opens");
    let mut ids = Vec::new();
    for run in ledger.runs().expect("runs") {
        for batch in ledger.batches_of_run(&run.id).expect("batches") {
            for request in ledger.batch_requests(batch.row).expect("requests") {
                ids.extend(request.video_id);
            }
        }
    }
    ids
}

/// Where `curl` puts what it downloads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CurlTo {
    Files,
    /// Also the JPEG thumbnail, like `render harvest` (already encoded: see [`warm_thumbnails`]).
    FilesAndThumbnails,
    /// The same, then every file fsynced (`sync FILE...`, timed): durable, as harvest's outputs
    /// are before it records them.
    FilesAndThumbnailsDurable,
    Null,
}

/// Waits until everything written so far is on the disk, so that no measured run pays for the
/// writeback of the one before it (curl leaves gigabytes dirty that render's fsyncs would
/// otherwise wait behind).
fn settle_disk() {
    let status = Command::new("sync").status().expect("sync runs");
    assert!(status.success(), "sync: {status}");
}

/// Downloads every video with one `curl` process per video, `workers` processes at a time.
/// Throughput counts video bytes only, as `render harvest` reports them.
fn curl_all(
    sandbox: &SandboxHandle,
    root: &Path,
    ids: &[String],
    size_mb: u64,
    what: &str,
    workers: usize,
    to: CurlTo,
) -> Figure {
    let dir = tempfile::tempdir_in(root).expect("a folder for curl");
    let next = AtomicUsize::new(0);
    let auth = format!("Authorization: Bearer {API_KEY}");
    settle_disk();
    let cpu_before = self_cpu_secs();
    let children_before = children_cpu_secs();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let url = format!("{}/videos/{id}/content", sandbox.base_url());
                    let (dest, thumbnail): (PathBuf, _) = match to {
                        CurlTo::Null => ("/dev/null".into(), None),
                        CurlTo::Files => (dir.path().join(format!("{id}.mp4")), None),
                        CurlTo::FilesAndThumbnails | CurlTo::FilesAndThumbnailsDurable => (
                            dir.path().join(format!("{id}.mp4")),
                            Some(dir.path().join(format!("{id}.jpg"))),
                        ),
                    };
                    let mut curl = Command::new("curl");
                    curl.args(["-s", "--fail", "-H", &auth, "-o"])
                        .arg(&dest)
                        .arg(&url);
                    // A second URL in the same process reuses the connection, as reqwest does.
                    if let Some(thumbnail) = &thumbnail {
                        curl.arg("-o")
                            .arg(thumbnail)
                            .arg(format!("{url}?variant=thumbnail"));
                    }
                    let status = curl.status().expect("curl runs");
                    assert!(status.success(), "curl of video {id}: {status}");
                }
            });
        }
    });
    if to == CurlTo::FilesAndThumbnailsDurable {
        let files = std::fs::read_dir(dir.path()).expect("curl's folder");
        let status = Command::new("sync")
            .args(files.map(|f| f.expect("a file").path()))
            .status()
            .expect("sync runs");
        assert!(status.success(), "sync: {status}");
    }
    let wall = started.elapsed();
    let client_cpu = children_cpu_secs() - children_before;
    // curl processes are children, counted apart: this is the sandbox's share.
    let server_cpu = self_cpu_secs() - cpu_before;
    let bytes = ids.len() as u64 * size_mb * 1_000_000;
    if to != CurlTo::Null {
        let videos: u64 = ids
            .iter()
            .map(|id| {
                std::fs::metadata(dir.path().join(format!("{id}.mp4"))).map_or(0, |m| m.len())
            })
            .sum();
        assert_eq!(videos, bytes, "curl got short files");
    }
    Figure {
        what: what.to_string(),
        size_mb,
        bytes,
        wall,
        client_cpu,
        server_cpu,
        peak_mib: None,
    }
}

/// What the sandbox spends per download, measured in-process on one core: building a video and
/// streaming its bytes, and encoding the JPEG thumbnail `render harvest` also fetches.
fn sandbox_costs(sizes_mb: &[u64]) {
    use render_sandbox::media::{RenderedVideo, VideoSpec, thumbnail_jpeg};
    use render_wire::catalog::Size;
    let size = Size {
        width: 1280,
        height: 720,
    };
    let prompt = "a paper boat drifting on a pond";
    let thumbnails = 10;
    let started = Instant::now();
    for seed in 0..thumbnails {
        std::hint::black_box(thumbnail_jpeg(seed, prompt, size));
    }
    let per_thumbnail = started.elapsed() / thumbnails as u32;
    println!(
        "sandbox, in-process: thumbnail_jpeg 1280x720 {:.1} ms each",
        bench_support::ms(per_thumbnail)
    );
    for &size_mb in sizes_mb {
        let started = Instant::now();
        let video = RenderedVideo::new(VideoSpec {
            seed: 7,
            prompt: prompt.into(),
            size,
            seconds: 4,
            total_bytes: size_mb * 1_000_000,
        });
        let built = started.elapsed();
        // Twice: the first pass may pay for one-off setup.
        let rates: Vec<String> = (0..2)
            .map(|_| {
                format!(
                    "{:.0}",
                    mb(video.len()) / stream_video(&video).as_secs_f64()
                )
            })
            .collect();
        println!(
            "sandbox, in-process: {size_mb} MB video built in {:.1} ms, streamed at {} MB/s (1st, 2nd pass, one core)",
            bench_support::ms(built),
            rates.join(", ")
        );
    }
}

/// Reads a whole video in the sandbox's 256 KiB chunks; returns how long it took.
fn stream_video(video: &render_sandbox::media::RenderedVideo) -> Duration {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut offset, started) = (0u64, Instant::now());
    while offset < video.len() {
        let got = video.read_at(offset, &mut buf);
        if got == 0 {
            break;
        }
        offset += got as u64;
    }
    started.elapsed()
}

/// Writes 1 GB in 1 MiB blocks and fsyncs: the ceiling for anything that must reach the disk.
fn disk_baseline(root: &Path) -> f64 {
    use std::io::Write;
    let path = root.join("disk-baseline");
    let block = vec![0x5au8; 1 << 20];
    let total = 1_000_000_000u64;
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).expect("create the baseline file");
    let mut written = 0u64;
    while written < total {
        file.write_all(&block).expect("write the baseline file");
        written += block.len() as u64;
    }
    file.sync_all().expect("fsync the baseline file");
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&path);
    mb(written) / elapsed.as_secs_f64()
}
