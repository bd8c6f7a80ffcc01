//! Every diagnostic `render plan` gives, as tables of input → (line, column, message).

use std::path::Path;

use render_pipeline::plan::{PlanOptions, build};
use render_pipeline::shotlist::{Diagnostic, Format, Severity, ShotListInput};
use render_wire::catalog::Catalog;

const REFS: &str = "shotlists";

/// (line, column, a fragment of the message or help)
type Expected = (u32, u32, &'static str);
/// An input and every error it must give, in order.
type Case = (&'static str, &'static [Expected]);

/// Plans one list and returns its diagnostics as `(severity, line, col, message, help)`.
fn diagnose(format: Format, text: &str) -> Vec<Diagnostic> {
    diagnose_for("127.0.0.1", format, text)
}

fn diagnose_for(provider: &str, format: Format, text: &str) -> Vec<Diagnostic> {
    let path = match format {
        Format::Yaml => "list.yaml",
        Format::Csv => "list.csv",
    };
    let input = ShotListInput::new(path, Path::new(REFS), text.to_string(), format);
    match build(
        &[input],
        &PlanOptions::single(provider, Catalog::builtin()),
        &|_| false,
    ) {
        Ok((_, warnings)) => warnings,
        Err(diagnostics) => diagnostics,
    }
}

/// Asserts that `text` gives exactly the expected errors: (line, col, message fragment).
fn check(format: Format, text: &str, expected: &[(u32, u32, &str)]) {
    let found = diagnose(format, text);
    let summary: Vec<String> = found
        .iter()
        .map(|d| format!("{}:{}: {} [{:?}]", d.line, d.col, d.message, d.help))
        .collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "for:\n{text}\ngot:\n{summary:#?}"
    );
    for (d, (line, col, fragment)) in found.iter().zip(expected) {
        assert_eq!(d.severity, Severity::Error, "{summary:#?}");
        assert_eq!((d.line, d.col), (*line, *col), "{summary:#?}");
        assert!(
            d.message.contains(fragment) || d.help.as_deref().unwrap_or("").contains(fragment),
            "`{fragment}` not in {summary:#?}"
        );
    }
}

fn yaml(text: &str, expected: &[(u32, u32, &str)]) {
    check(Format::Yaml, text, expected);
}

fn csv(text: &str, expected: &[(u32, u32, &str)]) {
    check(Format::Csv, text, expected);
}

#[test]
fn yaml_syntax_errors_point_at_the_break() {
    yaml(
        "shots:\n  - id: a\n    prompt: \"unclosed\n",
        &[(3, 13, "invalid YAML: unclosed quote")],
    );
    yaml(
        "shots:\n  - id: a\n   prompt: x\n",
        &[(3, 4, "invalid YAML")],
    );
    yaml(
        "shots: [ {id: a, prompt: b}\n",
        &[(1, 8, "unclosed bracket")],
    );
    yaml("shots:\n\t- id: a\n", &[(2, 2, "tabs")]);
}

