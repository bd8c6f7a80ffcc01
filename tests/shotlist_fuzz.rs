//! The shot-list parsers and the planner never panic: on arbitrary text, and on valid shot lists
//! mutated at random, they return a plan or diagnostics, and every diagnostic that points into
//! the text points at a real place in it (line ≥ 1 within the text, a byte range inside it).
//!
//! Deterministic by default (a fixed proptest seed); `RELIABILITY_SEED=N` explores another
//! corner, and a failure prints the minimal input that breaks it.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use render_pipeline::plan::{PlanOptions, build};
use render_pipeline::shotlist::{Diagnostic, Format, ShotListInput, parse};
use render_wire::catalog::Catalog;

fn config() -> Config {
    let seed = std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x5107_1157);
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

fn shotlists_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shotlists")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(shotlists_dir().join(name)).expect("the example shot list")
}

fn input(text: &str, format: Format) -> ShotListInput {
    let path = match format {
        Format::Yaml => "fuzz.yaml",
        Format::Csv => "fuzz.csv",
    };
    ShotListInput::new(path, &shotlists_dir(), text.to_string(), format)
}

/// Every diagnostic about `text` points inside it.
fn assert_positions_valid(text: &str, path: &str, diagnostics: &[Diagnostic]) {
    let lines = text.split('\n').count() as u32;
    for d in diagnostics.iter().filter(|d| d.path == path) {
        assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
        if d.line == 0 {
            continue; // About the whole file.
        }
        assert!(
            d.line <= lines,
            "line {} of a {lines}-line text: {d:?}",
            d.line
        );
        assert!(d.col >= 1, "columns are 1-based: {d:?}");
        let (start, end) = (d.offset as usize, d.offset as usize + d.len as usize);
        assert!(
            end <= text.len(),
            "range {start}..{end} outside {} bytes: {d:?}",
            text.len()
        );
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "range {start}..{end} splits a character: {d:?}"
        );
        for related in &d.related {
            if related.path == path && related.line > 0 {
                assert!(related.line <= lines, "related line out of the text: {d:?}");
                assert!(
                    (related.offset + related.len) as usize <= text.len(),
                    "{d:?}"
                );
            }
        }
    }
}

/// Parses and plans `text`: a plan, or at least one error, all pointing inside the text.
fn check(text: &str, format: Format) {
    let input = input(text, format);
    let (_, parse_diagnostics) = parse(&input);
    assert_positions_valid(text, &input.path, &parse_diagnostics);
    let options = PlanOptions::single("127.0.0.1", Catalog::builtin());
    match build(std::slice::from_ref(&input), &options, &|_| false) {
        Ok((plan, warnings)) => {
            assert_positions_valid(text, &input.path, &warnings);
            assert!(warnings.iter().all(|w| !w.is_error()));
            for request in &plan.requests {
                assert!(!request.prompt.trim().is_empty(), "{request:?}");
            }
        }
        Err(diagnostics) => {
            assert!(
                diagnostics.iter().any(Diagnostic::is_error),
                "{diagnostics:?}"
            );
            assert_positions_valid(text, &input.path, &diagnostics);
        }
    }
}

/// One edit of a text, on character boundaries.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

/// Characters that mean something to YAML or CSV, and some that mean nothing.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            ":",
            "-",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            "[",
            "]",
            "{",
            "}",
            "\"",
            "'",
            "#",
            "&a",
            "*a",
            "!!str",
            "|",
            ">",
            ",",
            ";",
            "?",
            "%",
            "@",
            "`",
            "\\",
            "0",
            "-1",
            "1e9",
            "99999999999999999999",
            "é",
            "日本",
            "🎬",
            "\u{0}",
            "\u{feff}",
            "---",
            "...",
            "<<: *a",
            "id:",
            "prompt:",
            "takes:",
            "seconds:",
            "size:",
            "model:",
            "reference:",
            "shots:",
            "defaults:",
            "project:",
            "1280x720",
            "0x0",
            "sora-2",
            "null",
            "~",
            "true",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), token()).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let pick = |n: usize| {
        if chars.is_empty() {
            0
        } else {
            n % (chars.len() + 1)
        }
    };
    match edit {
        Edit::Delete { at, len } => {
            let start = pick(*at);
            let end = (start + len).min(chars.len());
            chars[..start].iter().chain(&chars[end..]).collect()
        }
        Edit::Insert { at, text } => {
            let at = pick(*at);
            let mut out: String = chars[..at].iter().collect();
            out.push_str(text);
            out.extend(&chars[at..]);
            out
        }
        Edit::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let i = line % lines.len();
            lines.insert(i, lines[i]);
            lines.join("\n")
        }
        Edit::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let n = lines.len();
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Truncate { at } => chars[..pick(*at)].iter().collect(),
    }
}

fn mutated(base: String) -> impl Strategy<Value = String> {
    prop::collection::vec(edit(), 1..8)
        .prop_map(move |edits| edits.iter().fold(base.clone(), |text, e| apply(&text, e)))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_as_yaml(text in any::<String>()) {
        check(&text, Format::Yaml);
    }

    #[test]
    fn arbitrary_text_never_panics_as_csv(text in any::<String>()) {
        check(&text, Format::Csv);
    }

    #[test]
    fn mutated_yaml_shot_lists_give_a_plan_or_diagnostics(text in mutated(example("night.yaml"))) {
        check(&text, Format::Yaml);
    }

    #[test]
    fn mutated_csv_shot_lists_give_a_plan_or_diagnostics(text in mutated(example("night.csv"))) {
        check(&text, Format::Csv);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(token(), 0..60)) {
        let text = tokens.concat();
        check(&text, Format::Yaml);
        check(&text, Format::Csv);
    }
}

#[test]
fn the_unmutated_examples_plan_cleanly() {
    for (name, format) in [("night.yaml", Format::Yaml), ("night.csv", Format::Csv)] {
        let text = example(name);
        let input = input(&text, format);
        let result = build(
            std::slice::from_ref(&input),
            &PlanOptions::single("127.0.0.1", Catalog::builtin()),
            &|_| false,
        );
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}
