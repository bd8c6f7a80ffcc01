//! The Batch API of the sandbox: creation checks, input validation, the status machine on the
//! virtual clock, output and error files, cancel, expiry, and batch faults.

mod common;

use common::sandbox as support;

use std::collections::BTreeMap;
use std::time::Duration;

use render_sandbox::{FaultConfig, Trigger};
use serde_json::{Value, json};
use support::{Api, DAY, call, fast, line, prompt};

fn by_custom_id(lines: Vec<Value>) -> BTreeMap<String, Value> {
    lines
        .into_iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_string(), l))
        .collect()
}

#[tokio::test]
async fn a_batch_runs_to_completed_with_output_and_error_files() {
    let api = Api::start(fast());
    let created = api
        .batch(&[
            line("a", prompt("a lighthouse at dusk")),
            line("b", json!({"model": "sora-2-pro", "prompt": "dunes", "size": "1920x1080", "seconds": "20"})),
            line("c", json!({"model": "sora-2", "prompt": "a harbour", "size": "1920x1080", "seconds": "4"})),
        ])
        .await;
    assert_eq!(created["status"], "validating");
    assert_eq!(created["object"], "batch");
    assert_eq!(created["endpoint"], "/v1/videos");
    assert_eq!(created["completion_window"], "24h");
    let created_at = created["created_at"].as_i64().unwrap();
    assert_eq!(created["expires_at"].as_i64().unwrap(), created_at + DAY);
    assert!(created["output_file_id"].is_null() && created["error_file_id"].is_null());

    let batch = api.finished_batch(created["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 3, "completed": 2, "failed": 1})
    );
    let stamp = |k: &str| {
        batch[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} is set: {batch}"))
    };
    assert!(created_at <= stamp("in_progress_at"));
    assert!(stamp("in_progress_at") <= stamp("finalizing_at"));
    assert!(stamp("finalizing_at") <= stamp("completed_at"));
    assert!(
        batch["failed_at"].is_null()
            && batch["expired_at"].is_null()
            && batch["cancelled_at"].is_null()
    );

    let output = by_custom_id(
        api.jsonl_file(batch["output_file_id"].as_str().unwrap())
            .await,
    );
    assert_eq!(output.keys().collect::<Vec<_>>(), ["a", "b"]);
    for (custom_id, out) in &output {
        assert!(
            out["id"].as_str().unwrap().starts_with("batch_req_"),
            "{out}"
        );
        assert!(out["error"].is_null());
        assert_eq!(out["response"]["status_code"], 200);
        assert!(
            out["response"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req_")
        );
        let video = &out["response"]["body"];
        assert_eq!(video["object"], "video");
        assert_eq!(video["status"], "completed", "{custom_id}");
        assert_eq!(
            video["completed_at"].as_i64(),
            Some(stamp("completed_at")),
            "delivered when the batch completes"
        );
        assert_eq!(
            video["expires_at"].as_i64().unwrap() - video["completed_at"].as_i64().unwrap(),
            DAY
        );
        let (status, live) =
            call(api.get(&format!("/videos/{}", video["id"].as_str().unwrap()))).await;
        assert_eq!((status, &live), (200, video));
    }
    assert_eq!(output["b"]["response"]["body"]["size"], "1920x1080");
    assert_eq!(output["b"]["response"]["body"]["seconds"], "20");

    let errors = api
        .jsonl_file(batch["error_file_id"].as_str().unwrap())
        .await;
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(error["custom_id"], "c");
    assert!(error["error"].is_null());
    assert_eq!(error["response"]["status_code"], 400);
    let body = &error["response"]["body"]["error"];
    assert_eq!(body["type"], "invalid_request_error");
    assert_eq!(body["param"], "size");
    assert_eq!(body["code"], "invalid_value");
    assert!(
        body["message"].as_str().unwrap().contains("1920x1080"),
        "{body}"
    );

    let output_file = call(api.get(&format!(
        "/files/{}",
        batch["output_file_id"].as_str().unwrap()
    )))
    .await
    .1;
    assert_eq!(output_file["purpose"], "batch_output");
    let stats = api.sandbox.stats();
    assert_eq!((stats.batches_created, stats.videos_created), (1, 2));
    assert_eq!(
        stats.files_uploaded.get("batch_output"),
        None,
        "outputs are not uploads"
    );
}

#[tokio::test]
async fn metadata_and_creation_parameters_are_checked() {
    let api = Api::start(fast());
    let input = api
        .upload(
            "in.jsonl",
            support::jsonl(&[line("a", prompt("x"))]).into_bytes(),
            "batch",
        )
        .await;
    let image = api.upload("ref.png", vec![1, 2, 3], "vision").await;
    let id = input["id"].as_str().unwrap();
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            400,
            Some("endpoint"),
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/videos", "completion_window": "48h"}),
            400,
            Some("completion_window"),
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/videos"}),
            400,
            Some("completion_window"),
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/videos", "completion_window": "24h", "metadata": many}),
            400,
            Some("metadata"),
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/videos", "completion_window": "24h", "metadata": {"k".repeat(65): "v"}}),
            400,
            Some("metadata"),
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/videos", "completion_window": "24h", "metadata": {"k": "v".repeat(513)}}),
            400,
            Some("metadata"),
        ),
        (
            json!({"input_file_id": "file-nope", "endpoint": "/v1/videos", "completion_window": "24h"}),
            404,
            Some("id"),
        ),
        (
            json!({"input_file_id": image["id"], "endpoint": "/v1/videos", "completion_window": "24h"}),
            400,
            Some("input_file_id"),
        ),
    ];
    for (body, status, param) in cases {
        let (got, answer) = call(api.post("/batches").json(&body)).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(answer["error"]["param"].as_str(), param, "{answer}");
    }
    let sixteen: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("k{i}"), json!("v".repeat(512))))
        .collect();
    let (status, batch) = call(api.post("/batches").json(
        &json!({"input_file_id": id, "endpoint": "/v1/videos", "completion_window": "24h", "metadata": sixteen}),
    ))
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["metadata"].as_object().unwrap().len(), 16);
    let (status, _) = call(api.get("/batches/batch_nope")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_invalid_input_file_fails_the_batch_with_line_errors() {
    let api = Api::start(fast());
    let text = [
        line("a", prompt("ok")).to_string(),
        "{not json".to_string(),
        line("a", prompt("again")).to_string(),
        json!({"custom_id": "d", "method": "POST", "url": "/v1/images", "body": {}}).to_string(),
    ]
    .join("\n");
    let file = api.upload("bad.jsonl", text.into_bytes(), "batch").await;
    let (_, created) = call(api.post("/batches").json(
        &json!({"input_file_id": file["id"], "endpoint": "/v1/videos", "completion_window": "24h"}),
    ))
    .await;
    let batch = api.finished_batch(created["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "failed");
    assert!(batch["failed_at"].as_i64().is_some());
    assert!(batch["output_file_id"].is_null() && batch["error_file_id"].is_null());
    assert_eq!(batch["errors"]["object"], "list");
    let errors: Vec<(i64, &str)> = batch["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (2, "invalid_json_line"),
            (3, "duplicate_custom_id"),
            (4, "invalid_url")
        ]
    );
}

#[tokio::test]
async fn request_and_byte_limits_are_configurable() {
    let api = Api::start(fast().max_batch_requests(2));
    let three: Vec<Value> = (0..3).map(|i| line(&i.to_string(), prompt("x"))).collect();
    let batch = api.batch(&three).await;
    let batch = api.finished_batch(batch["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "too_many_tasks");
    let two = api.batch(&three[..2]).await;
    assert_eq!(
        api.finished_batch(two["id"].as_str().unwrap()).await["status"],
        "completed"
    );

    let small = Api::start(fast().max_batch_bytes(100));
    let batch = small.batch(&three).await;
    let batch = small.finished_batch(batch["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "file_too_large");
}

#[tokio::test]
async fn cancel_moves_through_cancelling_to_cancelled() {
    let api = Api::start(fast().render_time(Duration::from_secs(5)).concurrency(1));
    let lines: Vec<Value> = (0..3)
        .map(|i| line(&i.to_string(), prompt("slow")))
        .collect();
    let batch = api.batch(&lines).await;
    let id = batch["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, cancelling) = call(api.post(&format!("/batches/{id}/cancel"))).await;
    assert_eq!(status, 200, "{cancelling}");
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancelling_at"].as_i64().is_some());
    api.sandbox.advance_clock(7_300); // the render in flight finishes
    let done = api.finished_batch(id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(done["cancelled_at"].as_i64().unwrap() >= done["cancelling_at"].as_i64().unwrap());
    assert_eq!(
        done["request_counts"]["completed"], 1,
        "only the request in flight ran: {done}"
    );
    let (status, again) = call(api.post(&format!("/batches/{id}/cancel"))).await;
    assert_eq!(status, 400, "{again}");
}

#[tokio::test]
async fn a_batch_not_done_within_24_hours_expires() {
    // One render at a time, each 2 s real = 48 virtual minutes: 40 renders need 32 hours.
    let api = Api::start(fast().render_time(Duration::from_secs(2)).concurrency(1));
    let lines: Vec<Value> = (0..40)
        .map(|i| line(&format!("s{i}"), prompt("slow")))
        .collect();
    let batch = api.batch(&lines).await;
    let id = batch["id"].as_str().unwrap();
    api.sandbox.advance_clock(DAY as u64 + 60);
    let done = api.finished_batch(id).await;
    assert_eq!(done["status"], "expired", "{done}");
    assert_eq!(done["expired_at"], done["expires_at"]);
    let finished = done["request_counts"]["completed"].as_u64().unwrap();
    assert!((25..=35).contains(&finished), "{done}");
    let output = api
        .jsonl_file(done["output_file_id"].as_str().unwrap())
        .await;
    let errors = api
        .jsonl_file(done["error_file_id"].as_str().unwrap())
        .await;
    assert_eq!(output.len() as u64, finished);
    assert_eq!(output.len() + errors.len(), 40);
    for error in &errors {
        assert!(error["response"].is_null(), "{error}");
        assert_eq!(error["error"]["code"], "batch_expired");
    }
}

#[tokio::test]
async fn injected_faults_expire_batches_and_fail_requests() {
    let faults = FaultConfig::default().batch_expire(Trigger::nth([1]));
    let api = Api::start(fast().concurrency(1).faults(faults));
    let lines: Vec<Value> = (0..4)
        .map(|i| line(&format!("s{i}"), prompt("x")))
        .collect();
    let doomed = api.batch(&lines).await;
    let doomed = api.finished_batch(doomed["id"].as_str().unwrap()).await;
    assert_eq!(doomed["status"], "expired", "{doomed}");
    assert_eq!(doomed["request_counts"]["completed"], 2);
    let spared = api.batch(&lines).await;
    assert_eq!(
        api.finished_batch(spared["id"].as_str().unwrap()).await["status"],
        "completed"
    );

    let faults = FaultConfig::default()
        .batch_request_failure(Trigger::nth([2]))
        .moderation(Trigger::nth([1]));
    api.sandbox.set_faults(faults).unwrap();
    let batch = api.batch(&lines[..3]).await;
    let batch = api.finished_batch(batch["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 3, "completed": 1, "failed": 2})
    );
    let mut codes: Vec<(u64, String)> = api
        .jsonl_file(batch["error_file_id"].as_str().unwrap())
        .await
        .iter()
        .map(|e| {
            let error = &e["response"]["body"]["error"];
            let code = error["code"]
                .as_str()
                .or(error["type"].as_str())
                .unwrap()
                .to_string();
            (e["response"]["status_code"].as_u64().unwrap(), code)
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            (400, "moderation_blocked".to_string()),
            (500, "server_error".to_string())
        ]
    );
    let stats = api.sandbox.stats();
    for kind in ["batch_expire", "batch_request_failure", "moderation"] {
        assert_eq!(
            stats.faults_injected.get(kind),
            Some(&1),
            "{kind}: {stats:?}"
        );
    }
}

#[tokio::test]
async fn blocklisted_prompts_fail_as_moderation_in_the_error_file() {
    let api = Api::start(fast());
    let batch = api
        .batch(&[
            line("ok", prompt("a kite")),
            line("vader", prompt("Darth Vader at the beach")),
        ])
        .await;
    let batch = api.finished_batch(batch["id"].as_str().unwrap()).await;
    let errors = api
        .jsonl_file(batch["error_file_id"].as_str().unwrap())
        .await;
    assert_eq!(errors[0]["custom_id"], "vader");
    assert_eq!(
        errors[0]["response"]["body"]["error"]["code"],
        "moderation_blocked"
    );
    assert_eq!(
        errors[0]["response"]["body"]["error"]["message"],
        "Your request was blocked by our moderation system."
    );
}

#[tokio::test]
async fn batches_list_newest_first_and_page() {
    let api = Api::start(fast());
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            api.batch(&[line("a", prompt(&format!("take {i}")))]).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (_, first) = call(api.get("/batches").query(&[("limit", "2")])).await;
    let page: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(first["has_more"], true);
    let (_, rest) = call(
        api.get("/batches")
            .query(&[("limit", "2"), ("after", ids[1].as_str())]),
    )
    .await;
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
}
