//! What the compiler cannot hold about the layering. The crates hold the big walls (the sandbox
//! and the pipeline both depend on `render-wire` and never on each other; only the binary sees
//! them all), so what is left is the order of modules inside a crate: a module may use only its
//! own layer or lower ones, and submit and harvest meet only through the ledger and the lanes.

use std::path::{Path, PathBuf};

/// The pipeline's modules, lowest layer first (as `crates/render-pipeline/src/lib.rs` lists them).
const PIPELINE: &[(&str, u8)] = &[
    ("events", 1),
    ("failpoint", 1),
    ("fsutil", 1),
    ("api", 2),
    ("provider", 2),
    ("shotlist", 2),
    ("batch", 3),
    ("cache", 3),
    ("ledger", 3),
    ("plan", 3),
    ("select", 3),
    ("shared", 3),
    ("cancel", 4),
    ("harvest", 4),
    ("lanes", 4),
    ("outputs", 4),
    ("status", 4),
    ("submit", 4),
];

/// The binary's modules: the reporter writes what the command line hands it, never the reverse.
const BINARY: &[(&str, u8)] = &[("report", 1), ("cli", 2)];

fn layer(table: &[(&str, u8)], module: &str) -> u8 {
    table
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module `{module}` is not in the layer table: add it"))
}

/// Every top-level module a source file names as `crate::<module>`, outside comments, grouped
/// imports (`use crate::{ledger::Ledger, plan}`) included.
fn crate_uses(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut uses = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => uses.extend(group_heads(group)),
            None => uses.push(identifier(rest)),
        }
    }
    uses.retain(|name| !name.is_empty());
    uses
}

/// The first identifier of each item in a `{…}` group, up to its closing brace.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = vec![identifier(group.trim_start())];
    let mut depth = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.push(identifier(group[at + 1..].trim_start())),
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The violations of one crate's layer table.
fn violations(src: &Path, table: &[(&str, u8)]) -> Vec<String> {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_uses(&text) {
            let allowed = match module.as_str() {
                "submit" => used != "harvest" && layer(table, &used) <= layer(table, &module),
                "harvest" => used != "submit" && layer(table, &used) <= layer(table, &module),
                _ => layer(table, &used) <= layer(table, &module),
            };
            if !allowed {
                violations.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

#[test]
fn modules_use_only_their_own_layer_or_lower() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = violations(&root.join("crates/render-pipeline/src"), PIPELINE);
    found.extend(violations(&root.join("src"), BINARY));
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layer_check_sees_uses_grouped_or_not() {
    let text = "use crate::ledger::{A, B};\n//! see crate::cli\ncrate::key::x();\n\
                use crate::{plan::{Plan, X}, submit,\n    harvest::Y};";
    assert_eq!(
        crate_uses(text),
        ["ledger", "key", "plan", "submit", "harvest"]
    );
}

#[test]
fn a_layer_violation_is_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ledger.rs"), "use crate::{submit::Run};\n").unwrap();
    assert_eq!(
        violations(dir.path(), PIPELINE),
        ["ledger.rs uses crate::submit"]
    );
}
