//! The sandbox speaks four servers' contracts (`SandboxConfig::dialect`): OpenAI, SGLang
//! Diffusion, vllm-omni and a LiteLLM proxy. Real HTTP on 127.0.0.1 proves, for each: which
//! routes exist, auth, id shapes, JSON vs multipart, reference rules, `variant`, thumbnails,
//! `Range`, error shapes, 404 while running, restarts, render slots and their busy time.

mod common;

use common::sandbox as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use render_sandbox::{
    self as sandbox, Dialect, Fault, FaultConfig, FaultRule, SandboxConfig, SandboxHandle,
};
use render_wire::dialect::ALL_DIALECTS;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::{KEY, call, client, fast};

/// A sandbox speaking one dialect, and a client.
struct Server {
    sandbox: SandboxHandle,
    http: reqwest::Client,
    dialect: Dialect,
}

impl Server {
    fn start(dialect: Dialect) -> Server {
        Server::with(fast().dialect(dialect))
    }

    fn with(config: SandboxConfig) -> Server {
        let dialect = config.dialect;
        Server {
            sandbox: sandbox::spawn(config).expect("the sandbox starts"),
            http: client(),
            dialect,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// With the key (servers that take none ignore it).
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY)
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(KEY)
    }

    /// A create request the dialect accepts (vllm-omni takes multipart only).
    fn create_request(&self, prompt: &str) -> reqwest::RequestBuilder {
        match self.dialect {
            Dialect::VllmOmni => self.post("/videos").multipart(
                Form::new()
                    .text("prompt", prompt.to_string())
                    .text("seconds", "4")
                    .text("size", "1280x720"),
            ),
            _ => self.post("/videos").json(
                &json!({"prompt": prompt, "model": "sora-2", "size": "1280x720", "seconds": "4"}),
            ),
        }
    }

    async fn create(&self, prompt: &str) -> Value {
        let (status, video) = call(self.create_request(prompt)).await;
        assert_eq!(status, 200, "{}: {video}", self.dialect);
        video
    }

    /// Polls until the video completes or fails (vllm-omni answers a failed one with its code).
    async fn finished(&self, id: &str) -> Value {
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

    async fn content(&self, id: &str, variant: Option<&str>, range: Option<&str>) -> Download {
        let mut request = self.get(&format!("/videos/{id}/content"));
        if let Some(variant) = variant {
            request = request.query(&[("variant", variant)]);
        }
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.expect("the sandbox answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a whole body").to_vec();
        Download {
            status,
            headers,
            bytes,
        }
    }
}

struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn is_mp4(&self) -> bool {
        self.bytes.len() > 8 && &self.bytes[4..8] == b"ftyp"
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The first bytes of a PNG: enough for the sandbox to read its type and size.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bytes.extend(width.to_be_bytes());
    bytes.extend(height.to_be_bytes());
    bytes.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

fn image_part() -> Part {
    Part::bytes(png_header(1280, 720))
        .file_name("first-frame.png")
        .mime_str("image/png")
        .unwrap()
}

/// The standard-or-URL-safe base64 decoding of a LiteLLM id's tail.
fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            other => panic!("not base64: {}", other as char),
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn is_uuid4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn routes_follow_the_dialect() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let (status, models) = call(server.get("/models")).await;
        assert_eq!(status, 200, "{dialect}: {models}");
        assert_eq!(models["object"], "list");
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model", "{m}");
                assert!(m["created"].is_i64() && m["owned_by"].is_string(), "{m}");
                m["id"].as_str().unwrap()
            })
            .collect();
        assert!(
            ids.contains(&"sora-2") && ids.contains(&"sora-2-pro"),
            "{ids:?}"
        );

        let batch_routes = dialect.facts().batch_api || dialect == Dialect::Litellm;
        for path in ["/files", "/batches", "/batches/batch_x"] {
            let (status, body) = call(server.get(path)).await;
            if batch_routes {
                // The route exists: an unknown batch is the API's 404, not the router's.
                if path.ends_with("batch_x") {
                    assert_eq!(status, 404, "{dialect} {path}");
                    assert!(body["error"].is_object(), "{dialect} {path}: {body}");
                } else {
                    assert_eq!(status, 200, "{dialect} {path}: {body}");
                    assert_eq!(body["object"], "list");
                }
            } else {
                assert_eq!(status, 404, "{dialect} {path}: {body}");
                assert_eq!(body, json!({"detail": "Not Found"}), "{dialect} {path}");
            }
        }
        let (status, body) = call(server.get("/nowhere")).await;
        assert_eq!(status, 404);
        match dialect {
            Dialect::Openai => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Invalid URL"),
                "{body}"
            ),
            _ => assert_eq!(body, json!({"detail": "Not Found"}), "{dialect}"),
        }
    }
}

