//! What a person sees on a terminal: bars only once they count something, nothing wider than
//! the terminal, the take in every message, and `--quiet` for silence.

mod common;

use common::*;

/// Text as it lands on screen: escape sequences removed, split where the cursor returns.
fn screen_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        // Cursor movement and erasing start another stretch of screen.
                        if "ABGHJK".contains(c) {
                            plain.push('\n');
                        }
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\n', '\r'])
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The rows the bars draw. Bars pad each row to the terminal's width and leave the move to the
/// next row to the terminal, so rows are cut apart where a bar begins: its spinner, `videos`
/// or `bytes`.
fn bar_rows(lines: &[String]) -> Vec<String> {
    let mut rows = Vec::new();
    for line in lines {
        let mut row = String::new();
        let mut rest = line.as_str();
        while let Some(c) = rest.chars().next() {
            let starts_bar = ('\u{2800}'..='\u{28ff}').contains(&c)
                || rest.starts_with("videos [")
                || rest.starts_with("bytes  ");
            if starts_bar && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
            }
            if starts_bar || !row.is_empty() {
                row.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
        if !row.is_empty() {
            rows.push(row);
        }
    }
    rows
}

#[test]
fn on_an_80_column_terminal_nothing_wraps_and_no_bar_is_empty() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: tty\nshots:\n  - {id: a_rather_long_shot_name_that_goes_on_and_on_and_on_and_on, prompt: a kite, takes: 2}\n  - {id: b, prompt: a boat}\n",
    );
    let render = env!("CARGO_BIN_EXE_render");
    let inner =
        format!("stty cols 80 rows 24; exec {render} nightly shots.yaml --max-poll-interval 1");
    let out = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .current_dir(night.dir.path())
        .env("TERM", "xterm-256color")
        .env("OPENAI_BASE_URL", night.sandbox.base_url())
        .env("OPENAI_API_KEY", API_KEY)
        .env("RENDER_STATE_DIR", night.state_dir())
        .env_remove("NO_COLOR")
        .output()
        .expect("script(1) runs the night on a pseudo-terminal");
    let lines = screen_lines(&out.stdout);
    assert!(
        lines.iter().any(|l| l.contains("harvested")),
        "the night ran: {lines:#?}"
    );
    // The videos bar shows the night's whole total before the first download lands.
    assert!(
        bar_rows(&lines)
            .iter()
            .any(|r| r.starts_with("videos [") && r.contains(" 0/3")),
        "{lines:#?}"
    );
    for row in bar_rows(&lines) {
        assert!(
            row.chars().count() <= 80,
            "a bar wider than the terminal: {row:?}"
        );
    }
    for line in &lines {
        assert!(!line.contains("0/0"), "an empty bar: {line:?}");
    }
    // The night's end clears the bars, as cargo does; the summary follows on its own line.
    let last = lines.last().unwrap();
    assert!(
        !last.contains("videos [") && !last.contains("bytes "),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("run-")), "{lines:#?}");
}

#[test]
fn quiet_shows_no_progress_but_still_the_result() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(2, "quiet"));
    let out = night.render(&[
        "--quiet",
        "nightly",
        "shots.yaml",
        "--max-poll-interval",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "", "nothing on stderr");
    assert!(!stdout_of(&out).is_empty(), "the summary is still printed");
}

#[test]
fn log_lines_name_the_take() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: takes\nshots:\n  - {id: kite, prompt: a kite, takes: 2}\n",
    );
    // Not a terminal: one line per event.
    let out = night.render(&["nightly", "shots.yaml", "--max-poll-interval", "1"]);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("harvested kite take 1"), "{stderr}");
    assert!(stderr.contains("harvested kite take 2"), "{stderr}");
}

/// `--format json` is one more reader of the night's events: stdout is the one document, and
/// stderr is one JSON object per event, the same events the bars and lines show.
#[test]
fn json_mode_streams_every_event_as_one_json_line_on_stderr() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: takes\nshots:\n  - {id: kite, prompt: a kite, takes: 2}\n",
    );
    let out = night.render(&[
        "nightly",
        "shots.yaml",
        "--max-poll-interval",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let document: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(document["runs"][0]["harvested"], 2, "{document}");
    let stderr = stderr_of(&out);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds.len(),
        events.len(),
        "every line names its event: {stderr}"
    );
    for expected in ["run_started", "batch_created", "harvest_started"] {
        assert!(kinds.contains(&expected), "no {expected} in {kinds:?}");
    }
    let mut takes: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "video_harvested")
        .map(|e| e["take"].as_u64().unwrap())
        .collect();
    takes.sort();
    assert_eq!(takes, [1, 2], "{stderr}");
    assert!(
        !kinds.contains(&"download_progress"),
        "per-chunk counts are not written"
    );
}
