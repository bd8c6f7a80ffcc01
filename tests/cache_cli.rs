//! `render cache ls` and `render cache gc --dry-run` after real nights against the sandbox,
//! and the sizes `--max-size` understands.

mod common;

use common::*;
use render_pipeline::cache::{human_size, parse_size};

/// Every file under the cache's objects folder.
fn object_files(night: &Night) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&night.state_dir().join("cache/v1/objects"), &mut files);
    files.sort();
    files
}

#[test]
fn cache_ls_names_each_output_by_shot_project_size_and_last_use() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(2, "ls"));
    night.full_night("shots.yaml");

    let entries = night.json(&["cache", "ls"]);
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let mut shots: Vec<&str> = entries
        .iter()
        .map(|e| e["shot_id"].as_str().unwrap())
        .collect();
    shots.sort();
    assert_eq!(shots, ["shot-000", "shot-001"]);
    for entry in entries {
        assert_eq!(entry["project"], "test-night");
        assert_eq!(entry["present"], true);
        let bytes = entry["size_bytes"].as_u64().unwrap();
        assert!(
            bytes > entry["bytes"].as_u64().unwrap(),
            "video and thumbnail: {entry}"
        );
        assert_eq!(entry["size"], human_size(bytes));
        let last_used = entry["last_used"].as_str().unwrap();
        assert!(
            last_used.ends_with('Z') && last_used.len() == 20,
            "{last_used}"
        );
    }

    let table = night.ok(&["cache", "ls"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["shot", "project", "size", "last use"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{table}");
    for row in &rows[..2] {
        assert!(row.contains("test-night") && row.contains(" KiB"), "{row}");
    }
    assert!(rows[2].starts_with("2 outputs, "), "{table}");
}

#[test]
fn gc_dry_run_says_what_would_go_and_removes_nothing() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "dry"));
    night.full_night("shots.yaml");
    let before = object_files(&night);
    assert_eq!(before.len(), 6, "three videos and their thumbnails");
    let total: u64 = before
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    let dry = night.json(&["cache", "gc", "--dry-run", "--max-size", "1"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["would_remove"].as_array().unwrap().len(), 6, "{dry}");
    assert_eq!(dry["would_free_bytes"], total);
    assert_eq!(dry["kept_objects"], 0);
    assert!(
        dry["would_remove"][0]["shot_id"]
            .as_str()
            .unwrap()
            .starts_with("shot-")
    );
    let text = night.ok(&["cache", "gc", "--dry-run", "--max-size", "1"]);
    assert!(text.contains("would remove 6 objects"), "{text}");
    assert!(text.contains("nothing was removed"), "{text}");

    assert_eq!(object_files(&night), before, "a dry run removes nothing");
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0);
    assert_eq!(night.json(&["plan", "shots.yaml"])["cached"], 3);

    // Without a limit everything is referenced: nothing would go.
    let keep_all = night.json(&["cache", "gc", "--dry-run"]);
    assert_eq!(keep_all["would_remove"].as_array().unwrap().len(), 0);
    assert_eq!(keep_all["kept_bytes"], total);

    // The real gc does what the dry run said.
    let gc = night.json(&["cache", "gc", "--max-size", "1"]);
    assert_eq!(gc["removed"], 6);
    assert_eq!(gc["freed_bytes"], total);
    assert!(object_files(&night).is_empty());
}

#[test]
fn max_size_takes_suffixes_decimal_and_binary() {
    let cases = [
        ("1048576", 1_048_576),
        ("50G", 50_000_000_000),
        ("500M", 500_000_000),
        ("1.5T", 1_500_000_000_000),
        ("10kb", 10_000),
        ("2 GB", 2_000_000_000),
        ("1MiB", 1_048_576),
        ("1.5GiB", 1_610_612_736),
        ("0.5KiB", 512),
        ("7b", 7),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in [
        "",
        "G",
        "1.5.2G",
        "-1G",
        "12X",
        "1.",
        ".5G",
        "1e9",
        "99999999999T",
    ] {
        let err = parse_size(bad).unwrap_err();
        assert!(err.contains("not a size"), "{bad}: {err}");
    }
}

#[test]
fn a_bad_size_is_a_usage_error() {
    let night = Night::new();
    let out = night.render(&["cache", "gc", "--max-size", "fifty gigs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("e.g. 50G"), "{}", stderr_of(&out));
    assert!(!night.state_dir().exists(), "nothing was created");
}

#[test]
fn sizes_read_in_binary_units() {
    let cases = [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1_258_291, "1.2 MiB"),
        (50_000_000_000, "46.6 GiB"),
        (1_500_000_000_000, "1.4 TiB"),
    ];
    for (bytes, text) in cases {
        assert_eq!(human_size(bytes), text, "{bytes}");
    }
}
