//! The sandbox's own tests' helpers (and the client's): a sandbox on a free port, the one
//! plain HTTP client of the test harness, and batch-input lines.

use std::time::{Duration, Instant};

use render_sandbox::{self as sandbox, SandboxConfig, SandboxHandle};
use serde_json::{Value, json};

pub const KEY: &str = "sk-test-key-0001";
pub const DAY: i64 = 86_400;

/// A sandbox plus a client that talks to it with the right key.
pub struct Api {
    pub sandbox: SandboxHandle,
    pub http: reqwest::Client,
}

/// A fast sandbox for tests: short renders, a one-minute day, a known key.
pub fn fast() -> SandboxConfig {
    SandboxConfig::default()
        .api_key(KEY)
        .render_time(Duration::from_millis(20))
        .day(Duration::from_secs(60))
        .video_bytes(64 * 1024)
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a client with default settings builds")
}

impl Api {
    pub fn start(config: SandboxConfig) -> Api {
        Api {
            sandbox: sandbox::spawn(config).expect("the sandbox starts"),
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    pub fn harness(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.root_url())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(KEY)
    }

    pub async fn upload(&self, filename: &str, bytes: Vec<u8>, purpose: &str) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string()),
            );
        let (status, body) = call(self.post("/files").multipart(form)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Uploads `lines` as a JSONL batch input and creates a batch over it.
    pub async fn batch(&self, lines: &[Value]) -> Value {
        let file = self
            .upload("night.jsonl", jsonl(lines).into_bytes(), "batch")
            .await;
        let (status, batch) = call(self.post("/batches")
                .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/videos", "completion_window": "24h"}))
                ).await;
        assert_eq!(status, 200, "{batch}");
        batch
    }

    /// Polls a batch until it reaches a terminal status.
    pub async fn finished_batch(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, batch) = call(self.get(&format!("/batches/{id}"))).await;
            let status = batch["status"].as_str().unwrap_or_default().to_string();
            if ["completed", "failed", "expired", "cancelled"].contains(&status.as_str()) {
                return batch;
            }
            assert!(Instant::now() < deadline, "batch still {status}: {batch}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls a video until it completes or fails.
    pub async fn finished_video(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, video) = call(self.get(&format!("/videos/{id}"))).await;
            if matches!(video["status"].as_str(), Some("completed" | "failed")) {
                return video;
            }
            assert!(Instant::now() < deadline, "video not done: {video}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The lines of a file's content, parsed.
    pub async fn jsonl_file(&self, id: &str) -> Vec<Value> {
        let response = self
            .get(&format!("/files/{id}/content"))
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("a body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    pub async fn create_video(&self, body: Value) -> Value {
        let (status, video) = call(self.post("/videos").json(&body)).await;
        assert_eq!(status, 200, "{video}");
        video
    }
}

/// Sends a request; status and JSON body of the answer (a non-JSON body comes back as a string).
pub async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the sandbox answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a whole body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A batch input line for `POST /v1/videos`.
pub fn line(custom_id: &str, body: Value) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/videos", "body": body})
}

pub fn prompt(text: &str) -> Value {
    json!({"model": "sora-2", "prompt": text, "size": "1280x720", "seconds": "4"})
}
