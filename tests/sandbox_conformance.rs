//! The official `openai` Python SDK cannot tell the sandbox from the real service: runs
//! `tests/conformance/sdk_conformance.py` against an in-process sandbox. Needs python3 and
//! `pip install -r tests/conformance/requirements.txt`; missing either fails the test.

mod common;

use common::sandbox as support;

use std::path::Path;
use std::process::Command;

const INSTALL: &str = "pip install -r tests/conformance/requirements.txt";

#[test]
fn the_official_python_sdk_accepts_the_sandbox() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = Command::new("python3")
        .args(["-c", "import openai; print(openai.__version__)"])
        .output();
    let probe = match probe {
        Ok(output) => output,
        Err(err) => panic!(
            "python3 is needed for the SDK conformance test ({err}); install Python 3, then {INSTALL}"
        ),
    };
    assert!(
        probe.status.success(),
        "the `openai` Python package is missing: {INSTALL}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let pinned = std::fs::read_to_string(root.join("tests/conformance/requirements.txt"))
        .unwrap_or_default();
    let version = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    if !pinned.contains(&format!("openai=={version}")) {
        eprintln!(
            "warning: openai {version} is installed, the pinned one is in requirements.txt ({INSTALL})"
        );
    }

    let sandbox = render_sandbox::spawn(support::fast()).expect("the sandbox starts");
    let output = Command::new("python3")
        .arg(root.join("tests/conformance/sdk_conformance.py"))
        .arg(sandbox.base_url())
        .arg(support::KEY)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK conformance failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("conformance: all steps passed"), "{stdout}");
}
