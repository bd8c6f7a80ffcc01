//! The ledger's promises, on a real SQLite file.

use render_pipeline::ledger::{
    AssetRow, BatchUpdate, Ledger, OutputRow, RequestResult, RequestRow, RequestStatus, RunItem,
    RunRow,
};
use render_pipeline::provider::Lane;
use render_wire::key::Sha256Hex;
use render_wire::money::Usd;

fn request(n: u8) -> RequestRow {
    RequestRow {
        key: Sha256Hex::of(&[n]),
        shot_id: format!("shot-{n}"),
        take: 1,
        model: "sora-2".into(),
        size: "1280x720".into(),
        seconds: 8,
        prompt: format!("prompt {n}"),
        reference_sha: None,
        reference_path: None,
        reference_mime: None,
        cost: Usd::from_micros(400_000),
        provider: "127.0.0.1".into(),
        lane: Lane::Batch,
        served_as: None,
        status: RequestStatus::Pending,
        attempts: 0,
        batch_row: None,
        job_row: None,
        video_id: None,
        video_expires_at: None,
        error_code: None,
        error_message: None,
        retryable: false,
    }
}

fn run(id: &str, plan_hash: &str, requests: &[RequestRow]) -> (RunRow, Vec<RunItem>) {
    let row = RunRow {
        id: id.into(),
        created_at: 1,
        project: Some("demo".into()),
        plan_hash: plan_hash.into(),
        sources: vec!["shots.yaml".into()],
        provider: "127.0.0.1".into(),
        out_dir: None,
        done: false,
        partial: false,
        cancelled: false,
    };
    let items = requests
        .iter()
        .map(|r| RunItem {
            shot_id: r.shot_id.clone(),
            provider: Some("127.0.0.1".into()),
            lane: Lane::Batch,
            take: 1,
            takes: 1,
            key: r.key,
            cost: r.cost,
            tags: vec![],
        })
        .collect();
    (row, items)
}

fn update(status: &str) -> BatchUpdate {
    BatchUpdate {
        status: status.into(),
        completed: 0,
        failed: 0,
        created_at: Some(10),
        expires_at: Some(10 + 86_400),
        completed_at: None,
        output_file_id: None,
        error_file_id: None,
        error: None,
    }
}

#[test]
fn reopening_keeps_everything_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let reqs = [request(1), request(2)];
    {
        let mut ledger = Ledger::open(&path).unwrap();
        let (row, items) = run("run-1", "hash-a", &reqs);
        ledger.create_run(&row, &items).unwrap();
        ledger.insert_requests(&reqs).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.runs().unwrap().len(), 1);
    assert_eq!(ledger.run_items("run-1").unwrap().len(), 2);
    assert_eq!(ledger.request(&reqs[0].key).unwrap().unwrap(), reqs[0]);
}

#[test]
fn a_runs_requests_are_read_in_one_query_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let reqs = [request(1), request(2), request(3)];
    let (first, items) = run("run-1", "hash-a", &reqs[..2]);
    ledger.create_run(&first, &items).unwrap();
    let (second, items) = run("run-2", "hash-b", &reqs[1..]);
    ledger.create_run(&second, &items).unwrap();
    ledger.insert_requests(&reqs).unwrap();
    let keys = |run: &str| {
        let mut keys: Vec<_> = ledger
            .requests_of_run(run)
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        keys.sort();
        keys
    };
    let sorted = |mut keys: Vec<_>| {
        keys.sort();
        keys
    };
    assert_eq!(keys("run-1"), sorted(vec![reqs[0].key, reqs[1].key]));
    assert_eq!(keys("run-2"), sorted(vec![reqs[1].key, reqs[2].key]));
    assert!(keys("run-3").is_empty());
}

#[test]
fn an_unfinished_run_of_the_same_plan_is_continued() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let (row, items) = run("run-1", "hash-a", &[request(1)]);
    ledger.create_run(&row, &items).unwrap();
    assert_eq!(
        ledger.open_run_for_plan("hash-a").unwrap().unwrap().id,
        "run-1"
    );
    assert!(ledger.open_run_for_plan("hash-b").unwrap().is_none());
    ledger.set_run_done("run-1", true).unwrap();
    assert!(ledger.open_run_for_plan("hash-a").unwrap().is_none());
}

