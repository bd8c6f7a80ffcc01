//! The Videos API of the sandbox: create (JSON and multipart), retrieve, list, delete, content
//! downloads (streamed, ranged, expiring), virtual time and reproducible bytes.

mod common;

use common::sandbox as support;

use std::time::Duration;

use render_sandbox::{FaultConfig, Trigger};
use render_wire::key::Sha256Hex;
use serde_json::json;
use support::{Api, DAY, call, fast, line, prompt};

/// The first bytes of a PNG: enough for the sandbox to read its type and size.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bytes.extend(width.to_be_bytes());
    bytes.extend(height.to_be_bytes());
    bytes.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

async fn download(api: &Api, id: &str, variant: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = api
        .get(&format!("/videos/{id}/content"))
        .query(&[("variant", variant)]);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("the sandbox answers")
}

#[tokio::test]
async fn a_video_is_queued_rendered_and_completed() {
    let api = Api::start(fast());
    let video = api.create_video(json!({"prompt": "a lighthouse", "model": "sora-2-pro", "size": "1792x1024", "seconds": "12"})).await;
    assert_eq!(video["object"], "video");
    assert_eq!(video["status"], "queued");
    assert_eq!(video["progress"], 0);
    assert_eq!(
        (&video["model"], &video["size"], &video["seconds"]),
        (&json!("sora-2-pro"), &json!("1792x1024"), &json!("12"))
    );
    assert!(video["id"].as_str().unwrap().starts_with("video_"));
    let done = api.finished_video(video["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["progress"], 100);
    assert_eq!(
        done["expires_at"].as_i64().unwrap() - done["completed_at"].as_i64().unwrap(),
        DAY
    );
    assert!(done["completed_at"].as_i64().unwrap() >= done["created_at"].as_i64().unwrap());
    assert_eq!(api.sandbox.stats().videos_created, 1);
}

#[tokio::test]
async fn progress_advances_with_the_virtual_clock() {
    let api = Api::start(fast().render_time(Duration::from_secs(30)));
    let video = api.create_video(json!({"prompt": "slow"})).await;
    let id = video["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (_, early) = call(api.get(&format!("/videos/{id}"))).await;
    assert_eq!(early["status"], "in_progress", "{early}");
    api.sandbox.advance_clock(21_600); // half of the 43,200 virtual seconds of this render
    let (_, half) = call(api.get(&format!("/videos/{id}"))).await;
    let progress = half["progress"].as_u64().unwrap();
    assert!((45..=60).contains(&progress), "{half}");
    let (status, not_ready) = call(api.get(&format!("/videos/{id}/content"))).await;
    assert_eq!(status, 400, "{not_ready}");
    api.sandbox.advance_clock(21_600);
    let (_, done) = call(api.get(&format!("/videos/{id}"))).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn requests_are_checked_against_the_catalog_and_the_policy() {
    let api = Api::start(fast());
    let cases = [
        (
            json!({"prompt": "x", "model": "sora-3"}),
            "model",
            "invalid_value",
        ),
        (
            json!({"prompt": "x", "model": "sora-2", "size": "1920x1080"}),
            "size",
            "invalid_value",
        ),
        (
            json!({"prompt": "x", "seconds": "7"}),
            "seconds",
            "invalid_value",
        ),
        (json!({"prompt": "   "}), "prompt", "empty_string"),
        (
            json!({"prompt": "x".repeat(4001)}),
            "prompt",
            "string_above_max_length",
        ),
        (
            json!({"prompt": "x", "input_reference": {"file_id": "file-none"}}),
            "input_reference",
            "invalid_value",
        ),
    ];
    for (body, param, code) in cases {
        let (status, answer) = call(api.post("/videos").json(&body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["param"], param, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    let (status, answer) = call(
        api.post("/videos")
            .json(&json!({"prompt": "Taylor Swift on a tram"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "moderation_blocked");
    let (status, _) = call(
        api.post("/videos")
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(api.sandbox.stats().videos_created, 0);
}

#[tokio::test]
async fn multipart_creates_take_a_reference_image_of_the_right_size() {
    let api = Api::start(fast());
    let form = |image: Vec<u8>| {
        reqwest::multipart::Form::new()
            .text("prompt", "first frame given")
            .text("size", "1280x720")
            .part(
                "input_reference",
                reqwest::multipart::Part::bytes(image)
                    .file_name("ref.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
    };
    let (status, video) = call(api.post("/videos").multipart(form(png_header(1280, 720)))).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["size"], "1280x720");
    let (status, wrong) = call(api.post("/videos").multipart(form(png_header(720, 1280)))).await;
    assert_eq!(
        (status, wrong["error"]["param"].as_str()),
        (400, Some("input_reference")),
        "{wrong}"
    );
    let (status, text) = call(api.post("/videos").multipart(form(b"plain text".to_vec()))).await;
    assert_eq!(
        (status, text["error"]["code"].as_str()),
        (400, Some("unsupported_file"))
    );

    let file = api.upload("ref.png", png_header(720, 1280), "vision").await;
    let by_id = reqwest::multipart::Form::new()
        .text("prompt", "by id")
        .text(
            "input_reference[file_id]",
            file["id"].as_str().unwrap().to_string(),
        );
    let (status, video) = call(api.post("/videos").multipart(by_id)).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["size"], "720x1280");
}

#[tokio::test]
async fn videos_list_page_and_delete() {
    let api = Api::start(fast());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.create_video(json!({"prompt": format!("take {i}")}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2".to_string())];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let (_, page) = call(api.get("/videos").query(&query)).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string()),
        );
        if page["has_more"] == false {
            break;
        }
        after = page["last_id"].as_str().map(str::to_string);
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (status, deleted) = call(api.delete(&format!("/videos/{}", ids[0]))).await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": ids[0], "object": "video.deleted", "deleted": true})
    );
    let (status, _) = call(api.get(&format!("/videos/{}", ids[0]))).await;
    assert_eq!(status, 404);
    let (_, asc) = call(api.get("/videos").query(&[("order", "asc")])).await;
    assert_eq!(asc["data"][0]["id"], ids[1].as_str());
    assert_eq!(asc["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn content_streams_every_variant_with_ranges() {
    let bytes = 3 * 1024 * 1024 + 17;
    let api = Api::start(fast().video_bytes(bytes));
    let video = api.create_video(json!({"prompt": "a long take"})).await;
    let id = video["id"].as_str().unwrap();
    api.finished_video(id).await;

    let full = download(&api, id, "video", None).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.headers()["content-length"], bytes.to_string().as_str());
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let body = full.bytes().await.unwrap();
    assert_eq!(body.len() as u64, bytes);
    let digest = api.sandbox.video_digest(id).unwrap();
    assert_eq!(
        (digest.sha256, digest.bytes),
        (Sha256Hex::of(&body).hex(), bytes)
    );

    let resume = download(&api, id, "video", Some("bytes=1000000-")).await;
    assert_eq!(resume.status(), 206);
    assert_eq!(
        resume.headers()["content-range"],
        format!("bytes 1000000-{}/{bytes}", bytes - 1).as_str()
    );
    assert_eq!(resume.bytes().await.unwrap(), body.slice(1_000_000..));
    let middle = download(&api, id, "video", Some("bytes=10-19")).await;
    assert_eq!(middle.status(), 206);
    assert_eq!(middle.bytes().await.unwrap(), body.slice(10..20));
    let beyond = download(&api, id, "video", Some(&format!("bytes={bytes}-"))).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{bytes}").as_str()
    );

    let mut images = 0;
    for variant in ["thumbnail", "spritesheet"] {
        let response = download(&api, id, variant, None).await;
        assert_eq!(response.status(), 200, "{variant}");
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let jpeg = response.bytes().await.unwrap();
        assert_eq!(&jpeg[..2], b"\xFF\xD8", "{variant} is a JPEG");
        images += jpeg.len() as u64;
    }
    let (status, bad) = call(
        api.get(&format!("/videos/{id}/content"))
            .query(&[("variant", "poster")]),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["param"].as_str()),
        (400, Some("variant"))
    );

    let stats = api.sandbox.stats();
    let served = |v: &str| stats.bytes_served.get(v).copied().unwrap_or(0);
    assert_eq!(served("video"), 2 * bytes - 1_000_000 + 10);
    assert_eq!(served("thumbnail") + served("spritesheet"), images);
    assert_eq!(stats.requests_with("GET /v1/videos/{id}/content", 206), 2);
}

#[tokio::test]
async fn batch_videos_download_for_24_hours_after_the_batch_then_expire() {
    let api = Api::start(fast());
    let batch = api.batch(&[line("a", prompt("harbour"))]).await;
    let batch = api.finished_batch(batch["id"].as_str().unwrap()).await;
    let output = api
        .jsonl_file(batch["output_file_id"].as_str().unwrap())
        .await;
    let video = &output[0]["response"]["body"];
    let id = video["id"].as_str().unwrap();
    let completed = batch["completed_at"].as_i64().unwrap();
    assert_eq!(video["expires_at"].as_i64().unwrap(), completed + DAY);

    let left = completed + DAY - api.sandbox.now();
    api.sandbox.advance_clock((left - 120).max(0) as u64);
    assert_eq!(
        download(&api, id, "video", None).await.status(),
        200,
        "still inside the window"
    );
    api.sandbox.advance_clock(240);
    let (status, expired) = call(api.get(&format!("/videos/{id}/content"))).await;
    assert_eq!(status, 404);
    assert_eq!(expired["error"]["code"], "video_expired");
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired}"
    );
    let (status, _) = call(
        api.get(&format!("/videos/{id}/content"))
            .query(&[("variant", "thumbnail")]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, meta) = call(api.get(&format!("/videos/{id}"))).await;
    assert_eq!(
        (status, meta["status"].as_str()),
        (200, Some("completed")),
        "the object stays"
    );
}

#[tokio::test]
async fn the_date_header_tells_virtual_time() {
    let api = Api::start(
        fast()
            .start_time(1_000_000_000)
            .day(Duration::from_secs(3_600)),
    );
    let response = api.get("/videos").send().await.unwrap();
    let date = response.headers()["date"].to_str().unwrap().to_string();
    assert!(date.starts_with("Sun, 09 Sep 2001 01:4"), "{date}");
    api.sandbox.advance_clock(DAY as u64);
    let response = api.get("/videos").send().await.unwrap();
    let date = response.headers()["date"].to_str().unwrap().to_string();
    assert!(date.starts_with("Mon, 10 Sep 2001 01:4"), "{date}");
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn the_same_seed_replays_a_run_and_takes_differ() {
    async fn run(seed: u64) -> Vec<(String, String)> {
        let api = Api::start(fast().seed(seed));
        let mut out = Vec::new();
        for _ in 0..2 {
            let video = api.create_video(json!({"prompt": "the same shot"})).await;
            let id = video["id"].as_str().unwrap().to_string();
            api.finished_video(&id).await;
            let digest = api.sandbox.video_digest(&id).unwrap();
            out.push((id, digest.sha256));
        }
        out
    }
    let first = run(7).await;
    assert_eq!(first, run(7).await, "same seed, same ids and bytes");
    assert_ne!(first[0].1, first[1].1, "two takes of one request differ");
    assert_ne!(first, run(8).await);
    let api = Api::start(fast());
    let (status, _) = call(
        api.http
            .get(api.harness("/sandbox/videos/video_nope/digest")),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn moderation_faults_fail_direct_videos() {
    let api = Api::start(fast().faults(FaultConfig::default().moderation(Trigger::nth([1]))));
    let first = api.create_video(json!({"prompt": "a meadow"})).await;
    let failed = api.finished_video(first["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "moderation_blocked");
    let second = api.create_video(json!({"prompt": "a meadow"})).await;
    assert_eq!(
        api.finished_video(second["id"].as_str().unwrap()).await["status"],
        "completed"
    );
    assert_eq!(api.sandbox.stats().faults_injected["moderation"], 1);
}
