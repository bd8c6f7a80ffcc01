//! Bad input on the command line gives a clear error and the documented exit status, never a
//! panic; `render nightly --sandbox` runs a whole night end to end, runs its hooks, and a second
//! run sends nothing and still lays out.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use common::*;
use reliability::*;

/// One bad invocation: the arguments, the exit status, and words its error must contain.
struct Bad {
    args: &'static [&'static str],
    exit: i32,
    says: &'static str,
}

#[test]
fn bad_invocations_are_clear_errors_with_documented_exits() {
    let night = Night::new();
    night.write("ok.yaml", "shots:\n  - {id: a, prompt: a red kite}\n");
    std::fs::create_dir_all(night.path("folder.yaml")).expect("a folder");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    night.write("garbage.yaml", &garbage);
    night.write("garbage.csv", &garbage);
    night.write("nul.yaml", b"\x00\x01\x02shots: [");
    night.write("notes.txt", "shots: []\n");
    let table = [
        Bad {
            args: &["nightly", "--frobnicate", "ok.yaml"],
            exit: 2,
            says: "--frobnicate",
        },
        Bad {
            args: &["nightly"],
            exit: 2,
            says: "required",
        },
        Bad {
            args: &["plan", "ok.yaml", "--budget", "abc"],
            exit: 2,
            says: "not an amount of dollars",
        },
        Bad {
            args: &["nightly", "ok.yaml", "--budget", "1e999"],
            exit: 2,
            says: "not an amount of dollars",
        },
        Bad {
            args: &["nightly", "ok.yaml", "--budget", "0.01"],
            exit: 3,
            says: "budget",
        },
        Bad {
            args: &["nightly", "ok.yaml", "--jobs", "many"],
            exit: 2,
            says: "--jobs",
        },
        Bad {
            args: &["submit", "ok.yaml", "--max-batch-requests", "0"],
            exit: 2,
            says: "at least 1",
        },
        Bad {
            args: &["nightly", "missing.yaml"],
            exit: 1,
            says: "No such file",
        },
        Bad {
            args: &["plan", "missing.yaml"],
            exit: 1,
            says: "No such file",
        },
        Bad {
            args: &["nightly", "folder.yaml"],
            exit: 1,
            says: "directory",
        },
        Bad {
            args: &["nightly", "garbage.yaml"],
            exit: 1,
            says: "not valid UTF-8",
        },
        Bad {
            args: &["plan", "garbage.csv"],
            exit: 1,
            says: "not valid UTF-8",
        },
        Bad {
            args: &["nightly", "nul.yaml"],
            exit: 1,
            says: "nul.yaml:1:1",
        },
        Bad {
            args: &["status", "run-that-never-was"],
            exit: 2,
            says: "no run named run-that-never-was",
        },
        Bad {
            args: &["harvest", "run-that-never-was"],
            exit: 2,
            says: "no run named run-that-never-was",
        },
        Bad {
            args: &["retry", "run-that-never-was"],
            exit: 2,
            says: "no run named run-that-never-was",
        },
        Bad {
            args: &["plan", "notes.txt"],
            exit: 1,
            says: "unknown shot list format",
        },
        Bad {
            args: &["nightly", "ok.yaml", "--sandbox-video-bytes", "5"],
            exit: 2,
            says: "--sandbox",
        },
    ];
    for bad in table {
        let output = night.render(bad.args);
        let stderr = stderr_of(&output);
        assert_eq!(
            output.status.code(),
            Some(bad.exit),
            "render {}:\n{stderr}",
            bad.args.join(" ")
        );
        assert_no_panic(&output);
        assert!(
            stderr.contains(bad.says),
            "render {}: the error should say {:?}:\n{stderr}",
            bad.args.join(" "),
            bad.says
        );
    }
    let stats = night.sandbox.stats();
    assert_eq!(
        (stats.batches_created, stats.files_uploaded.len()),
        (0, 0),
        "nothing was sent"
    );
}

/// `shotlists/night.yaml` and its reference images, copied into the scratch folder.
fn copy_example_night(night: &Night) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shotlists");
    night.write(
        "shotlists/night.yaml",
        std::fs::read(root.join("night.yaml")).expect("night.yaml"),
    );
    for entry in std::fs::read_dir(root.join("refs")).expect("refs") {
        let path = entry.expect("a ref").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        night.write(
            &format!("shotlists/refs/{name}"),
            std::fs::read(&path).expect("a ref"),
        );
    }
}