#[test]
fn intent_then_creation_moves_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let reqs = [request(1), request(2)];
    let (row, items) = run("run-1", "h", &reqs);
    ledger.create_run(&row, &items).unwrap();
    ledger.insert_requests(&reqs).unwrap();
    let keys: Vec<_> = reqs.iter().map(|r| r.key).collect();
    let batch = ledger
        .record_batch_intent("run-1", "127.0.0.1", 1, "token", &keys)
        .unwrap();

    let unconfirmed = ledger.unconfirmed_batches().unwrap();
    assert_eq!(unconfirmed.len(), 1);
    assert_eq!(unconfirmed[0].intent, "token");
    let queued = ledger.request(&keys[0]).unwrap().unwrap();
    assert_eq!((queued.status, queued.attempts), (RequestStatus::Queued, 1));
    assert!(queued.status.is_in_flight_or_done());

    ledger
        .record_batch_created(batch, "batch_1", &update("validating"))
        .unwrap();
    assert!(ledger.unconfirmed_batches().unwrap().is_empty());
    assert_eq!(
        ledger.unharvested_batches().unwrap()[0].batch_id.as_deref(),
        Some("batch_1")
    );
    for r in ledger.batch_requests(batch).unwrap() {
        assert_eq!(r.status, RequestStatus::Submitted);
    }
}

#[test]
fn abandoned_intent_returns_requests_to_pending() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let reqs = [request(1)];
    let (row, items) = run("run-1", "h", &reqs);
    ledger.create_run(&row, &items).unwrap();
    ledger.insert_requests(&reqs).unwrap();
    let batch = ledger
        .record_batch_intent("run-1", "127.0.0.1", 1, "t", &[reqs[0].key])
        .unwrap();
    ledger.abandon_batch_intent(batch, "refused").unwrap();
    assert_eq!(
        ledger.request(&reqs[0].key).unwrap().unwrap().status,
        RequestStatus::Pending
    );
    assert!(ledger.unconfirmed_batches().unwrap().is_empty());
    assert!(ledger.batches_of_run("run-1").unwrap().is_empty());
}

#[test]
fn results_are_idempotent_and_never_demote_a_harvested_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let reqs = [request(1)];
    ledger.insert_requests(&reqs).unwrap();
    let key = reqs[0].key;
    let done = RequestResult::Completed {
        video_id: "video_1".into(),
        expires_at: Some(99),
    };
    ledger.record_result(&key, &done).unwrap();
    ledger.record_result(&key, &done).unwrap();
    let row = ledger.request(&key).unwrap().unwrap();
    assert_eq!(
        (row.status, row.video_id.as_deref()),
        (RequestStatus::Completed, Some("video_1"))
    );

    ledger
        .record_output(&OutputRow {
            key,
            video_sha: Sha256Hex::of(b"video"),
            video_bytes: 5,
            thumbnail_sha: Some(Sha256Hex::of(b"thumb")),
            video_id: Some("video_1".into()),
            harvested_at: 3,
        })
        .unwrap();
    ledger
        .record_result(
            &key,
            &RequestResult::Lost {
                reason: "late".into(),
            },
        )
        .unwrap();
    assert_eq!(
        ledger.request(&key).unwrap().unwrap().status,
        RequestStatus::Harvested
    );
    let keep = ledger.referenced_objects().unwrap();
    assert!(keep.contains(&Sha256Hex::of(b"video")) && keep.contains(&Sha256Hex::of(b"thumb")));
}

