//! Creating a batch is tried again under the client's own retry policy: exactly the configured
//! attempts, with the configured delays (not a loop of its own), against the sandbox.
use std::time::{Duration, Instant};

use render_pipeline::api::client::{ApiClient, ApiKey, ClientConfig};
use render_pipeline::batch::VIDEOS_ENDPOINT;
use render_pipeline::lanes::batch::{BatchLaneError, create_or_adopt};
use render_pipeline::ledger::BatchRow;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule};
use render_sandbox::{SandboxConfig, SandboxHandle};
use render_wire::api::{COMPLETION_WINDOW, CreateBatch};

fn intent() -> BatchRow {
    BatchRow {
        row: 1,
        run_id: "run-1".into(),
        provider: "sandbox".into(),
        part: 1,
        intent: "intent-token".into(),
        intent_at: 0,
        input_file_id: None,
        batch_id: None,
        status: "intent".into(),
        request_count: 1,
        completed: 0,
        failed: 0,
        created_at: None,
        expires_at: None,
        completed_at: None,
        output_file_id: None,
        error_file_id: None,
        results_read: false,
        harvested: false,
        error: None,
        clock_offset: None,
    }
}

fn request() -> CreateBatch {
    CreateBatch {
        input_file_id: "file-unused".into(),
        endpoint: VIDEOS_ENDPOINT.into(),
        completion_window: COMPLETION_WINDOW.into(),
        metadata: None,
    }
}

/// A sandbox whose `POST /v1/batches` always answers 503.
fn failing_sandbox() -> SandboxHandle {
    let faults = FaultConfig::none().rule(FaultRule::new(
        "POST /v1/batches",
        Fault::ServerError { status: 503 },
    ));
    render_sandbox::spawn(SandboxConfig::default().faults(faults)).unwrap()
}

fn creates(sandbox: &SandboxHandle) -> u64 {
    let stats = sandbox.stats();
    stats
        .requests
        .iter()
        .filter(|(endpoint, _)| endpoint.as_str() == "POST /v1/batches")
        .flat_map(|(_, by_status)| by_status.values())
        .sum()
}

fn client(sandbox: &SandboxHandle, max_retries: u32, base_delay: Duration) -> ApiClient {
    let mut config = ClientConfig::new(sandbox.base_url(), ApiKey::new("sk-test"));
    config.max_retries = max_retries;
    config.retry_base_delay = base_delay;
    ApiClient::new(config).unwrap()
}

#[tokio::test]
async fn creating_a_batch_makes_exactly_the_configured_attempts() {
    for max_retries in [0, 2] {
        let sandbox = failing_sandbox();
        let client = client(&sandbox, max_retries, Duration::ZERO);
        let result = create_or_adopt(&client, &intent(), &request()).await;
        assert!(
            matches!(result, Err(BatchLaneError::Api(ref e)) if e.status() == Some(503)),
            "{:?}",
            result.err()
        );
        assert_eq!(creates(&sandbox), u64::from(max_retries) + 1);
    }
}

#[tokio::test]
async fn creating_a_batch_waits_the_configured_delay_not_the_default() {
    let sandbox = failing_sandbox();
    // The default policy's waits before the 2nd and 3rd attempts are at least 1.1 s.
    let started = Instant::now();
    let quick = client(&sandbox, 2, Duration::ZERO);
    assert!(
        create_or_adopt(&quick, &intent(), &request())
            .await
            .is_err()
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let patient = client(&sandbox, 1, Duration::from_millis(300));
    assert!(
        create_or_adopt(&patient, &intent(), &request())
            .await
            .is_err()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(225),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(creates(&sandbox), 3 + 2);
}
