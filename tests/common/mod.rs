//! The harness every end-to-end test uses: a sandbox started in-process on a free port, a scratch
//! folder with its own state directory, and the real `render` binary run against both.

#![allow(dead_code)]

pub mod litellm;
pub mod moto;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use render_sandbox::{SandboxConfig, SandboxHandle, spawn};

pub const API_KEY: &str = "sk-test-do-not-log-0123456789";

/// A sandbox, a scratch folder and the binary, wired together.
pub struct Night {
    pub sandbox: SandboxHandle,
    pub dir: tempfile::TempDir,
}

impl Night {
    pub fn new() -> Night {
        Night::with(SandboxConfig::default().video_bytes(64 * 1024))
    }

    pub fn with(config: SandboxConfig) -> Night {
        let config = config.render_time(std::time::Duration::from_millis(20));
        Night {
            sandbox: spawn(config).expect("the sandbox starts"),
            dir: tempfile::tempdir().expect("a scratch folder"),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path(".render")
    }

    /// Writes a file into the scratch folder.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs `render ARGS` in the scratch folder against the sandbox.
    pub fn render(&self, args: &[&str]) -> Output {
        self.render_with(args, &[])
    }

    pub fn render_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("the render binary runs")
    }

    /// `render ARGS` in the scratch folder against the sandbox, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_render"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("OPENAI_BASE_URL", self.sandbox.base_url())
            .env("OPENAI_API_KEY", API_KEY)
            .env("RENDER_STATE_DIR", self.state_dir())
            .env_remove("RENDER_FAILPOINT")
            .env_remove("RENDER_LOG");
        command
    }

    /// Runs `render ARGS` and insists it exits 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.render(args);
        assert_success(&output, args);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `render ARGS --format json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", "json"]);
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Submits, then harvests until everything is finished.
    pub fn full_night(&self, shotlist: &str) -> serde_json::Value {
        self.ok(&["submit", shotlist]);
        self.json(&["harvest", "--watch"])
    }

    /// Bytes of a file the sandbox holds (e.g. a batch input file).
    pub fn file_content(&self, file_id: &str) -> Vec<u8> {
        let url = format!("{}/files/{file_id}/content", self.sandbox.base_url());
        blocking_get(&url)
    }

    pub fn manifest(&self, out_dir: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(out_dir).join("manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// A plain GET with the test key, on a private runtime (tests are synchronous); it must succeed.
pub fn blocking_get(url: &str) -> Vec<u8> {
    let (status, body) = blocking(reqwest::Method::GET, url);
    assert!((200..300).contains(&status), "GET {url}: {status}");
    body
}

/// A plain DELETE with the test key; the status and body.
pub fn blocking_delete(url: &str) -> (u16, Vec<u8>) {
    blocking(reqwest::Method::DELETE, url)
}

fn blocking(method: reqwest::Method, url: &str) -> (u16, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = sandbox::client()
            .request(method, url)
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    })
}

/// Writes `providers.yaml` naming the night's sandbox `lab`, on the direct lane.
pub fn direct_lab(night: &Night, max_in_flight: usize) {
    night.write(
        "providers.yaml",
        format!(
            "providers:\n  - name: lab\n    base_url: {}\n    api_key_env: OPENAI_API_KEY\n    lane: direct\n    max_in_flight: {max_in_flight}\n",
            night.sandbox.base_url()
        ),
    );
}

/// `render --providers providers.yaml nightly night.yaml`, polling at least once a second:
/// the night of the provider tests.
pub const NIGHTLY_WITH_PROVIDERS: &[&str] = &[
    "--providers",
    "providers.yaml",
    "nightly",
    "night.yaml",
    "--max-poll-interval",
    "1",
];

/// A night of ten requests for `provider`: a shot with a first frame (`first.png`, 1280x720),
/// two takes of one shot, seven more; and `extra` shots (YAML lines) after them.
pub fn ten_request_night(project: &str, provider: &str, extra: &str) -> String {
    format!(
        r#"project: {project}
defaults: {{ provider: {provider}, model: sora-2, size: 1280x720, seconds: 4 }}
shots:
  - {{ id: n01-ref, prompt: "A harbour at dusk, from the first frame", reference: first.png }}
  - {{ id: n02-takes, prompt: "Gulls over the breakwater", takes: 2 }}
  - {{ id: n03, prompt: "Nets drying on the quay" }}
  - {{ id: n04, prompt: "A ferry leaving at night" }}
  - {{ id: n05, prompt: "Rain on the lighthouse glass" }}
  - {{ id: n06, prompt: "Fishermen mending a sail" }}
  - {{ id: n07, prompt: "Lamps coming on along the harbour" }}
  - {{ id: n08, prompt: "Waves against the old stone steps" }}
{extra}"#
    )
}

/// Every harvested entry of the manifest in `out_dir`: its file and its recorded hash equal,
/// byte for byte, what the sandbox rendered for its video id (kept exactly as returned).
/// Returns how many were checked.
pub fn assert_byte_exact(night: &Night, out_dir: &str) -> usize {
    let manifest = night.manifest(out_dir);
    let mut checked = 0;
    for entry in manifest["requests"].as_array().unwrap() {
        if entry["status"] != "harvested" {
            continue;
        }
        let video_id = entry["video_id"].as_str().unwrap();
        let served = night
            .sandbox
            .video_digest(video_id)
            .unwrap_or_else(|| panic!("the sandbox knows {video_id}"));
        assert_eq!(entry["sha256"], served.sha256.as_str(), "{video_id}");
        let path = night
            .path(out_dir)
            .join(entry["video_path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            render_wire::key::Sha256Hex::of(&bytes).hex(),
            served.sha256,
            "{}",
            path.display()
        );
        assert_eq!(bytes.len() as u64, served.bytes);
        checked += 1;
    }
    checked
}

pub fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "render {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A valid YAML shot list of `n` shots (sora-2, 1280x720, 4 s), prompts tagged with `salt`.
pub fn shot_list(n: usize, salt: &str) -> String {
    let mut yaml = String::from("project: test-night\nshots:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - id: shot-{i:03}\n    prompt: \"{salt} shot {i}: a paper boat drifting on a pond\"\n    model: sora-2\n    size: 1280x720\n    seconds: 4\n"
        ));
    }
    yaml
}

/// A minimal valid PNG header of the given size (the plan reads only the header).
pub fn png_of(width: u32, height: u32, salt: u8) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0, salt]);
    png
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every JSONL line of every batch input file the sandbox received.
pub fn batch_input_lines(night: &Night, state_dir: &Path) -> Vec<serde_json::Value> {
    let ledger = render_pipeline::ledger::Ledger::open(&state_dir.join("ledger.sqlite")).unwrap();
    let mut lines = Vec::new();
    for run in ledger.runs().unwrap() {
        for batch in ledger.batches_of_run(&run.id).unwrap() {
            let Some(file_id) = batch.input_file_id else {
                continue;
            };
            let content = night.file_content(&file_id);
            for line in String::from_utf8(content).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    lines
}
