//! How fast a night comes out of the studio's shared cache, against boto3 downloading the same
//! objects from the same S3 server.
//!
//! Run by hand: `cargo run --release --example bench_shared -- [--objects 40] [--mb 16]`. It
//! needs moto's S3 server (`RENDER_MOTO`, else `target/moto-venv/bin/moto_server`, as `.ci/run`
//! installs it) and boto3 beside it (moto depends on it). Moto is Python: it bounds both sides,
//! so the ratio says more than the megabytes per second.
//!
//! One machine publishes OBJECTS videos of MB megabytes (objects, then index entries); then a
//! fresh local store fetches each through `SharedCache::fetch` (streamed, hashed, verified) as
//! `render submit` does for a night another machine rendered; then boto3's `download_file`
//! fetches the same objects into files, one after another.

mod bench_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bench_support::{mb, run_measured, self_peak_mib};
use render_pipeline::cache::LocalStore;
use render_pipeline::ledger::OutputRow;
use render_pipeline::shared::{DEFAULT_LEASE, SharedCache};
use render_wire::key::Sha256Hex;

fn main() {
    let mut objects = 40usize;
    let mut size_mb = 16u64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--objects" => objects = value.parse().expect("--objects N"),
            "--mb" => size_mb = value.parse().expect("--mb N"),
            other => panic!("unknown option {other}"),
        }
    }
    let moto_bin = std::env::var_os("RENDER_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/moto-venv/bin/moto_server"));
    let python = moto_bin.with_file_name("python");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut moto = Command::new(&moto_bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", moto_bin.display()));
    let endpoint = format!("http://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        reqwest::Client::new()
            .put(format!("{endpoint}/bench"))
            .send()
            .await
            .unwrap()
    });
    // SAFETY: set before any thread of this program reads the environment.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let shared = SharedCache::open("s3://bench/cache", "bench", DEFAULT_LEASE).unwrap();

    let publisher = tempfile::tempdir().unwrap();
    let local = LocalStore::open(publisher.path()).unwrap();
    let bytes = (size_mb * 1_000_000) as usize;
    let mut outputs = Vec::new();
    let started = Instant::now();
    for i in 0..objects {
        let mut video = vec![0u8; bytes];
        for (n, b) in video.iter_mut().enumerate() {
            *b = (n as u64 ^ (i as u64 * 0x9E37_79B9)).wrapping_mul(31) as u8;
        }
        video[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let sha = local.insert_bytes(&video).unwrap();
        let output = OutputRow {
            key: Sha256Hex::of(format!("bench key {i}").as_bytes()),
            video_sha: sha,
            video_bytes: bytes as u64,
            thumbnail_sha: None,
            video_id: None,
            harvested_at: 0,
        };
        runtime.block_on(shared.publish(&output, &local)).unwrap();
        outputs.push(output);
    }
    let publish = started.elapsed();
    let total = (bytes * objects) as u64;

    let machine_b = tempfile::tempdir().unwrap();
    let fresh = LocalStore::open(machine_b.path()).unwrap();
    let started = Instant::now();
    for output in &outputs {
        let entry = runtime
            .block_on(shared.entry(&output.key))
            .unwrap()
            .expect("published");
        runtime.block_on(shared.fetch(&entry, &fresh)).unwrap();
    }
    let fetch = started.elapsed();
    let peak = self_peak_mib();

    let keys: Vec<String> = outputs
        .iter()
        .map(|o| {
            let hex = o.video_sha.hex();
            format!("cache/objects/{}/{hex}", &hex[..2])
        })
        .collect();
    let dest = tempfile::tempdir().unwrap();
    let script = format!(
        "import boto3,sys\ns3=boto3.client('s3',endpoint_url='{endpoint}',aws_access_key_id='test',aws_secret_access_key='test',region_name='us-east-1')\nfor i,k in enumerate(sys.argv[1:]):\n    s3.download_file('bench',k,'{}/%d'%i)\n",
        dest.path().display()
    );
    let mut boto = Command::new(&python);
    boto.arg("-c").arg(&script).args(&keys);
    let run = run_measured(&boto);
    run.expect_success("boto3");
    let boto_time = run.wall;
    let _ = moto.kill();
    let _ = moto.wait();

    println!(
        "{objects} objects × {size_mb} MB through moto ({} MB)",
        mb(total) as u64
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10}",
        "what", "wall s", "MB/s", "peak MiB"
    );
    let line = |what: &str, wall: Duration, peak: Option<f64>| {
        println!(
            "{what:<44} {:>8.2} {:>10.1} {:>10}",
            wall.as_secs_f64(),
            mb(total) / wall.as_secs_f64(),
            peak.map_or("-".into(), |p| format!("{p:.1}"))
        );
    };
    line("publish (objects, then index entries)", publish, None);
    line("render: fetch into a fresh local cache", fetch, Some(peak));
    line(
        "boto3 download_file, same objects",
        boto_time,
        Some(run.peak_mib),
    );
    println!(
        "render ÷ boto3 throughput: {:.2}",
        boto_time.as_secs_f64() / fetch.as_secs_f64()
    );
}