#[tokio::test]
async fn self_hosted_servers_take_no_key_and_the_others_want_theirs() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let bare = server.http.get(server.url("/models"));
        let wrong = server
            .http
            .get(server.url("/models"))
            .bearer_auth("sk-wrong-key-9999");
        let (no_key, body) = call(bare).await;
        let (wrong_key, wrong_body) = call(wrong).await;
        if dialect.facts().requires_key {
            assert_eq!((no_key, wrong_key), (401, 401), "{dialect}");
        } else {
            assert_eq!((no_key, wrong_key), (200, 200), "{dialect}: {body}");
        }
        match dialect {
            Dialect::Openai => {
                assert_eq!(body["error"]["code"], "invalid_api_key");
                assert!(
                    wrong_body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("sk-***9999")
                );
            }
            Dialect::Litellm => {
                assert_eq!(body["error"]["type"], "auth_error", "{body}");
                assert_eq!(body["error"]["code"], "401");
                assert_eq!(
                    body["error"]["message"],
                    "Authentication Error, No api key passed in."
                );
                assert!(
                    !wrong_body.to_string().contains("wrong-key"),
                    "{wrong_body}"
                );
            }
            Dialect::Sglang | Dialect::VllmOmni => {
                // A video without any key at all.
                let request = server.http.post(server.url("/videos"));
                let request = match dialect {
                    Dialect::VllmOmni => request.multipart(Form::new().text("prompt", "keyless")),
                    _ => request.json(&json!({"prompt": "keyless"})),
                };
                let (status, video) = call(request).await;
                assert_eq!(status, 200, "{dialect}: {video}");
            }
        }
    }
}

#[tokio::test]
async fn ids_look_like_each_servers_own() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let video = server.create("a lighthouse").await;
        let id = video["id"].as_str().unwrap().to_string();
        match dialect {
            Dialect::Openai => {
                assert!(is_hex(id.strip_prefix("video_").unwrap(), 32), "{id}")
            }
            Dialect::Sglang => assert!(is_uuid4(&id), "{id}"),
            Dialect::VllmOmni => {
                assert!(is_hex(id.strip_prefix("video_gen_").unwrap(), 32), "{id}")
            }
            Dialect::Litellm => {
                let tail = id.strip_prefix("video_").unwrap();
                assert!(!tail.contains(['/', '+']), "URL-safe: {id}");
                let inner = String::from_utf8(decode_base64(tail)).unwrap();
                let parts: Vec<&str> = inner.split(';').collect();
                assert_eq!(parts[0], "litellm:custom_llm_provider:openai", "{inner}");
                assert_eq!(parts[1], "model_id:sora-2", "{inner}");
                let upstream = parts[2].strip_prefix("video_id:video_").unwrap();
                assert!(is_hex(upstream, 32), "{inner}");
                assert!(parts[3].starts_with("deployment_id:"), "{inner}");
            }
        }
        // The id works as returned, for every route.
        let done = server.finished(&id).await;
        assert_eq!(done["id"], id.as_str(), "{dialect}");
        assert_eq!(done["status"], "completed", "{dialect}: {done}");
        let download = server.content(&id, None, None).await;
        assert_eq!(download.status, 200, "{dialect}");
        assert!(download.is_mp4(), "{dialect}");
        let digest = server
            .sandbox
            .video_digest(&id)
            .expect("the harness knows it");
        assert_eq!(digest.bytes, download.bytes.len() as u64);
    }
}

