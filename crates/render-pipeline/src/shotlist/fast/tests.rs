//! The fast reader against serde-saphyr on generated shot lists, valid and mutated: whenever
//! it gives a tree, serde-saphyr must give the same tree (values and every position), and so
//! the same diagnostics; it must give up on every text serde-saphyr refuses.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::super::yaml;
use super::*;

/// The list `t.yaml` holding `text`, as `render` reads it.
fn parse_list(text: &str) -> (super::super::ShotList, Vec<super::super::Diagnostic>) {
    let input = super::super::ShotListInput::new(
        "t.yaml",
        std::path::Path::new(""),
        text.to_string(),
        super::super::Format::Yaml,
    );
    super::super::parse(&input)
}

const KEYS: [&str; 16] = [
    "id",
    "prompt",
    "model",
    "size",
    "seconds",
    "takes",
    "tags",
    "reference",
    "priority",
    "provider",
    "promt",
    "id",
    "prompt",
    "yes",
    "_x",
    "a-b",
];
/// Values the fast reader takes…
const PLAIN: [&str; 16] = [
    "shot-01",
    "A lighthouse at dusk, waves breaking.",
    "sora-2",
    "1280x720",
    "1792x1024",
    "8",
    "0",
    "3 boats at dawn",
    "a:b",
    "value # a comment",
    "a#b",
    "[exterior, night]",
    "[]",
    "[ a , b ]",
    "Wide [shot] {of} the, harbour",
    "rush",
];
/// …and values it must leave to serde-saphyr (or read exactly as it does).
const EDGES: [&str; 26] = [
    "0x1F",
    "007",
    "12345678901234567890",
    "-3",
    "+4",
    "1.5",
    "1e3",
    "yes",
    "No",
    "on",
    "~",
    "null",
    "NULL",
    "inf",
    ".inf",
    "12:30",
    "a: b",
    "[a,]",
    "[a, [b]]",
    "\"quoted\"",
    "'single'",
    "&anchor x",
    "*alias",
    "!!str 5",
    "|",
    "",
];

fn config() -> Config {
    // `RELIABILITY_SEED=N` explores another corner, as the other fuzz tests do.
    let seed = std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0xFA57_0001);
    let cases = std::env::var("FAST_PATH_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

type Field = (usize, &'static str, bool);

fn entry() -> impl Strategy<Value = Field> {
    let value = prop_oneof![
        12 => prop::sample::select(&PLAIN[..]),
        1 => prop::sample::select(&EDGES[..]),
    ];
    (0..KEYS.len(), value, prop::bool::weighted(0.2))
}

fn shot() -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec(entry(), 1..6)
}

/// A shot list built from the pools: the given layout, shots of random fields.
fn list_text(shots: &[Vec<Field>], indent: usize, comments: bool, defaults: bool) -> String {
    let mut text = String::new();
    if comments {
        text.push_str("# a night\n\n");
    }
    text.push_str("project: harbour\n");
    if defaults {
        text.push_str("defaults:\n  model: sora-2\n  seconds: 8\n");
    }
    text.push_str("shots:\n");
    let dash = " ".repeat(indent);
    let field = " ".repeat(indent + 2);
    for fields in shots {
        for (i, (key, value, nested)) in fields.iter().enumerate() {
            let lead = if i == 0 {
                format!("{dash}- ")
            } else {
                field.clone()
            };
            if *nested && KEYS[*key] == "tags" {
                text.push_str(&format!("{lead}tags:\n{field}  - {value}\n"));
            } else {
                text.push_str(&format!("{lead}{}: {value}\n", KEYS[*key]));
            }
            if comments && *nested {
                text.push_str(&format!("{field}# note\n"));
            }
        }
    }
    text
}

/// The fast tree, checked against serde-saphyr's; whether the fast reader took the text.
fn check(text: &str) -> bool {
    let slow = yaml::serde_saphyr_tree(text);
    let Some(fast) = parse(text, (text.len() / 2).max(1_000_000), None) else {
        return false;
    };
    match slow {
        Ok(slow) => assert_eq!(fast, slow, "trees differ for:\n{text}"),
        Err(err) => panic!("the fast reader took text serde-saphyr refuses ({err}):\n{text}"),
    }
    // Then the diagnostics are the same, positions included.
    let with_fast = parse_list(text);
    let with_slow = yaml::parse_with("t.yaml", text, yaml::serde_saphyr_tree);
    assert_eq!(with_fast, with_slow, "{text}");
    true
}

fn mutate(text: &str, at: usize, what: usize) -> String {
    const INSERTS: [&str; 12] = [
        " ", ":", "- ", "#", "\n", "x", "[", "]", ",", "\"", "  ", ": ",
    ];
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut out = text.to_string();
    match what % 3 {
        0 if at < text.len() => {
            out.remove(at);
        }
        1 => out.insert_str(at, INSERTS[what % INSERTS.len()]),
        _ => {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
            out.insert_str(line_start, &text[line_start..line_end]);
        }
    }
    out
}

#[test]
fn shots_read_before_the_fast_reader_gives_up_are_read_once() {
    // The first shot is streamed (with its problem) before the quoted prompt of the second
    // sends the whole text to serde-saphyr.
    let text =
        "shots:\n  - id: a\n    prompt: plain\n    takes: 0\n  - id: b\n    prompt: \"quoted\"\n";
    assert!(parse(text, 1_000_000, None).is_none());
    let (list, diagnostics) = parse_list(text);
    let slow = yaml::parse_with("t.yaml", text, yaml::serde_saphyr_tree);
    assert_eq!((&list, &diagnostics), (&slow.0, &slow.1));
    assert_eq!(list.shots.len(), 2);
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, ["`takes` is 0; a shot needs at least 1 take"]);
}

