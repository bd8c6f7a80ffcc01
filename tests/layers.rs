//! The layering of `src/` (see `src/lib.rs` and the style guide), held by a test: a module may
//! use only its own layer or lower ones, the sandbox only the API's wire types and catalog data,
//! and submit and harvest meet only through the ledger.

use std::path::Path;

const LAYERS: &[(&str, u8)] = &[
    ("catalog", 1),
    ("events", 1),
    ("failpoint", 1),
    ("fsutil", 1),
    ("key", 1),
    ("money", 1),
    ("dialect", 1),
    ("provider", 2),
    ("api", 2),
    ("shotlist", 2),
    ("batch", 3),
    ("cache", 3),
    ("ledger", 3),
    ("plan", 3),
    ("shared", 3),
    ("select", 3),
    ("harvest", 4),
    ("lanes", 4),
    ("outputs", 4),
    ("submit", 4),
    ("status", 4),
    ("cancel", 4),
    ("sandbox", 5),
    ("report", 6),
    ("cli", 7),
];

/// What the sandbox may use besides itself: it must stand apart from the pipeline it serves.
const SANDBOX_MAY_USE: &[&str] = &["api", "catalog", "dialect", "key", "money"];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module `{module}` is not in the layer table: add it"))
}

/// Every `crate::<module>` a source file names outside comments.
fn crate_uses(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::").map(move |(at, _)| {
                line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_their_own_layer_or_lower() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_uses(&text) {
            let allowed = match module.as_str() {
                "sandbox" => used == "sandbox" || SANDBOX_MAY_USE.contains(&used.as_str()),
                "submit" => used != "harvest" && layer(&used) <= layer(&module),
                "harvest" => used != "submit" && layer(&used) <= layer(&module),
                _ => layer(&used) <= layer(&module),
            };
            if !allowed {
                violations.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layer_check_sees_uses() {
    let text = "use crate::ledger::{A, B};\n//! see crate::cli\ncrate::key::x()";
    assert_eq!(crate_uses(text), ["ledger", "key"]);
}