#[tokio::test]
async fn litellm_cannot_fetch_raw_upstream_ids() {
    let server = Server::start(Dialect::Litellm);
    let video = server.create("gateway").await;
    let id = video["id"].as_str().unwrap();
    let inner = String::from_utf8(decode_base64(id.strip_prefix("video_").unwrap())).unwrap();
    let raw = inner
        .split(';')
        .nth(2)
        .unwrap()
        .strip_prefix("video_id:")
        .unwrap();
    let (status, body) = call(server.get(&format!("/videos/{raw}"))).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "500");
    // The standard alphabet, unpadded, is the same id to LiteLLM.
    let standard = format!(
        "video_{}",
        id.strip_prefix("video_")
            .unwrap()
            .replace('-', "+")
            .replace('_', "/")
            .trim_end_matches('=')
    );
    if !standard.contains('/') {
        let (status, found) = call(server.get(&format!("/videos/{standard}"))).await;
        assert_eq!(status, 200, "{found}");
    }
    // Batches still pass through, but their raw video ids are unroutable here.
    let line = support::line("shot-1", support::prompt("through the gateway"));
    let form = Form::new().text("purpose", "batch").part(
        "file",
        Part::bytes(support::jsonl(&[line]).into_bytes()).file_name("night.jsonl"),
    );
    let (status, file) = call(server.post("/files").multipart(form)).await;
    assert_eq!(status, 200, "{file}");
    let (status, batch) = call(server.post("/batches").json(&json!({
        "input_file_id": file["id"], "endpoint": "/v1/videos", "completion_window": "24h",
        "metadata": {"night": "1"},
    })))
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["metadata"]["night"], "1", "metadata passes through");
    let deadline = Instant::now() + Duration::from_secs(10);
    let batch = loop {
        let (_, batch) =
            call(server.get(&format!("/batches/{}", batch["id"].as_str().unwrap()))).await;
        if batch["status"] == "completed" {
            break batch;
        }
        assert!(Instant::now() < deadline, "{batch}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let output = batch["output_file_id"].as_str().unwrap();
    let text = server
        .get(&format!("/files/{output}/content"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let raw = line["response"]["body"]["id"].as_str().unwrap();
    assert!(is_hex(raw.strip_prefix("video_").unwrap(), 32), "{raw}");
    let (status, body) = call(server.get(&format!("/videos/{raw}"))).await;
    assert_eq!(status, 500, "the batch lane cannot be harvested: {body}");
    let download = server.content(raw, None, None).await;
    assert_eq!(download.status, 500);
}

#[tokio::test]
async fn openai_takes_json_with_a_file_reference_and_multipart() {
    let server = Server::start(Dialect::Openai);
    let form = Form::new()
        .text("purpose", "vision")
        .part("file", image_part());
    let (status, file) = call(server.post("/files").multipart(form)).await;
    assert_eq!(status, 200, "{file}");
    let (status, video) = call(server.post("/videos").json(&json!({
        "prompt": "from a still", "size": "1280x720",
        "input_reference": {"file_id": file["id"]},
    })))
    .await;
    assert_eq!(status, 200, "{video}");
    let form = Form::new()
        .text("prompt", "from a still")
        .text("size", "1280x720")
        .part("input_reference", image_part());
    let (status, video) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["seconds"], "4");
    // An integer `seconds` is not OpenAI's type.
    let (status, body) = call(
        server
            .post("/videos")
            .json(&json!({"prompt": "x", "seconds": 8})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_object());
}

#[tokio::test]
async fn sglang_reads_json_like_pydantic_and_multipart_like_fastapi() {
    let server = Server::start(Dialect::Sglang);
    // `seconds` an integer, or a numeric string; the model is only echoed.
    for seconds in [json!(8), json!("8")] {
        let (status, video) = call(server.post("/videos").json(&json!({
            "prompt": "a harbour", "seconds": seconds, "size": "832x480", "model": "Wan2.1-T2V-1.3B",
        })))
        .await;
        assert_eq!(status, 200, "{video}");
        assert_eq!(video["seconds"], "8", "{video}");
        assert_eq!(video["size"], "832x480");
        assert_eq!(video["model"], "Wan2.1-T2V-1.3B");
        assert_eq!(video["expires_at"], Value::Null);
        assert!(
            video.get("prompt").is_none(),
            "SGLang's object has no prompt: {video}"
        );
    }
    // Frames and fps decide the echoed length: 81 frames at 16 fps.
    let (_, video) = call(server.post("/videos").json(&json!({
        "prompt": "wan", "num_frames": 81, "fps": 16,
    })))
    .await;
    assert_eq!(video["seconds"], "5", "{video}");
    // A reference is a string (path, URL, base64, data URL) in JSON; an object is refused.
    let (status, video) = call(server.post("/videos").json(&json!({
        "prompt": "from a still", "input_reference": "data:image/png;base64,iVBORw0KGgo=",
    })))
    .await;
    assert_eq!(status, 200, "{video}");
    let (status, body) = call(server.post("/videos").json(&json!({
        "prompt": "from a still", "input_reference": {"file_id": "file-abc"},
    })))
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Invalid request body: 1 validation error for VideoGenerationsRequest\ninput_reference\n  Input should be a valid string"),
        "{detail}"
    );
    for (bad, needle) in [
        (
            json!({"prompt": "x", "seconds": "eight"}),
            "unable to parse string as an integer",
        ),
        (json!({"seconds": 4}), "prompt\n  Field required"),
    ] {
        let (status, body) = call(server.post("/videos").json(&bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
    }
    let (status, body) = call(
        server
            .post("/videos")
            .json(&json!({"prompt": "x", "size": "wide"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"detail": "size must be formatted as positive WIDTHxHEIGHT"})
        )
    );
    // Multipart: the image as a file; a wrong type is FastAPI's 422 with a list.
    let form = Form::new()
        .text("prompt", "from a still")
        .text("seconds", "4")
        .part("input_reference", image_part());
    let (status, video) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 200, "{video}");
    let form = Form::new()
        .text("prompt", "x")
        .text("seconds", "eight")
        .text("input_reference", "file-abc");
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 422, "{body}");
    let errors = body["detail"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    for error in errors {
        assert!(
            error["type"].is_string() && error["loc"].is_array() && error["msg"].is_string(),
            "{error}"
        );
    }
    assert_eq!(errors[0]["loc"], json!(["body", "seconds"]));
    assert_eq!(errors[1]["loc"], json!(["body", "input_reference"]));
    let form = Form::new().text("seconds", "4");
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(
        (status, body),
        (400, json!({"detail": "prompt is required"}))
    );
    // No content policy on a self-hosted server.
    let (status, _) = call(
        server
            .post("/videos")
            .json(&json!({"prompt": "Taylor Swift on a tram"})),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn vllm_omni_takes_multipart_only_and_its_served_model() {
    let server = Server::with(fast().dialect(Dialect::VllmOmni).served_model("sora-2"));
    let (status, body) = call(
        server
            .post("/videos")
            .json(&json!({"prompt": "a harbour", "seconds": "4"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "prompt"]));
    assert_eq!(body["detail"][0]["type"], "missing");

    let form = Form::new()
        .text("prompt", "a harbour")
        .text("model", "sora-2")
        .text("seconds", "8")
        .part("input_reference", image_part());
    let (status, video) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["seconds"], "8");
    assert_eq!(video["size"], Value::Null, "size echoes what was sent");
    assert_eq!(video["model"], "sora-2");
    assert_eq!(video["prompt"], "a harbour");
    assert_eq!(video["error"], Value::Null);

    let form = Form::new().text("prompt", "x").text("model", "sora-2-pro");
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["detail"],
        "Model mismatch: request specifies 'sora-2-pro' but server is running 'sora-2'."
    );
    let form = Form::new()
        .text("prompt", "x")
        .text("image_reference", r#"{"file_id": "file-abc"}"#);
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"detail": "Invalid image_reference: file_id is not supported yet."})
        )
    );
    let form = Form::new().text("prompt", "x").text(
        "image_reference",
        r#"{"image_url": "https://example.com/a.png"}"#,
    );
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 200, "{body}");
    let form = Form::new()
        .text("prompt", "x")
        .text("seconds", "4.5")
        .text("size", "1280*720");
    let (status, body) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 422, "{body}");
    let types: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["string_pattern_mismatch", "string_pattern_mismatch"]
    );
    let (_, models) = call(server.get("/models")).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 1, "{models}");
}

