//! `render plan` as a user runs it: the built binary, its exit status, stdout and stderr.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const LOCAL_API: &str = "http://127.0.0.1:9/v1";

fn render(state: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    render_with_base(state, LOCAL_API, args, stdin)
}

fn render_with_base(state: &Path, base_url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_render"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("OPENAI_BASE_URL", base_url)
        .env_remove("RENDER_STATE_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the render binary runs");
    let mut pipe = child.stdin.take().unwrap();
    // A render that stops before reading its input (a bad catalog) closes the pipe early.
    let _ = pipe.write_all(stdin.unwrap_or("").as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)))
}

#[test]
fn a_valid_list_exits_0_with_a_priced_table() {
    let state = tempfile::tempdir().unwrap();
    let out = render(state.path(), &["plan", "shotlists/night.yaml"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "s07-ferry            2/2  default   batch  sora-2-pro  1792x1024       16  $4.00  $4.00"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Total                 $15.40"), "{stdout}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

#[test]
fn an_invalid_list_exits_1_and_reports_every_problem() {
    let state = tempfile::tempdir().unwrap();
    let out = render(
        state.path(),
        &["plan", "shotlists/broken.yaml", "shotlists/night.csv"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        "shotlists/broken.yaml:8:5: error: unknown field `promt`",
        "= help: did you mean `prompt`?",
        "shotlists/broken.yaml:11:12: error: unknown model `sora-3`",
        "shotlists/broken.yaml:14:11: error: sora-2 (from `defaults`) does not offer 1920x1080",
        "8 |     promt: A harbour at dusk.",
        "  |     ^^^^^",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "no plan is printed: {}",
        text(&out.stdout)
    );
}

#[test]
fn over_budget_exits_3() {
    let state = tempfile::tempdir().unwrap();
    let out = render(
        state.path(),
        &["plan", "shotlists/night.yaml", "--budget", "15.39"],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("over the budget of $15.39"),
        "{}",
        text(&out.stderr)
    );
    let out = render(
        state.path(),
        &["plan", "shotlists/night.yaml", "--budget", "15.40"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let out = render(
        state.path(),
        &["plan", "shotlists/night.yaml", "--budget", "lots"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "a bad amount is a usage error");
}

#[test]
fn dash_reads_yaml_from_stdin() {
    let state = tempfile::tempdir().unwrap();
    let list = "shots:\n  - id: piped\n    prompt: from standard input\n    takes: 2\n";
    let out = render(state.path(), &["--format", "json", "plan", "-"], Some(list));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["requests"], 2);
    assert_eq!(doc["total_usd"], "0.80");
    assert_eq!(doc["shots"][1]["id"], "piped");
    assert_eq!(doc["shots"][1]["source"], "<stdin>");

    let out = render(
        state.path(),
        &["plan", "-"],
        Some("shots:\n  - id: x\n    promt: y\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("<stdin>:3:5: error: unknown field `promt`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_output_has_totals_and_one_entry_per_take() {
    let state = tempfile::tempdir().unwrap();
    let out = render(
        state.path(),
        &[
            "--format",
            "json",
            "plan",
            "shotlists/night.csv",
            "--budget",
            "100",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["requests"], 12);
    assert_eq!(doc["cached"], 0);
    assert_eq!(doc["total_usd"], "15.40");
    assert_eq!(doc["standard_usd"], "30.80");
    assert_eq!(doc["over_budget"], false);
    let shots = doc["shots"].as_array().unwrap();
    assert_eq!(shots.len(), 12);
    assert!(
        shots
            .iter()
            .all(|s| s["key"].as_str().is_some_and(|k| k.len() == 64))
    );
}

#[test]
fn keys_found_in_the_state_cache_are_free() {
    let state = tempfile::tempdir().unwrap();
    let first = json(&render(
        state.path(),
        &["--format", "json", "plan", "shotlists/night.yaml"],
        None,
    ));
    let key: render_wire::key::RequestKey =
        first["shots"][0]["key"].as_str().unwrap().parse().unwrap();
    // What a harvest leaves behind: the object in the store, then the ledger entry naming it.
    let store = render_pipeline::cache::LocalStore::open(state.path()).unwrap();
    let video_sha = store.insert_bytes(b"a rendered video").unwrap();
    let mut ledger =
        render_pipeline::ledger::Ledger::open(&state.path().join("ledger.sqlite")).unwrap();
    ledger
        .record_output(&render_pipeline::ledger::OutputRow {
            key,
            video_sha,
            video_bytes: 16,
            thumbnail_sha: None,
            video_id: None,
            harvested_at: 0,
        })
        .unwrap();
    let second = json(&render(
        state.path(),
        &["--format", "json", "plan", "shotlists/night.yaml"],
        None,
    ));
    assert_eq!(second["cached"], 1);
    assert_eq!(second["shots"][0]["cached"], true);
    assert_eq!(second["shots"][0]["cost_usd"], "0.00");
    assert_eq!(second["total_usd"], "15.00");
    assert_eq!(second["standard_usd"], "30.80");

    // A record whose object is gone (removed by `cache gc`) is not a cache hit.
    std::fs::remove_file(store.path(&video_sha)).unwrap();
    let third = json(&render(
        state.path(),
        &["--format", "json", "plan", "shotlists/night.yaml"],
        None,
    ));
    assert_eq!(third["cached"], 0);
}

#[test]
fn catalogs_from_the_state_dir_and_flags_are_merged() {
    let state = tempfile::tempdir().unwrap();
    let list = "shots:\n  - {id: a, prompt: x, model: wan-2.2, size: 832x480, seconds: 5}\n";
    let out = render(state.path(), &["plan", "-"], Some(list));
    assert_eq!(out.status.code(), Some(1), "unknown without a catalog");

    std::fs::write(
        state.path().join("catalog.yaml"),
        "models:\n  - name: wan-2.2\n    seconds: [5]\n    sizes:\n      - { size: 832x480, standard: \"0.02\" }\n",
    )
    .unwrap();
    let doc = json(&render(
        state.path(),
        &["--format", "json", "plan", "-"],
        Some(list),
    ));
    assert_eq!(doc["total_usd"], "0.05");

    let cheaper = state.path().join("cheaper.yaml");
    std::fs::write(
        &cheaper,
        "models:\n  - name: wan-2.2\n    seconds: [5]\n    sizes:\n      - { size: 832x480, standard: \"0.02\", batch: \"0.002\" }\n",
    )
    .unwrap();
    let args = [
        "--format",
        "json",
        "plan",
        "-",
        "--catalog",
        cheaper.to_str().unwrap(),
    ];
    let doc = json(&render(state.path(), &args, Some(list)));
    assert_eq!(doc["total_usd"], "0.01");

    std::fs::write(&cheaper, "models: nope").unwrap();
    let out = render(
        state.path(),
        &["plan", "-", "--catalog", cheaper.to_str().unwrap()],
        Some(list),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid catalog"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn flags_set_defaults_below_the_lists_own() {
    let state = tempfile::tempdir().unwrap();
    let list = "shots:\n  - {id: a, prompt: x}\n";
    let args = [
        "--format",
        "json",
        "plan",
        "-",
        "--model",
        "sora-2-pro",
        "--size",
        "1920x1080",
        "--seconds",
        "4",
    ];
    let doc = json(&render(state.path(), &args, Some(list)));
    assert_eq!(doc["total_usd"], "1.40");
    let out = render(state.path(), &["plan", "-", "--model", "sora3"], Some(list));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("command line: error: unknown model `sora3` (from --model)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("= help: did you mean `sora-2`?"),
        "{stderr}"
    );
}

#[test]
fn unknown_files_and_formats_are_reported_not_fatal() {
    let state = tempfile::tempdir().unwrap();
    let out = render(
        state.path(),
        &[
            "plan",
            "shotlists/missing.yaml",
            "shotlists/refs/harbour.png",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("shotlists/missing.yaml: error: cannot read the shot list"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shotlists/refs/harbour.png: error: unknown shot list format"),
        "{stderr}"
    );
}

#[test]
fn the_default_api_host_warns_about_retired_models_but_still_plans() {
    let state = tempfile::tempdir().unwrap();
    let out = render_with_base(state.path(), "", &["plan", "shotlists/night.yaml"], None);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: sora-2 was retired on api.openai.com on 2026-09-24; use an OpenAI-compatible server (OPENAI_BASE_URL)"),
        "{stderr}"
    );
    let out = render_with_base(
        state.path(),
        "not a url",
        &["plan", "shotlists/night.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}