#[test]
fn failures_keep_their_reason_and_retryability() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let mut ledger = ledger;
    let reqs = [request(1), request(2)];
    ledger.insert_requests(&reqs).unwrap();
    let policy = RequestResult::Failed {
        code: Some("moderation_blocked".into()),
        message: "names a real person".into(),
        retryable: false,
    };
    ledger.record_result(&reqs[0].key, &policy).unwrap();
    ledger
        .record_result(
            &reqs[1].key,
            &RequestResult::Lost {
                reason: "batch expired".into(),
            },
        )
        .unwrap();
    let a = ledger.request(&reqs[0].key).unwrap().unwrap();
    assert_eq!(a.status, RequestStatus::Failed);
    assert_eq!(a.error_code.as_deref(), Some("moderation_blocked"));
    assert!(!a.retryable);
    let b = ledger.request(&reqs[1].key).unwrap().unwrap();
    assert_eq!((b.status, b.retryable), (RequestStatus::Lost, true));
    assert!(!b.status.is_in_flight_or_done());
}

#[test]
fn assets_are_found_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let sha = Sha256Hex::of(b"png bytes");
    assert!(ledger.asset(&sha).unwrap().is_none());
    let asset = AssetRow {
        sha256: sha,
        file_id: "file-abc".into(),
        bytes: 9,
        uploaded_at: 5,
        expires_at: None,
    };
    ledger.record_asset(&asset).unwrap();
    assert_eq!(ledger.asset(&sha).unwrap().unwrap(), asset);
}

#[test]
fn a_ledger_from_a_newer_render_is_refused_not_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    drop(Ledger::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Ledger::open(&path)
        .err()
        .expect("newer schema must be refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// Opening the ledger again (a second connection of the same process, as the plan's cache probe
/// does) writes nothing: a connection in the middle of a read-then-write transaction must not
/// find its snapshot stale and fail with "database is locked".
#[test]
fn opening_a_current_ledger_again_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path).unwrap());
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other.transaction().unwrap();
    let runs: i64 = tx
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0);
    let again = Ledger::open(&path).unwrap();
    let reader = Ledger::open_reader(&path).unwrap();
    tx.execute(
        "INSERT INTO standard_prices (key, standard_micros) VALUES ('k', 1)",
        [],
    )
    .expect("the write after the read still goes through");
    tx.commit().unwrap();
    drop((again, reader));
}

/// A batch's output file is recorded a thousand lines to a transaction: the results land in
/// order (the last word on a request wins), all or none, and still never demote a harvested
/// request.
#[test]
fn results_recorded_together_land_in_order_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let reqs: Vec<RequestRow> = (1..=3).map(request).collect();
    ledger.insert_requests(&reqs).unwrap();
    let completed = |id: &str| RequestResult::Completed {
        video_id: id.into(),
        expires_at: None,
    };
    let failed = RequestResult::Failed {
        code: Some("server_error".into()),
        message: "the GPU fell over".into(),
        retryable: true,
    };
    ledger
        .record_output(&OutputRow {
            key: reqs[2].key,
            video_sha: Sha256Hex::of(b"kept"),
            video_bytes: 4,
            thumbnail_sha: None,
            video_id: Some("video_kept".into()),
            harvested_at: 1,
        })
        .unwrap();
    ledger
        .record_results(&[
            (reqs[0].key, failed.clone()),
            (reqs[0].key, completed("video_1")),
            (reqs[1].key, failed.clone()),
            (reqs[2].key, failed.clone()),
        ])
        .unwrap();
    let status = |ledger: &Ledger, i: usize| {
        let row = ledger.request(&reqs[i].key).unwrap().unwrap();
        (row.status, row.video_id)
    };
    assert_eq!(
        status(&ledger, 0),
        (RequestStatus::Completed, Some("video_1".into()))
    );
    assert_eq!(status(&ledger, 1).0, RequestStatus::Failed);
    assert_eq!(status(&ledger, 2).0, RequestStatus::Harvested);

    // A write that fails part-way (a trigger refuses the second update) leaves none of its
    // results behind.
    let path = dir.path().join("l.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE UPDATE ON requests WHEN NEW.video_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
    let err = ledger.record_results(&[
        (reqs[1].key, completed("video_2")),
        (reqs[0].key, completed("poison")),
    ]);
    assert!(err.is_err());
    assert_eq!(status(&ledger, 1).0, RequestStatus::Failed);
    assert_eq!(
        status(&ledger, 0),
        (RequestStatus::Completed, Some("video_1".into()))
    );
}