#[tokio::test]
async fn litellm_breaks_on_json_references_and_forwards_multipart() {
    let server = Server::start(Dialect::Litellm);
    let (status, body) = call(server.post("/videos").json(&json!({
        "prompt": "from a still", "size": "1280x720", "input_reference": {"file_id": "file-abc"},
    })))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Invalid request format: 'dict' object has no attribute 'read'"
    );
    assert_eq!(body["error"]["code"], "400");
    let form = Form::new()
        .text("prompt", "from a still")
        .text("model", "sora-2")
        .text("size", "1280x720")
        .part("input_reference", image_part());
    let (status, video) = call(server.post("/videos").multipart(form)).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["size"], "1280x720");
    // The upstream still judges the request; LiteLLM wraps its answer.
    let (status, body) = call(
        server
            .post("/videos")
            .json(&json!({"prompt": "x", "model": "sora-3"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("litellm.BadRequestError: OpenAIException - "),
        "{message}"
    );
    assert!(message.contains("invalid_value"), "{message}");
    assert_eq!(body["error"]["code"], "400");
    assert_eq!(body["error"]["param"], "model");
}

#[tokio::test]
async fn variants_thumbnails_and_ranges_per_dialect() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let id = server.create("a lighthouse").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        server.finished(&id).await;
        let whole = server.content(&id, None, None).await;
        assert_eq!(whole.status, 200, "{dialect}");
        assert!(whole.is_mp4());
        assert_eq!(whole.header("content-type"), Some("video/mp4"));
        let thumbnail = server.content(&id, Some("thumbnail"), None).await;
        let named = server.content(&id, Some("video"), None).await;
        let index = server.content(&id, Some("0"), None).await;
        let ranged = server.content(&id, None, Some("bytes=0-99")).await;
        match dialect.facts().variant {
            render_wire::dialect::VariantRule::Named => {
                assert_eq!(thumbnail.status, 200);
                assert_eq!(&thumbnail.bytes[..3], [0xFF, 0xD8, 0xFF], "a JPEG");
                assert_eq!(named.bytes, whole.bytes);
                assert_eq!(index.status, 400, "{dialect}: names only");
            }
            render_wire::dialect::VariantRule::Index => {
                assert_eq!(index.bytes, whole.bytes, "{dialect}");
                for bad in [&named, &thumbnail] {
                    assert_eq!(bad.status, 404, "{dialect}");
                }
                assert_eq!(
                    named.json(),
                    json!({"detail": "Video variant video not found"})
                );
                assert_eq!(
                    thumbnail.json(),
                    json!({"detail": "Video variant thumbnail not found"})
                );
            }
            render_wire::dialect::VariantRule::Ignored => {
                for answer in [&thumbnail, &named, &index] {
                    assert_eq!(answer.status, 200, "{dialect}");
                    assert_eq!(answer.bytes, whole.bytes, "{dialect}: always the MP4");
                }
                assert!(thumbnail.is_mp4());
            }
        }
        if dialect.facts().honours_range {
            assert_eq!(ranged.status, 206, "{dialect}");
            assert_eq!(ranged.bytes, whole.bytes[..100]);
            assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        } else {
            assert_eq!(ranged.status, 200, "{dialect}: Range ignored");
            assert_eq!(ranged.bytes, whole.bytes);
            assert_eq!(ranged.header("accept-ranges"), None);
        }
    }
}

