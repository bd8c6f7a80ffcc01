//! The Files API of the sandbox: upload, retrieve, list, delete, download; auth; stats.

mod common;

use common::sandbox as support;

use render_wire::key::Sha256Hex;
use serde_json::Value;
use support::{Api, DAY, call, fast};

#[tokio::test]
async fn upload_retrieve_download_and_delete_a_file() {
    let api = Api::start(fast());
    let bytes = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    let file = api.upload("ref.png", bytes.clone(), "vision").await;
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "vision");
    assert_eq!(file["bytes"], bytes.len() as u64);
    assert_eq!(file["filename"], "ref.png");
    assert_eq!(file["status"], "processed");
    assert!(
        file["expires_at"].is_null(),
        "vision files do not expire: {file}"
    );
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"));

    let (status, again) = call(api.get(&format!("/files/{id}"))).await;
    assert_eq!((status, &again), (200, &file));
    let content = api
        .get(&format!("/files/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().to_vec(), bytes);

    let (status, deleted) = call(api.delete(&format!("/files/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    let (status, missing) = call(api.get(&format!("/files/{id}"))).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "invalid_request_error");
    let (status, _) = call(api.get(&format!("/files/{id}/content"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn batch_files_expire_after_thirty_days_unless_told_otherwise() {
    let api = Api::start(fast());
    let default = api.upload("a.jsonl", b"{}\n".to_vec(), "batch").await;
    let created = default["created_at"].as_i64().unwrap();
    assert_eq!(default["expires_at"].as_i64().unwrap(), created + 30 * DAY);

    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .text("expires_after[anchor]", "created_at")
        .text("expires_after[seconds]", "3600")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"{}\n".to_vec()).file_name("b.jsonl"),
        );
    let (status, short) = call(api.post("/files").multipart(form)).await;
    assert_eq!(status, 200, "{short}");
    let id = short["id"].as_str().unwrap();
    assert_eq!(
        short["expires_at"].as_i64().unwrap(),
        short["created_at"].as_i64().unwrap() + 3600
    );

    api.sandbox.advance_clock(3_700);
    let (status, _) = call(api.get(&format!("/files/{id}"))).await;
    assert_eq!(status, 404, "an expired file answers as unknown");
}

#[tokio::test]
async fn uploads_are_checked_like_the_real_service() {
    let api = Api::start(fast());
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 4] = [
        ("x.jsonl", "weights", vec![], "purpose"),
        ("notes.txt", "batch", vec![], "file"),
        (
            "x.jsonl",
            "batch",
            vec![
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "60"),
            ],
            "expires_after[seconds]",
        ),
        (
            "x.jsonl",
            "batch",
            vec![
                ("expires_after[anchor]", "last_active_at"),
                ("expires_after[seconds]", "3600"),
            ],
            "expires_after[anchor]",
        ),
    ];
    for (filename, purpose, extra, param) in cases {
        let mut form = reqwest::multipart::Form::new().text("purpose", purpose.to_string());
        for (k, v) in extra {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(b"{}".to_vec()).file_name(filename.to_string()),
        );
        let (status, body) = call(api.post("/files").multipart(form)).await;
        assert_eq!(status, 400, "{filename} {purpose}: {body}");
        if param != "file" {
            assert_eq!(body["error"]["param"], param, "{body}");
        }
    }
    let form = reqwest::multipart::Form::new().text("purpose", "vision");
    let (status, body) = call(api.post("/files").multipart(form)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("missing_required_parameter"))
    );
}

#[tokio::test]
async fn lists_page_with_after_and_limit_and_filter_by_purpose() {
    let api = Api::start(fast());
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i % 2 == 0 { "vision" } else { "user_data" };
        ids.push(
            api.upload(&format!("{i}.png"), vec![i as u8; 8], purpose)
                .await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2".to_string()), ("order", "asc".to_string())];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let (status, page) = call(api.get("/files").query(&query)).await;
        assert_eq!(status, 200);
        assert_eq!(page["object"], "list");
        let data: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(page["first_id"].as_str(), data.first().map(String::as_str));
        assert_eq!(page["last_id"].as_str(), data.last().map(String::as_str));
        seen.extend(data);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = page["last_id"].as_str().map(str::to_string);
    }
    assert_eq!(seen, ids);

    let (_, newest_first) = call(api.get("/files")).await;
    assert_eq!(newest_first["data"][0]["id"], ids[4].as_str());
    let (_, vision) = call(api.get("/files").query(&[("purpose", "vision")])).await;
    let vision: Vec<&str> = vision["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(vision, [ids[4].as_str(), ids[2].as_str(), ids[0].as_str()]);
    let (status, _) = call(api.get("/files").query(&[("limit", "0")])).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_with_the_real_body() {
    let api = Api::start(fast());
    let (status, body) = call(api.http.get(api.url("/files"))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (status, body) = call(
        api.http
            .get(api.url("/files"))
            .bearer_auth("sk-wrong-key-9999"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sk-***9999"),
        "{body}"
    );
    assert!(
        !body["error"]["message"].as_str().unwrap().contains("wrong"),
        "the key is masked: {body}"
    );

    let any = Api::start(render_sandbox::SandboxConfig::default());
    let (status, _) = call(any.http.get(any.url("/files")).bearer_auth("anything")).await;
    assert_eq!(
        status, 200,
        "without --api-key any non-empty key is accepted"
    );
    let (status, _) = call(
        any.http
            .get(any.url("/files"))
            .header("authorization", "Bearer "),
    )
    .await;
    assert_eq!(status, 401);
    let (status, stats) = call(any.http.get(any.harness("/sandbox/stats"))).await;
    assert_eq!(status, 200, "the harness needs no key: {stats}");
}

#[tokio::test]
async fn stats_count_uploads_by_purpose_with_their_digests() {
    let api = Api::start(fast());
    api.upload("a.png", b"same bytes".to_vec(), "vision").await;
    api.upload("b.png", b"same bytes".to_vec(), "vision").await;
    api.upload("c.jsonl", b"{}\n".to_vec(), "batch").await;
    let stats = api.sandbox.stats();
    assert_eq!(stats.files_uploaded["vision"], 2);
    assert_eq!(stats.files_uploaded["batch"], 1);
    let same = Sha256Hex::of(b"same bytes").hex();
    assert_eq!(
        stats.uploaded_sha256,
        [same.clone(), same, Sha256Hex::of(b"{}\n").hex()]
    );
    assert_eq!(stats.requests_with("POST /v1/files", 200), 3);

    let (_, over_http) = call(api.http.get(api.harness("/sandbox/stats"))).await;
    let parsed: render_sandbox::Stats = serde_json::from_value(over_http).unwrap();
    assert_eq!(parsed.files_uploaded, stats.files_uploaded);
    assert_eq!(parsed.uploaded_sha256, stats.uploaded_sha256);
}

#[tokio::test]
async fn unknown_paths_answer_in_the_api_shape() {
    let api = Api::start(fast());
    let (status, body) = call(api.get("/assistants")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "Invalid URL (GET /v1/assistants)");
    assert!(matches!(body["error"]["param"], Value::Null));
}