#[test]
fn nightly_sandbox_runs_the_example_night_end_to_end_and_a_second_run_sends_nothing() {
    let night = Night::new();
    copy_example_night(&night);
    let args = [
        "nightly",
        "--sandbox",
        "shotlists/night.yaml",
        "--sandbox-video-bytes",
        "16384",
        "--max-poll-interval",
        "1",
        "--on-complete",
        "cp \"$1\" done.json && echo \"$RENDER_MANIFEST\" > manifest-path.txt",
        "--on-failure",
        "touch failed.txt",
    ];
    let first = night.render(&args);
    assert_success(&first, &args);
    assert_no_panic(&first);
    let out = "renders/harbour-night";
    let manifest = night.manifest(out);
    let entries = manifest["requests"].as_array().expect("requests");
    assert!(entries.len() >= 8, "{manifest}");
    for entry in entries {
        assert_eq!(entry["status"], "harvested", "{entry}");
        let path = night
            .path(out)
            .join(entry["video_path"].as_str().expect("a path"));
        let bytes = std::fs::read(&path).expect("the video is laid out");
        assert_eq!(&bytes[4..8], b"ftyp", "{} is an MP4", path.display());
        assert_eq!(
            sha256_file(&path),
            entry["sha256"].as_str().unwrap_or_default()
        );
    }
    // The hook ran with the manifest path, as $1 and as $RENDER_MANIFEST.
    let copied = std::fs::read(night.path("done.json")).expect("--on-complete ran");
    assert_eq!(
        copied,
        std::fs::read(night.path(out).join("manifest.json")).expect("manifest")
    );
    let named = std::fs::read_to_string(night.path("manifest-path.txt")).expect("env var");
    assert!(named.trim().ends_with("manifest.json"), "{named}");
    assert!(
        !night.path("failed.txt").exists(),
        "--on-failure must not run on success"
    );

    // The second night: its in-process sandbox is a new one, so anything sent would show up
    // as a new batch in the ledger; nothing is, and the outputs are laid out again.
    std::fs::remove_dir_all(night.path(out)).expect("clear the outputs");
    let second = night.render(&args);
    assert_success(&second, &args);
    let ledger = render_pipeline::ledger::Ledger::open(&night.state_dir().join("ledger.sqlite"))
        .expect("ledger");
    let batches: usize = ledger
        .runs()
        .expect("runs")
        .iter()
        .map(|run| ledger.batches_of_run(&run.id).expect("batches").len())
        .sum();
    assert_eq!(batches, 1, "the second night sent nothing");
    let again = night.manifest(out);
    assert_eq!(
        again["requests"].as_array().map(Vec::len),
        Some(entries.len())
    );
    for entry in again["requests"].as_array().expect("requests") {
        assert_eq!(entry["status"], "harvested", "{entry}");
        assert!(
            night
                .path(out)
                .join(entry["video_path"].as_str().unwrap_or("?"))
                .is_file()
        );
    }
}

#[test]
fn on_failure_runs_with_the_manifest_when_requests_fail() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: hooks\nshots:\n  - {id: fine, prompt: a quiet pond, seconds: 4}\n  - {id: famous, prompt: Pikachu on a pond, seconds: 4}\n",
    );
    let args = [
        "nightly",
        "--sandbox",
        "shots.yaml",
        "--sandbox-video-bytes",
        "8192",
        "--max-poll-interval",
        "1",
        "--on-complete",
        "touch complete.txt",
        "--on-failure",
        "cp \"$RENDER_MANIFEST\" failed.json",
    ];
    let output = night.render(&args);
    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    assert_no_panic(&output);
    let copied: serde_json::Value = serde_json::from_slice(
        &std::fs::read(night.path("failed.json")).expect("--on-failure ran"),
    )
    .expect("the manifest");
    let failed = entries_with(&copied, "failed");
    assert_eq!(failed.len(), 1, "{copied}");
    assert_eq!(failed[0]["shot_id"], "famous");
    assert!(!night.path("complete.txt").exists());
}