#[tokio::test]
async fn content_while_rendering_and_unknown_ids_answer_per_dialect() {
    for dialect in ALL_DIALECTS {
        let server = Server::with(fast().dialect(dialect).render_time(Duration::from_secs(30)));
        let id = server.create("slow").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let early = server.content(&id, None, None).await;
        let (missing_status, missing) = call(server.get("/videos/video_0000")).await;
        let unknown_content = server.content("video_0000", None, None).await;
        match dialect {
            Dialect::Openai => {
                assert_eq!(early.status, 400);
                assert_eq!(early.json()["error"]["code"], "video_not_ready");
                assert_eq!(missing_status, 404);
                assert_eq!(missing["error"]["param"], "id", "{missing}");
            }
            Dialect::Sglang | Dialect::VllmOmni => {
                assert_eq!(early.status, 404, "{dialect}");
                assert_eq!(
                    early.json(),
                    json!({"detail": "Generation is still in-progress"})
                );
                assert_eq!(
                    (missing_status, missing),
                    (404, json!({"detail": "Video not found"}))
                );
            }
            Dialect::Litellm => {
                assert_eq!(early.status, 400);
                let error = &early.json()["error"];
                assert_eq!(error["code"], "400");
                assert!(
                    error["message"]
                        .as_str()
                        .unwrap()
                        .contains("video_not_ready"),
                    "{error}"
                );
                // Not a LiteLLM id: sent to api.openai.com, which fails.
                assert_eq!(missing_status, 500, "{missing}");
                let unknown = dialect_unknown_litellm_id();
                let (status, body) = call(server.get(&format!("/videos/{unknown}"))).await;
                assert_eq!(status, 404, "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("litellm.NotFoundError: OpenAIException - "),
                    "{body}"
                );
            }
        }
        assert_ne!(unknown_content.status, 200);
    }
}

