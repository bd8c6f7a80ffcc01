//! `render spend`, to the cent, on real nights against the sandbox: a refused request is not
//! billed, the completed part of an expired batch is, an unchanged rerun adds $0.00, and the
//! direct lane pays standard rates; `submit` and `nightly` say what they are about to spend and
//! what they spent. Every shot here is sora-2 at 1280x720 for 4 s: $0.40 standard, $0.20 Batch.

mod common;

use common::*;
use render::report::spend::{Bill, bill_table};
use render_pipeline::ledger::{
    BatchUpdate, Ledger, RequestResult, RequestRow, RequestStatus, RunItem, RunRow,
};
use render_pipeline::provider::Lane;
use render_sandbox::SandboxConfig;
use render_sandbox::faults::{FaultConfig, Trigger};
use render_wire::key::Sha256Hex;
use render_wire::money::Usd;

const BATCH: Usd = Usd::from_micros(200_000);
const STANDARD: Usd = Usd::from_micros(400_000);

/// Money as `render` writes it in JSON ("0.40").
fn usd(amount: Usd) -> String {
    amount.to_string().trim_start_matches('$').to_string()
}

fn spend(night: &Night, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["spend"];
    all.extend_from_slice(args);
    night.json(&all)
}

fn run_line(bill: &serde_json::Value, run_id: &str) -> serde_json::Value {
    bill["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run_id)
        .unwrap_or_else(|| panic!("{run_id} in {bill}"))
        .clone()
}

/// `render nightly shots.yaml --format json`, with the exit status it must end with.
fn nightly(night: &Night, code: i32) -> serde_json::Value {
    let out = night.render(&[
        "nightly",
        "shots.yaml",
        "--max-poll-interval",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(code), "{}", stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(&out)))
}

#[test]
fn a_request_refused_for_policy_is_planned_but_not_billed() {
    let night = Night::new();
    let list = shot_list(3, "refused").replace(
        "\"refused shot 2: a paper boat drifting on a pond\"",
        "\"Batman drifting on a pond in a paper boat\"",
    );
    night.write("shots.yaml", list);
    let report = nightly(&night, 4);
    assert_eq!(report["runs"][0]["failed"], 1, "{report}");
    assert_eq!(report["about_to_spend_usd"], usd(BATCH * 3));
    assert_eq!(report["about_to_spend_requests"], 3);
    assert_eq!(
        report["spent_usd"],
        usd(BATCH * 2),
        "the refusal costs nothing"
    );

    let run_id = report["runs"][0]["run_id"].as_str().unwrap();
    let bill = spend(&night, &[]);
    let line = run_line(&bill, run_id);
    assert_eq!(line["planned_usd"], "0.60");
    assert_eq!(line["billed_usd"], "0.40");
    assert_eq!(
        line["saved_usd"], "0.40",
        "standard $0.80 for the two rendered"
    );
    assert_eq!(line["rendered"], 2);
    assert_eq!(line["project"], "test-night");
    assert_eq!(bill["total_billed_usd"], "0.40");
    assert_eq!(bill["total_planned_usd"], "0.60");
    assert_eq!(bill["total_saved_usd"], "0.40");
}

#[test]
fn the_completed_part_of_an_expired_batch_is_billed_and_its_retry_too() {
    let faults = FaultConfig::none().batch_expire(Trigger::nth([1]));
    let night = Night::with(SandboxConfig::default().video_bytes(4096).faults(faults));
    night.write("shots.yaml", shot_list(4, "expired"));
    let submitted = night.json(&["submit", "shots.yaml"]);
    assert_eq!(submitted["about_to_spend_usd"], "0.80");
    assert_eq!(
        submitted["spent_usd"], "0.80",
        "sent: committed at the provider"
    );
    let run_id = submitted["run_id"].as_str().unwrap().to_string();

    let first = night.render(&["harvest", "--watch", "--format", "json"]);
    assert_eq!(first.status.code(), Some(5), "{}", stderr_of(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let harvested = report["runs"][0]["harvested"].as_u64().unwrap() as u32;
    assert!((1..4).contains(&harvested), "{report}");
    assert_eq!(
        night.sandbox.stats().videos_created,
        u64::from(harvested),
        "the sandbox rendered exactly what was harvested"
    );
    let line = run_line(&spend(&night, &[]), &run_id);
    assert_eq!(line["planned_usd"], "0.80");
    assert_eq!(line["billed_usd"], usd(BATCH * harvested), "{line}");
    assert_eq!(line["saved_usd"], usd(BATCH * harvested));

    night.ok(&["retry", &run_id]);
    night.json(&["harvest", "--watch"]);
    assert_eq!(night.sandbox.stats().videos_created, 4);
    let line = run_line(&spend(&night, &[]), &run_id);
    assert_eq!(
        line["billed_usd"], "0.80",
        "the retried ones are this run's too"
    );
    assert_eq!(line["rendered"], 4);
}

#[test]
fn an_unchanged_rerun_adds_nothing_to_the_bill() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(3, "rerun"));
    let first = nightly(&night, 0);
    assert_eq!(first["spent_usd"], "0.60");
    let before = spend(&night, &[]);
    assert_eq!(before["total_billed_usd"], "0.60");

    let again = nightly(&night, 0);
    assert_eq!(again["about_to_spend_usd"], "0.00");
    assert_eq!(again["about_to_spend_cached"], 3);
    assert_eq!(again["spent_usd"], "0.00");
    let after = spend(&night, &[]);
    assert_eq!(after["runs"].as_array().unwrap().len(), 2, "{after}");
    let rerun = run_line(&after, again["runs"][0]["run_id"].as_str().unwrap());
    assert_eq!(rerun["planned_usd"], "0.00");
    assert_eq!(rerun["billed_usd"], "0.00");
    assert_eq!(after["total_billed_usd"], "0.60", "the total is unchanged");
    assert_eq!(after["total_planned_usd"], "0.60");
    assert_eq!(night.sandbox.stats().videos_created, 3);
}

#[test]
fn the_direct_lane_is_billed_at_standard_rates_and_saves_nothing() {
    let night = Night::with(SandboxConfig::default().video_bytes(4096).concurrency(2));
    direct_lab(&night, 2);
    let list = shot_list(3, "direct").replace("shots:\n", "defaults: { provider: lab }\nshots:\n");
    night.write("shots.yaml", list);
    let out = night.render(&[
        "--providers",
        "providers.yaml",
        "nightly",
        "shots.yaml",
        "--max-poll-interval",
        "1",
    ]);
    assert_success(&out, &["nightly"]);
    let text = stdout_of(&out);
    assert!(
        text.contains("about to spend $1.20 on 3 requests (0 cached, $0)"),
        "{text}"
    );
    assert!(text.contains("spent $1.20"), "{text}");
    let bill = spend(&night, &[]);
    assert_eq!(bill["total_planned_usd"], usd(STANDARD * 3));
    assert_eq!(bill["total_billed_usd"], usd(STANDARD * 3));
    assert_eq!(bill["total_saved_usd"], "0.00");
}

#[test]
fn spend_filters_by_project_and_date_and_writes_csv() {
    let night = Night::new();
    night.write("shots.yaml", shot_list(1, "filters"));
    nightly(&night, 0);
    assert_eq!(
        spend(&night, &["--project", "test-night"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        spend(&night, &["--project", "other"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        spend(&night, &["--since", "2000-01-01"])["total_billed_usd"],
        "0.20"
    );
    let future = spend(&night, &["--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(future["runs"].as_array().unwrap().len(), 0);
    assert_eq!(future["total_billed_usd"], "0.00");

    let csv = night.ok(&["spend", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "run_id,project,started_at,requests,rendered,planned_usd,billed_usd,standard_usd,saved_usd"
        )
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[1], "test-night");
    assert_eq!(&row[5..], ["0.20", "0.20", "0.40", "0.20"]);
    assert_eq!(lines.next(), None);
}

#[test]
fn a_bad_date_or_format_is_a_usage_error() {
    let night = Night::new();
    let out = night.render(&["spend", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("expected YYYY-MM-DD or RFC 3339"),
        "{}",
        stderr_of(&out)
    );
    let out = night.render(&["spend", "--since", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(2));
    let out = night.render(&["status", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("only for `render spend`"),
        "{}",
        stderr_of(&out)
    );
    // Without a ledger the bill is empty, and asking creates no state directory.
    assert_eq!(spend(&night, &[])["total_billed_usd"], "0.00");
    assert!(!night.state_dir().exists());
}

// ---------------------------------------------------------------- the table, as people see it

fn request(n: u8, lane: Lane, cost: Usd) -> RequestRow {
    RequestRow {
        key: Sha256Hex::of(&[n]),
        shot_id: format!("sq010_sh{n:03}"),
        take: 1,
        model: "sora-2".into(),
        size: "1280x720".into(),
        seconds: 4,
        prompt: format!("prompt {n}"),
        reference_sha: None,
        reference_path: None,
        reference_mime: None,
        cost,
        provider: "studio".into(),
        lane,
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

fn run_of(
    id: &str,
    project: &str,
    created_at: i64,
    requests: &[(&RequestRow, Usd)],
) -> (RunRow, Vec<RunItem>) {
    let run = RunRow {
        id: id.into(),
        created_at,
        project: Some(project.into()),
        plan_hash: format!("plan-{id}"),
        sources: vec!["shots.yaml".into()],
        provider: "studio".into(),
        out_dir: None,
        done: true,
        partial: false,
        cancelled: false,
    };
    let items = requests
        .iter()
        .map(|(r, planned)| RunItem {
            shot_id: r.shot_id.clone(),
            provider: Some("studio".into()),
            lane: r.lane,
            take: 1,
            takes: 1,
            key: r.key,
            cost: *planned,
            tags: vec![],
        })
        .collect();
    (run, items)
}

fn completed(video_id: &str) -> RequestResult {
    RequestResult::Completed {
        video_id: video_id.into(),
        expires_at: None,
    }
}

/// Three nights: a Batch night with one refusal, a rush shot on the direct lane, and an
/// unchanged rerun of the first, laid out from the cache.
fn ledger_of_three_nights(path: &std::path::Path) -> Ledger {
    let mut ledger = Ledger::open(path).unwrap();
    let r1 = request(1, Lane::Batch, BATCH);
    let r2 = request(2, Lane::Batch, BATCH);
    let refused = request(3, Lane::Batch, BATCH);
    let rush = request(4, Lane::Direct, STANDARD);
    ledger
        .insert_requests(&[r1.clone(), r2.clone(), refused.clone(), rush.clone()])
        .unwrap();
    let prices: Vec<_> = [&r1, &r2, &refused, &rush]
        .iter()
        .map(|r| (r.key, STANDARD))
        .collect();
    ledger.record_standard_prices(&prices).unwrap();

    let night = [(&r1, BATCH), (&r2, BATCH), (&refused, BATCH)];
    let (run, items) = run_of(
        "run-1796083200-aaaaaa",
        "harbour-night",
        1_796_083_200,
        &night,
    );
    ledger.create_run(&run, &items).unwrap();
    let keys = [r1.key, r2.key, refused.key];
    let row = ledger
        .record_batch_intent(&run.id, "studio", 1, "intent-1", &keys)
        .unwrap();
    let update = BatchUpdate {
        status: "completed".into(),
        completed: 2,
        failed: 1,
        created_at: Some(1_796_083_200),
        expires_at: None,
        completed_at: Some(1_796_090_400),
        output_file_id: None,
        error_file_id: None,
        error: None,
    };
    ledger
        .record_batch_created(row, "batch_1", &update)
        .unwrap();
    ledger
        .record_result(&r1.key, &completed("video_1"))
        .unwrap();
    ledger
        .record_result(&r2.key, &completed("video_2"))
        .unwrap();
    let refusal = RequestResult::Failed {
        code: Some("moderation_blocked".into()),
        message: "refused".into(),
        retryable: false,
    };
    ledger.record_result(&refused.key, &refusal).unwrap();
    // The same output file read twice bills nothing twice.
    ledger
        .record_result(&r1.key, &completed("video_1"))
        .unwrap();

    let (run, items) = run_of(
        "run-1796169600-bbbbbb",
        "harbour-night",
        1_796_169_600,
        &[(&rush, STANDARD)],
    );
    ledger.create_run(&run, &items).unwrap();
    let job = ledger
        .record_job_intent(Some(&run.id), "studio", &rush.key, "intent-2")
        .unwrap();
    ledger.record_job_sent(job, "video_3", "queued").unwrap();
    ledger
        .record_result(&rush.key, &completed("video_3"))
        .unwrap();

    let cached = [(&r1, Usd::ZERO), (&r2, Usd::ZERO)];
    let (run, items) = run_of(
        "run-1796256000-cccccc",
        "dailies: pier",
        1_796_256_000,
        &cached,
    );
    ledger.create_run(&run, &items).unwrap();
    ledger
}

#[test]
fn the_spend_table_as_people_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_of_three_nights(&dir.path().join("ledger.sqlite"));
    let bill = Bill {
        runs: ledger.spend(None, None).unwrap(),
    };
    assert_eq!(bill.total_billed(), BATCH * 2 + STANDARD);
    assert_eq!(bill.total_saved(), BATCH * 2);
    insta::with_settings!({snapshot_path => "fixtures/snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("spend_table", bill_table(&bill));
    });
}

#[test]
fn a_render_stays_on_the_bill_of_the_run_that_sent_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_of_three_nights(&dir.path().join("ledger.sqlite"));
    // r1's video expires before download; a fourth run renders it again, rush: the first
    // night's bill keeps its render (the provider rendered it), the fourth pays for its own.
    let r1 = request(1, Lane::Direct, STANDARD);
    let (run, items) = run_of(
        "run-1796342400-dddddd",
        "harbour-night",
        1_796_342_400,
        &[(&r1, STANDARD)],
    );
    ledger.create_run(&run, &items).unwrap();
    let expired = RequestResult::Lost {
        reason: "video_expired".into(),
    };
    ledger.record_result(&r1.key, &expired).unwrap();
    ledger.insert_requests(std::slice::from_ref(&r1)).unwrap();
    let job = ledger
        .record_job_intent(Some(&run.id), "studio", &r1.key, "intent-4")
        .unwrap();
    ledger.record_job_sent(job, "video_4", "queued").unwrap();
    ledger
        .record_result(&r1.key, &completed("video_4"))
        .unwrap();

    let first = ledger.run_spend("run-1796083200-aaaaaa").unwrap().unwrap();
    assert_eq!((first.billed, first.rendered), (BATCH * 2, 2));
    let fourth = ledger.run_spend(&run.id).unwrap().unwrap();
    assert_eq!(fourth.billed, STANDARD);
    let since = ledger
        .spend(Some(1_796_300_000), Some("harbour-night"))
        .unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].run_id, run.id);
}