#[test]
fn the_benchmark_list_takes_the_fast_path() {
    let mut text =
        String::from("project: bench\ndefaults:\n  model: sora-2\n  seconds: 8\nshots:\n");
    for i in 0..40 {
        text.push_str(&format!(
            "  - id: shot-{i:06}\n    prompt: A lighthouse, take {i}.\n"
        ));
        match i % 4 {
            0 => text.push_str("    model: sora-2-pro\n    size: 1792x1024\n    seconds: 12\n"),
            1 => text.push_str("    takes: 2\n    tags: [exterior, night]\n"),
            2 => text.push_str("    reference: harbour.png\n"),
            _ => {}
        }
    }
    assert!(check(&text));
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shotlists/broken.yaml"),
    )
    .expect("the broken example");
    check(&example);
}

/// Runs `case` on `cases` generated values; returns how many the fast reader took.
fn run<S: Strategy>(strategy: S, case: impl Fn(S::Value) -> bool) -> (usize, usize) {
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let taken = std::cell::Cell::new(0);
    runner
        .run(&strategy, |value| {
            taken.set(taken.get() + usize::from(case(value)));
            Ok(())
        })
        .unwrap();
    (taken.get(), runner.config().cases as usize)
}

#[test]
fn the_fast_reader_builds_serde_saphyrs_tree() {
    let lists = (
        prop::collection::vec(shot(), 0..6),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    );
    let (taken, cases) = run(lists, |(shots, indent, comments, defaults)| {
        check(&list_text(&shots, indent, comments, defaults))
    });
    eprintln!("{taken} of {cases} lists took the fast path");
    // Enough of them go the fast way for the comparison to mean something.
    assert!(
        taken * 5 >= cases,
        "only {taken} of {cases} lists took the fast path"
    );
}

#[test]
fn mutated_lists_are_read_alike_or_left_to_serde_saphyr() {
    let lists = (
        prop::collection::vec(shot(), 1..4),
        0usize..3,
        prop::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    );
    let (taken, cases) = run(lists, |(shots, indent, mutations)| {
        let mut text = list_text(&shots, indent, false, true);
        for (at, what) in mutations {
            text = mutate(&text, at, what);
        }
        check(&text)
    });
    eprintln!("{taken} of {cases} mutated lists took the fast path");
    assert!(
        taken * 10 >= cases,
        "only {taken} of {cases} mutated lists took the fast path"
    );
}

#[test]
fn plain_lists_are_mostly_taken() {
    // Without a fast path taken, the comparison above would prove nothing.
    let simple: Vec<Vec<Field>> = (0..20)
        .map(|i| {
            vec![
                (0, PLAIN[0], false),
                (1, PLAIN[1], i % 2 == 0),
                (3, PLAIN[3 + i % 2], false),
                (6, PLAIN[11], false),
            ]
        })
        .collect();
    for indent in 0..3 {
        for comments in [false, true] {
            assert!(
                check(&list_text(&simple, indent, comments, true)),
                "indent {indent}"
            );
        }
    }
}

#[test]
fn only_the_first_of_repeated_shots_is_streamed() {
    let text = "shots:\n  - id: a\n    prompt: one\nshots:\n  - id: b\n    prompt: two\n";
    assert!(
        parse(text, 1_000_000, None).is_some(),
        "the fast reader takes the text"
    );
    check(text);
    let (list, diagnostics) = parse_list(text);
    let ids: Vec<&str> = list
        .shots
        .iter()
        .filter_map(|s| s.id.as_ref())
        .map(|i| i.value.as_str())
        .collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(diagnostics[0].message, "`shots` is given twice");
}