/// A well-formed LiteLLM id of a video nobody made.
fn dialect_unknown_litellm_id() -> String {
    sandbox::dialect::litellm_id("video_ffffffffffffffffffffffffffffffff", "sora-2")
}

#[tokio::test]
async fn failed_jobs_read_like_each_server() {
    for dialect in ALL_DIALECTS {
        let server = Server::with(
            fast()
                .dialect(dialect)
                .faults(FaultConfig::default().moderation(render_sandbox::Trigger::always())),
        );
        let id = server.create("refused").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let video = server.finished(&id).await;
        assert_eq!(video["status"], "failed");
        let (status, _) = call(server.get(&format!("/videos/{id}"))).await;
        let content = server.content(&id, None, None).await;
        match dialect {
            Dialect::Openai | Dialect::Litellm => {
                assert_eq!(status, 200);
                assert_eq!(video["error"]["code"], "moderation_blocked");
                assert_eq!(content.status, 400);
            }
            Dialect::Sglang => {
                assert_eq!(status, 200);
                let error = video["error"].as_object().unwrap();
                assert!(error.contains_key("message") && !error.contains_key("code"));
                assert_eq!(
                    (content.status, content.json()),
                    (404, json!({"detail": "Video variant None not found"}))
                );
            }
            Dialect::VllmOmni => {
                assert_eq!(status, 500, "a failed job answers its code");
                assert_eq!(video["error"]["code"], 500, "an integer code");
                assert_eq!(content.status, 422);
            }
        }
    }
}

#[tokio::test]
async fn list_and_delete_per_dialect() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(
                server.create(&format!("take {n}")).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let (status, list) = call(server.get("/videos")).await;
        if dialect.facts().lists_videos {
            assert_eq!(status, 200, "{dialect}: {list}");
            assert_eq!(list["object"], "list");
            assert_eq!(list["data"].as_array().unwrap().len(), 3);
            assert_eq!(list["first_id"], ids[2].as_str(), "newest first");
        } else {
            assert_eq!(status, 400, "{dialect}: {list}");
            assert_eq!(list["error"]["code"], "400");
        }
        let (status, deleted) = call(server.delete(&format!("/videos/{}", ids[0]))).await;
        match dialect {
            Dialect::Litellm => {
                assert_eq!(
                    (status, deleted),
                    (405, json!({"detail": "Method Not Allowed"}))
                );
                continue;
            }
            Dialect::Sglang => {
                assert_eq!(status, 200);
                assert_eq!(deleted["status"], "deleted", "{deleted}");
                assert_eq!(deleted["id"], ids[0].as_str());
            }
            Dialect::Openai | Dialect::VllmOmni => {
                assert_eq!(status, 200);
                assert_eq!(deleted["object"], "video.deleted");
                assert_eq!(deleted["deleted"], true);
            }
        }
        let (status, _) = call(server.get(&format!("/videos/{}", ids[0]))).await;
        assert_eq!(status, 404, "{dialect}");
    }
    // FastAPI validates list queries with a 422.
    let server = Server::start(Dialect::Sglang);
    let (status, body) = call(server.get("/videos?limit=0&order=sideways")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"].as_array().unwrap().len(), 2);
    let server = Server::start(Dialect::VllmOmni);
    for n in 0..25 {
        server.create(&format!("take {n}")).await;
    }
    let (_, all) = call(server.get("/videos")).await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        25,
        "no limit lists all"
    );
    assert_eq!(all["has_more"], false);
}

