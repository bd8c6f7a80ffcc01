//! Malformed answers from the server and a disk that fills up mid-download: a clear error, a
//! documented exit status, no panic, nothing corrupt, and a rerun without the fault completes.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use reliability::*;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule, Malformation};

#[test]
fn a_full_disk_mid_download_is_a_clear_error_and_a_rerun_completes() {
    let night = night_with(256 * 1024, FaultConfig::none());
    night.write("shots.yaml", big_list(12, "disk-full"));
    let args = nightly_args("shots.yaml", &["--jobs", "2"]);
    // The disk fills up in the middle of the third video.
    let full = [("RENDER_CACHE_FULL_AFTER", "600000")];
    let output = expect_exit(&night, &args, &full, 10);
    let stderr = common::stderr_of(&output);
    assert!(
        stderr.contains("No space left on device"),
        "the error names the cause:\n{}",
        tail(&stderr)
    );
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");

    expect_exit(&night, &args, &[], 0);
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(tally.harvested, 12);
    // What reached the disk before it filled up was kept and resumed, not fetched again.
    assert!(
        night
            .sandbox
            .stats()
            .requests_with("GET /v1/videos/{id}/content", 206)
            > 0
    );
}

/// One malformed-answer case: the fault, and what the first run must end with.
struct Case {
    name: &'static str,
    rule: FaultRule,
    first_exit: i32,
    /// Said on stderr by the first run.
    says: &'static str,
}

#[test]
fn malformed_answers_are_clear_errors_and_corrupt_nothing() {
    let cases = [
        Case {
            name: "truncated batch JSON",
            rule: malformed("GET /v1/batches/*", Malformation::TruncatedJson).nth([2]),
            // --watch sits through a failing poll: the next one reads the batch whole.
            first_exit: 0,
            says: "not what the API promises",
        },
        Case {
            name: "truncated answer to creating the batch",
            rule: malformed("POST /v1/batches", Malformation::TruncatedJson),
            first_exit: 10,
            says: "POST /batches",
        },
        Case {
            name: "truncated output file",
            rule: malformed("GET /v1/files/*/content", Malformation::TruncatedJson).nth([1]),
            first_exit: 0,
            says: "nothing was concluded",
        },
        Case {
            name: "Content-Length longer than the body",
            rule: malformed("* /v1/**", Malformation::LongerContentLength).rate(0.2),
            first_exit: 0,
            says: "",
        },
        Case {
            name: "unknown batch status",
            rule: malformed("GET /v1/batches/*", Malformation::UnknownStatus).nth([1, 2, 3]),
            first_exit: 0,
            says: "does not know",
        },
    ];
    for case in cases {
        check_malformed(case);
    }
}

fn malformed(endpoint: &str, shape: Malformation) -> FaultRule {
    FaultRule::new(endpoint, Fault::Malformed { shape })
}

fn check_malformed(case: Case) {
    let started = std::time::Instant::now();
    let faults = FaultConfig::none().seed(5).rule(case.rule);
    let night = night_with(4096, faults);
    night.write("shots.yaml", big_list(20, "malformed"));
    let args = nightly_args("shots.yaml", &[]);
    let first = night.render_with(&args, &[]);
    let stderr = common::stderr_of(&first);
    assert_no_panic(&first);
    assert!(
        night
            .sandbox
            .stats()
            .faults_injected
            .get("malformed")
            .copied()
            .unwrap_or(0)
            > 0,
        "{}: the fault never fired",
        case.name
    );
    assert!(
        stderr.contains(case.says),
        "{}: stderr does not say {:?}:\n{}",
        case.name,
        case.says,
        tail(&stderr)
    );
    // Whatever the first run did, it exits with a documented status.
    assert!(
        [case.first_exit, 4, 5].contains(&first.status.code().unwrap_or(-1)),
        "{}: exit {:?}\n{}",
        case.name,
        first.status.code(),
        tail(&stderr)
    );
    if first.status.code() == Some(10) {
        assert!(
            stderr.contains("error:"),
            "{}: {}",
            case.name,
            tail(&stderr)
        );
    }
    let verify = night.json(&["cache", "verify"]);
    assert_eq!(verify["problems"], serde_json::json!([]), "{}", case.name);

    night.sandbox.set_faults(FaultConfig::none()).expect("calm");
    let (output, _) = rerun_until_settled(&night, &args, 3);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}: {}",
        case.name,
        tail(&common::stderr_of(&output))
    );
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(tally.harvested, 20, "{}", case.name);
    eprintln!("case {:?}: {:?}", case.name, started.elapsed());
}
