//! Fault injection: each HTTP fault, endpoint scoping, schedules, seeded rates, runtime changes.

mod common;

use common::sandbox as support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use render_sandbox::{Fault, FaultConfig, FaultRule};
use serde_json::json;
use support::{Api, call, fast};

const CONTENT: &str = "GET /v1/videos/*/content";

async fn completed_video(api: &Api) -> String {
    let video = api.create_video(json!({"prompt": "a quiet street"})).await;
    let id = video["id"].as_str().unwrap().to_string();
    api.finished_video(&id).await;
    id
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_only_hit_their_endpoint() {
    let faults = FaultConfig::default().rule(
        FaultRule::new(
            CONTENT,
            Fault::RateLimit {
                retry_after_ms: 1_500,
            },
        )
        .nth([1]),
    );
    let api = Api::start(fast().faults(faults));
    let id = completed_video(&api).await;
    let (status, _) = call(api.get(&format!("/videos/{id}"))).await;
    assert_eq!(status, 200, "other endpoints are untouched");
    let limited = api
        .get(&format!("/videos/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    assert_eq!(limited.headers()["retry-after-ms"], "1500");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    let ok = api
        .get(&format!("/videos/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "nth=[1] fires once");
    let stats = api.sandbox.stats();
    assert_eq!(stats.faults_injected["rate_limit"], 1);
    assert_eq!(stats.requests_with("GET /v1/videos/{id}/content", 429), 1);
    assert_eq!(stats.requests_with("GET /v1/videos/{id}/content", 200), 1);
}

#[tokio::test]
async fn an_unavailable_server_answers_503_with_retry_after() {
    let faults = FaultConfig::default().rule(
        FaultRule::new(
            "GET /v1/files",
            Fault::Unavailable {
                retry_after_ms: 2_500,
            },
        )
        .nth([1]),
    );
    let api = Api::start(fast().faults(faults));
    let busy = api.get("/files").send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "3");
    assert_eq!(busy.headers()["retry-after-ms"], "2500");
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    let (status, _) = call(api.get("/files")).await;
    assert_eq!(status, 200, "nth=[1] fires once");
    assert_eq!(api.sandbox.stats().faults_injected["unavailable"], 1);
}

#[tokio::test]
async fn server_errors_answer_500_502_503_on_schedule() {
    let faults = FaultConfig::default()
        .rule(FaultRule::new("GET /v1/files", Fault::ServerError { status: 500 }).nth([1]))
        .rule(FaultRule::new("GET /v1/files", Fault::ServerError { status: 502 }).nth([2]))
        .rule(FaultRule::new("GET /v1/files", Fault::ServerError { status: 503 }).nth([3]));
    let api = Api::start(fast().faults(faults));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = call(api.get("/files")).await;
        if status >= 500 {
            assert_eq!(body["error"]["type"], "server_error", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [500, 502, 503, 200]);
    assert_eq!(api.sandbox.stats().faults_injected["server_error"], 3);
}

#[tokio::test]
async fn a_dropped_download_can_be_resumed_with_range() {
    let bytes: u64 = 1024 * 1024;
    let faults = FaultConfig::default().rule(
        FaultRule::new(
            CONTENT,
            Fault::Drop {
                after_bytes: 300_000,
            },
        )
        .nth([1]),
    );
    let api = Api::start(fast().video_bytes(bytes).faults(faults));
    let id = completed_video(&api).await;

    let response = api
        .get(&format!("/videos/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        bytes.to_string().as_str()
    );
    let mut received = Vec::new();
    let mut stream = response.bytes_stream();
    let mut broke = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => received.extend_from_slice(&chunk),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the connection was cut mid-body");
    assert_eq!(received.len(), 300_000);

    let rest = api
        .get(&format!("/videos/{id}/content"))
        .header("range", format!("bytes={}-", received.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 206);
    received.extend_from_slice(&rest.bytes().await.unwrap());
    let digest = api.sandbox.video_digest(&id).unwrap();
    assert_eq!(
        render_wire::key::Sha256Hex::of(&received).hex(),
        digest.sha256
    );
    let stats = api.sandbox.stats();
    assert_eq!(stats.faults_injected["drop"], 1);
    assert_eq!(
        stats.bytes_served["video"], bytes,
        "only the bytes that left are counted"
    );
}

#[tokio::test]
async fn json_answers_can_be_dropped_too() {
    let faults = FaultConfig::default().rule(FaultRule::new(
        "POST /v1/batches",
        Fault::Drop { after_bytes: 0 },
    ));
    let api = Api::start(fast().faults(faults));
    let result = api.post("/batches").json(&json!({})).send().await;
    let failed = match result {
        Err(_) => true,
        Ok(response) => response.bytes().await.is_err(),
    };
    assert!(failed, "the client sees a broken connection");
    let (status, _) = call(api.get("/batches")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn slow_responses_are_late_but_whole() {
    let faults = FaultConfig::default().rule(FaultRule::new(
        "GET /v1/batches",
        Fault::Slow { delay_ms: 300 },
    ));
    let api = Api::start(fast().faults(faults));
    let start = Instant::now();
    let (status, _) = call(api.get("/videos")).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() < Duration::from_millis(250));
    let start = Instant::now();
    let (status, body) = call(api.get("/batches")).await;
    assert_eq!((status, body["object"].as_str()), (200, Some("list")));
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(api.sandbox.stats().faults_injected["slow"], 1);
}

#[tokio::test]
async fn faults_change_at_runtime_over_http() {
    let api = Api::start(fast());
    let url = api.harness("/sandbox/faults");
    let config = json!({"http": [{"endpoint": "GET /v1/videos", "fault": {"kind": "server_error", "status": 503}, "nth": [1]}]});
    let (status, echoed) = call(api.http.post(&url).json(&config)).await;
    assert_eq!(status, 200, "{echoed}");
    let (_, current) = call(api.http.get(&url)).await;
    assert_eq!(current["http"][0]["fault"]["status"], 503);
    assert_eq!(call(api.get("/videos")).await.0, 503);
    assert_eq!(call(api.get("/videos")).await.0, 200);

    for bad in [
        json!({"http": [{"endpoint": "GET /v1/videos", "fault": {"kind": "explode"}}]}),
        json!({"http": [{"endpoint": "GET /v1/videos", "fault": {"kind": "slow", "delay_ms": 1}, "rate": 2.0}]}),
        json!({"http": [{"endpoint": "GRAB /v1/videos", "fault": {"kind": "drop"}}]}),
        json!({"moderation": {"rat": 0.5}}),
    ] {
        let (status, answer) = call(api.http.post(&url).json(&bad)).await;
        assert_eq!(status, 400, "{bad} → {answer}");
    }
    let (status, _) = call(api.http.post(&url).json(&json!({}))).await;
    assert_eq!(status, 200, "an empty configuration clears every fault");
    assert_eq!(call(api.get("/videos")).await.0, 200);
}

#[tokio::test]
async fn seeded_rates_replay_exactly() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let faults = FaultConfig::default()
            .rule(FaultRule::new("*", Fault::ServerError { status: 500 }).rate(0.5));
        let api = Api::start(fast().seed(seed).faults(faults));
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(call(api.get("/files")).await.0);
        }
        out
    }
    let first = statuses(11).await;
    assert_eq!(first, statuses(11).await);
    assert_ne!(first, statuses(12).await);
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
}