#[tokio::test]
async fn deleting_aborts_a_render_only_where_the_server_does() {
    for dialect in [Dialect::Sglang, Dialect::VllmOmni] {
        let render = Duration::from_millis(400);
        let server = Server::with(fast().dialect(dialect).concurrency(1).render_time(render));
        let first = server.create("first").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = call(server.delete(&format!("/videos/{first}"))).await;
        assert_eq!(status, 200);
        let started = Instant::now();
        let second = server.create("second").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        server.finished(&second).await;
        let waited = started.elapsed();
        if dialect.facts().delete_aborts {
            assert!(
                waited < render + Duration::from_millis(250),
                "{dialect}: {waited:?}"
            );
        } else {
            // The deleted job kept the GPU: the second waited for it.
            assert!(
                waited >= render + Duration::from_millis(250),
                "{dialect}: {waited:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_restart_forgets_every_video() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let done = server.create("before").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        server.finished(&done).await;
        let pending = server.create("during").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let forgotten = match dialect {
            // Through the harness endpoint, as a script would.
            Dialect::Sglang => {
                let url = format!("{}/sandbox/restart", server.sandbox.root_url());
                let (status, body) = call(server.http.post(url)).await;
                assert_eq!(status, 200, "{body}");
                body["forgotten"].as_u64().unwrap() as usize
            }
            _ => server.sandbox.restart(),
        };
        assert_eq!(forgotten, 2, "{dialect}");
        for id in [&done, &pending] {
            let (status, body) = call(server.get(&format!("/videos/{id}"))).await;
            assert_eq!(status, 404, "{dialect}: {body}");
            let content = server.content(id, None, None).await;
            assert_eq!(content.status, 404, "{dialect}");
        }
        if dialect == Dialect::Sglang {
            let (_, body) = call(server.get(&format!("/videos/{done}"))).await;
            assert_eq!(body, json!({"detail": "Video not found"}));
            let (_, list) = call(server.get("/videos")).await;
            assert_eq!(list["data"], json!([]));
        }
        assert_eq!(server.sandbox.stats().restarts, 1);
        // New work goes on after a restart.
        let after = server.create("after").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(server.finished(&after).await["status"], "completed");
    }
}

#[tokio::test]
async fn the_not_found_fault_answers_in_the_dialects_shape() {
    for dialect in ALL_DIALECTS {
        let server = Server::start(dialect);
        let id = server.create("flaky").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        server.finished(&id).await;
        let spec = sandbox::faults::parse_rule("GET /v1/videos/*: not_found nth=1").unwrap();
        server
            .sandbox
            .set_faults(FaultConfig::default().rule(spec))
            .unwrap();
        let (status, body) = call(server.get(&format!("/videos/{id}"))).await;
        assert_eq!(status, 404, "{dialect}: {body}");
        match dialect {
            Dialect::Openai => assert_eq!(body["error"]["param"], "id"),
            Dialect::Sglang | Dialect::VllmOmni => {
                assert_eq!(body, json!({"detail": "Video not found"}))
            }
            Dialect::Litellm => {
                assert_eq!(body["error"]["code"], "404");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("litellm.NotFoundError")
                );
            }
        }
        let (status, _) = call(server.get(&format!("/videos/{id}"))).await;
        assert_eq!(status, 200, "{dialect}: only the first");
        assert_eq!(server.sandbox.stats().faults_injected["not_found"], 1);
    }
    // A rate over many live videos, and other faults in FastAPI's shape.
    let server = Server::start(Dialect::Sglang);
    let id = server.create("flaky").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    server
        .sandbox
        .set_faults(
            FaultConfig::default()
                .rule(FaultRule::new("GET /v1/videos/*", Fault::NotFound).rate(0.2))
                .rule(FaultRule::new(
                    "GET /v1/models",
                    Fault::ServerError { status: 503 },
                )),
        )
        .unwrap();
    let mut misses = 0;
    for _ in 0..100 {
        let (status, _) = call(server.get(&format!("/videos/{id}"))).await;
        misses += usize::from(status == 404);
    }
    assert!((8..=35).contains(&misses), "{misses}");
    let (status, body) = call(server.get("/models")).await;
    assert_eq!(status, 503);
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn direct_jobs_queue_for_the_render_slots_and_busy_time_is_counted() {
    let render = Duration::from_millis(400);
    for dialect in ALL_DIALECTS {
        let server = Server::with(fast().dialect(dialect).concurrency(2).render_time(render));
        let started = Instant::now();
        let mut ids = Vec::new();
        for n in 0..4 {
            ids.push(
                server.create(&format!("shot {n}")).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut statuses = Vec::new();
        for id in &ids {
            let (_, video) = call(server.get(&format!("/videos/{id}"))).await;
            statuses.push(video["status"].as_str().unwrap().to_string());
        }
        assert_eq!(
            statuses,
            ["in_progress", "in_progress", "queued", "queued"],
            "{dialect}"
        );
        for id in &ids {
            assert_eq!(server.finished(id).await["status"], "completed");
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= render * 2, "two rounds of two: {elapsed:?}");
        let stats = server.sandbox.stats();
        assert_eq!(stats.render_slots, 2);
        assert_eq!(stats.peak_renders, 2, "{dialect}");
        let busy = stats.render_busy_ms;
        assert!(
            (1_590..=1_610).contains(&busy),
            "{dialect}: 4 × 400 ms, got {busy}"
        );
        let first = stats.first_create_ms.unwrap();
        let last = stats.last_finish_ms.unwrap();
        assert!(last >= first + 800, "{dialect}: {first}..{last}");
        assert!(last <= started.elapsed().as_millis() as u64 + 1_000);
        let utilisation = stats.utilisation().unwrap();
        assert!(
            (0.5..=1.0).contains(&utilisation),
            "{dialect}: {utilisation}"
        );
        // The same figures over HTTP.
        let url = format!("{}/sandbox/stats", server.sandbox.root_url());
        let (_, over_http) = call(server.http.get(url)).await;
        assert_eq!(over_http["render_busy_ms"], busy);
        assert_eq!(over_http["render_slots"], 2);
        assert_eq!(over_http["first_create_ms"], first);
    }
}

#[tokio::test]
async fn the_cli_speaks_the_dialect_it_is_given() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_render"))
        .args(["sandbox", "--dialect", "sglang", "--render-time", "10ms"])
        .args(["--served-model", "sora-2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the render binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("a first line");
    let base = first.trim().to_string();
    let http = client();
    let (files, body) = call(http.get(format!("{base}/files"))).await;
    let (models, listed) = call(http.get(format!("{base}/models"))).await;
    let (created, video) = call(
        http.post(format!("{base}/videos"))
            .json(&json!({"prompt": "cli"})),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((files, body), (404, json!({"detail": "Not Found"})));
    assert_eq!(models, 200);
    assert_eq!(listed["data"][0]["id"], "sora-2");
    assert_eq!(created, 200, "{video}");
    assert!(is_uuid4(video["id"].as_str().unwrap()), "{video}");
    assert_eq!(video["model"], "sora-2");
    let bad = Command::new(env!("CARGO_BIN_EXE_render"))
        .args(["sandbox", "--dialect", "vllm"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