#[test]
fn unknown_fields_suggest_the_closest_one() {
    let cases: &[Case] = &[
        (
            "shots:\n  - id: a\n    promt: x\n",
            &[(2, 9, "has no `prompt`"), (3, 5, "did you mean `prompt`?")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    second: 8\n",
            &[(4, 5, "did you mean `seconds`?")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    referance: a.png\n",
            &[(4, 5, "did you mean `reference`?")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    colour: red\n",
            &[(4, 5, "a shot has the fields: id, prompt")],
        ),
        (
            "defaults:\n  modle: sora-2\nshots: []\n",
            &[(2, 3, "did you mean `model`?")],
        ),
        (
            "shot: []\n",
            &[(1, 1, "no `shots`"), (1, 1, "did you mean `shots`?")],
        ),
    ];
    for (text, expected) in cases {
        yaml(text, expected);
    }
}

#[test]
fn wrong_types_are_named() {
    let cases: &[Case] = &[
        (
            "shots:\n  - id: a\n    prompt: [x, y]\n",
            &[(3, 13, "`prompt` must be text, found a list")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    seconds: eight\n",
            &[(
                4,
                14,
                "`seconds` must be a whole number above 0, found `eight`",
            )],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    takes: 2.5\n",
            &[(4, 12, "`takes` must be a whole number above 0, found `2.5`")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    size: big\n",
            &[(4, 11, "`big` is not a size")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    model: {name: sora-2}\n",
            &[(4, 12, "`model` must be text, found a mapping")],
        ),
        (
            "shots: 3\n",
            &[(1, 8, "`shots` must be a list, found a number")],
        ),
        (
            "shots:\n  - just text\n",
            &[(2, 5, "a shot must be a mapping, found text")],
        ),
        (
            "- id: a\n",
            &[(1, 1, "a shot list must be a mapping, found a list")],
        ),
        ("", &[(0, 0, "the shot list is empty")]),
    ];
    for (text, expected) in cases {
        yaml(text, expected);
    }
}

#[test]
fn ids_and_prompts_are_required_and_ids_unique() {
    let cases: &[Case] = &[
        ("shots:\n  - prompt: x\n", &[(2, 5, "the shot has no `id`")]),
        ("shots:\n  - id: a\n", &[(2, 9, "shot `a` has no `prompt`")]),
        (
            "shots:\n  - id: a\n    prompt: \"  \"\n",
            &[(3, 13, "the prompt is empty")],
        ),
        (
            "shots:\n  - id: a\n    prompt:\n",
            &[(3, 11, "the prompt is empty")],
        ),
        (
            "shots:\n  - id:\n    prompt: x\n",
            &[(2, 7, "the shot id is empty")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n  - id: a\n    prompt: y\n",
            &[(4, 9, "duplicate shot id `a`")],
        ),
        (
            "shots:\n  - id: a\n    id: b\n    prompt: x\n",
            &[(3, 5, "`id` is given twice")],
        ),
    ];
    for (text, expected) in cases {
        yaml(text, expected);
    }
}

#[test]
fn duplicate_ids_point_at_both_places() {
    let found = diagnose(
        Format::Yaml,
        "shots:\n  - id: a\n    prompt: x\n  - id: a\n    prompt: y\n",
    );
    let related = &found[0].related;
    assert_eq!(related.len(), 1);
    assert_eq!((related[0].line, related[0].col), (2, 9));
    assert_eq!(related[0].label, "first used here");
}

#[test]
fn ids_unsafe_as_file_names_are_refused() {
    let long = "x".repeat(101);
    let cases = [
        ("a/b", "contains `/`"),
        ("'a\\b'", "contains `\\`"),
        ("..", "contains `..`"),
        (".hidden", "starts with `.`"),
        ("\"tab\\there\"", "control character"),
        ("''", "the shot id is empty"),
        (long.as_str(), "101 bytes long"),
    ];
    for (id, message) in cases {
        let text = format!("shots:\n  - id: {id}\n    prompt: x\n");
        yaml(&text, &[(2, 9, message)]);
    }
}

#[test]
fn models_sizes_and_seconds_follow_the_catalog() {
    let cases: &[Case] = &[
        (
            "shots:\n  - id: a\n    prompt: x\n    model: sora2\n",
            &[(4, 12, "did you mean `sora-2`?")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    size: 1920x1080\n",
            &[(4, 11, "1920x1080 needs sora-2-pro")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    size: 640x480\n",
            &[(4, 11, "sora-2 offers 720x1280, 1280x720")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    seconds: 10\n",
            &[(4, 14, "allowed seconds: 4, 8, 12, 16, 20")],
        ),
        // The clash is reported at the value written on the shot, not the inherited one.
        (
            "defaults:\n  size: 1920x1080\nshots:\n  - id: a\n    prompt: x\n    model: sora-2\n",
            &[(6, 12, "sora-2 does not offer 1920x1080 (from `defaults`)")],
        ),
        // A bad default is reported once, at the default, however many shots inherit it.
        (
            "defaults:\n  model: sora-3\nshots:\n  - id: a\n    prompt: x\n  - id: b\n    prompt: y\n",
            &[(2, 10, "unknown model `sora-3`")],
        ),
    ];
    for (text, expected) in cases {
        yaml(text, expected);
    }
}

#[test]
fn takes_and_prompt_length_have_limits() {
    let long_prompt = "x".repeat(4001);
    let cases: Vec<(String, Vec<Expected>)> = vec![
        (
            "shots:\n  - id: a\n    prompt: x\n    takes: 0\n".into(),
            vec![(4, 12, "at least 1 take")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    takes: -2\n".into(),
            vec![(4, 12, "at least 1 take")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    takes: 101\n".into(),
            vec![(4, 12, "101 takes is more than the limit of 100")],
        ),
        (
            format!("shots:\n  - id: a\n    prompt: {long_prompt}\n"),
            vec![(
                3,
                13,
                "the prompt is 4001 characters; sora-2 accepts at most 4000",
            )],
        ),
    ];
    for (text, expected) in cases {
        yaml(&text, &expected);
    }
}

#[test]
fn reference_images_must_exist_be_supported_and_match_the_size() {
    let cases: &[Case] = &[
        (
            "shots:\n  - id: a\n    prompt: x\n    reference: refs/nope.png\n",
            &[(4, 16, "refs/nope.png does not exist")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    reference: refs/flag.gif\n",
            &[(4, 16, "is a GIF image; the API takes JPEG, PNG or WebP")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    reference: night.yaml\n",
            &[(4, 16, "is not a JPEG, PNG or WebP image")],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    reference: refs/thumbnail.png\n",
            &[(
                4,
                16,
                "the reference image is 640x360 but the shot is 1280x720",
            )],
        ),
        (
            "shots:\n  - id: a\n    prompt: x\n    size: 720x1280\n    reference: refs/harbour.png\n",
            &[(
                5,
                16,
                "the reference image is 1280x720 but the shot is 720x1280",
            )],
        ),
    ];
    for (text, expected) in cases {
        yaml(text, expected);
    }
    // JPEG, PNG and WebP of the right size pass.
    yaml(
        "shots:\n  - {id: a, prompt: x, reference: refs/alley.jpg}\n  - {id: b, prompt: x, reference: refs/harbour.png}\n  - {id: c, prompt: x, model: sora-2-pro, size: 1920x1080, reference: refs/skyline.webp}\n",
        &[],
    );
}

#[test]
fn every_problem_in_a_list_is_reported_in_one_run() {
    let text = std::fs::read_to_string("shotlists/broken.yaml").unwrap();
    let found = diagnose(Format::Yaml, &text);
    assert!(found.len() >= 15, "{found:#?}");
    assert!(found.iter().all(|d| d.is_error()));
    let lines: Vec<u32> = found.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "diagnostics are sorted by position");
}

#[test]
fn retired_models_warn_on_the_retiring_host_only() {
    let text =
        "shots:\n  - id: a\n    prompt: x\n  - id: b\n    prompt: y\n    model: sora-2-pro\n";
    let found = diagnose_for("api.openai.com", Format::Yaml, text);
    let warnings: Vec<(u32, u32, &str)> = found
        .iter()
        .map(|d| (d.line, d.col, d.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [
            (
                2,
                5,
                "sora-2 was retired on api.openai.com on 2026-09-24; use an OpenAI-compatible server (OPENAI_BASE_URL)"
            ),
            (
                6,
                12,
                "sora-2-pro was retired on api.openai.com on 2026-09-24; use an OpenAI-compatible server (OPENAI_BASE_URL)"
            ),
        ]
    );
    assert!(found.iter().all(|d| d.severity == Severity::Warning));
    assert!(diagnose_for("127.0.0.1", Format::Yaml, text).is_empty());
}

#[test]
fn csv_problems_point_at_their_cells() {
    let cases: &[Case] = &[
        (
            "id,promt\na,x\n",
            &[
                (1, 1, "no `prompt` column"),
                (1, 4, "did you mean `prompt`?"),
            ],
        ),
        (
            "id,prompt,id\na,x,b\n",
            &[(1, 11, "column `id` appears twice")],
        ),
        ("id,prompt\na,x,extra\n", &[(2, 5, "2 columns")]),
        ("id,prompt,seconds\na,x,eight\n", &[(2, 5, "found `eight`")]),
        (
            "id,prompt,model\na,x,sora-3\n",
            &[(2, 5, "did you mean `sora-2`?")],
        ),
        ("id,prompt\na,\n", &[(2, 1, "shot `a` has no `prompt`")]),
        ("id,prompt\n,x\n", &[(2, 1, "the shot has no `id`")]),
        (
            "id,prompt\na,x\n\"b,y\n",
            &[(3, 1, "invalid CSV: this quote is never closed")],
        ),
        (
            "id,prompt\na,x\nb,\"quoted, with \"\"comma\"\"\"\na,z\n",
            &[(4, 1, "duplicate shot id `a`")],
        ),
        (
            "id,prompt,size\na,x,1920x1080\n",
            &[(2, 5, "1920x1080 needs sora-2-pro")],
        ),
        (
            "id,prompt,takes\na,x,0\n",
            &[(2, 5, "whole number above 0")],
        ),
        ("", &[(0, 0, "the shot list is empty")]),
    ];
    for (text, expected) in cases {
        csv(text, expected);
    }
}
