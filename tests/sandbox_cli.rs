//! `render sandbox` as a subprocess: the base URL comes first on stdout, flags configure it.

mod common;

use common::sandbox as support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::call;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_cli_prints_its_base_url_first_and_honours_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_render"))
        .args([
            "sandbox",
            "--api-key",
            "sk-cli",
            "--video-bytes",
            "100000",
            "--render-time",
            "10ms",
            "--day",
            "30s",
        ])
        .args(["--fault", "GET /v1/files: server_error status=503 nth=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the render binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let server = Server(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("a first line");
    let base = first.trim().to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );

    let http = support::client();
    assert_eq!(
        call(http.get(format!("{base}/files")).bearer_auth("sk-other"))
            .await
            .0,
        401
    );
    assert_eq!(
        call(http.get(format!("{base}/files")).bearer_auth("sk-cli"))
            .await
            .0,
        503
    );
    assert_eq!(
        call(http.get(format!("{base}/files")).bearer_auth("sk-cli"))
            .await
            .0,
        200
    );
    let (_, video) = call(
        http.post(format!("{base}/videos"))
            .bearer_auth("sk-cli")
            .json(&serde_json::json!({"prompt": "cli"})),
    )
    .await;
    let id = video["id"].as_str().unwrap().to_string();
    let root = base.trim_end_matches("/v1");
    let mut digest = serde_json::Value::Null;
    for _ in 0..200 {
        let (status, body) = call(http.get(format!("{root}/sandbox/videos/{id}/digest"))).await;
        if status == 200 {
            digest = body;
            break;
        }
    }
    assert_eq!(digest["bytes"], 100000);
    drop(server);
}

#[test]
fn bad_fault_flags_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_render"))
        .args(["sandbox", "--fault", "GET /v1/files: explode"])
        .output()
        .expect("the render binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("explode"), "{stderr}");
}
