//! A night of a few hundred requests through HTTP weather: 429 storms with Retry-After, 5xx
//! bursts, dropped connections on every endpoint, slow answers. Whatever the weather, the night
//! ends with the same invariant (`assert_night_invariant`), possibly after reruns of the same
//! command (exit 10 means "rerun to continue").

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use rand::Rng;
use reliability::*;
use render_sandbox::faults::{Fault, FaultConfig, FaultRule};

const SHOTS: usize = 150;

/// Runs the night to the end under `faults` and checks the invariant; returns the stats.
fn weather_night(salt: &str, faults: FaultConfig, extra: &[&str]) -> render_sandbox::Stats {
    let night = night_with(4096, faults);
    night.write("shots.yaml", big_list(SHOTS, salt));
    let args = nightly_args("shots.yaml", extra);
    let (output, runs) = rerun_until_settled(&night, &args, 6);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        tail(&stderr_of_output(&output))
    );
    let report = report_of(&output);
    assert_eq!(report["runs"][0]["harvested"], SHOTS, "{report}");
    let stats = night.sandbox.stats();
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    assert_eq!(tally.harvested, SHOTS);
    assert_eq!(tally.videos_created, SHOTS as u64, "nothing rendered twice");
    eprintln!("{salt}: {runs} run(s), faults {:?}", stats.faults_injected);
    stats
}

fn stderr_of_output(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_429_storm_with_retry_after_delays_the_night_but_pays_nothing_twice() {
    // Weather everywhere, plus a storm: 25 consecutive requests all answered 429.
    let faults = FaultConfig::none()
        .seed(429)
        .rule(FaultRule::new("* /v1/**", Fault::RateLimit { retry_after_ms: 15 }).rate(0.3))
        .rule(FaultRule::new("* /v1/**", Fault::RateLimit { retry_after_ms: 40 }).nth(60..85));
    let stats = weather_night("storm", faults, &[]);
    assert!(stats.faults_injected["rate_limit"] >= 25, "{stats:?}");
}

#[test]
fn occasional_404s_for_a_live_batch_file_or_video_lose_nothing_and_pay_nothing_twice() {
    // A replica lagging, a gateway hiccup: the objects exist, the answer says they do not.
    let faults = FaultConfig::none()
        .seed(404)
        .rule(FaultRule::new("GET /v1/batches/*", Fault::NotFound).rate(0.3))
        .rule(FaultRule::new("GET /v1/files/*", Fault::NotFound).rate(0.3))
        .rule(FaultRule::new("GET /v1/files/*/content", Fault::NotFound).rate(0.2))
        .rule(FaultRule::new("GET /v1/videos/*/content", Fault::NotFound).rate(0.15));
    let stats = weather_night("not-found", faults, &["--missing-grace", "3600"]);
    assert!(stats.faults_injected["not_found"] > 5, "{stats:?}");
    assert_eq!(
        stats.batches_created, 1,
        "the batch was never taken for gone and sent again"
    );
}

#[test]
fn bursts_of_5xx_on_every_endpoint_are_survived() {
    let faults = FaultConfig::none()
        .seed(500)
        // The upload of the batch file, then the creation of the batch itself.
        .rule(FaultRule::new("POST /v1/**", Fault::ServerError { status: 500 }).nth([1, 3]))
        .rule(FaultRule::new("GET /v1/batches/*", Fault::ServerError { status: 502 }).nth([2]))
        .rule(
            FaultRule::new(
                "GET /v1/files/*/content",
                Fault::ServerError { status: 503 },
            )
            .nth([1]),
        )
        .rule(
            FaultRule::new(
                "GET /v1/videos/*/content",
                Fault::ServerError { status: 503 },
            )
            .nth((40..44).chain(120..123)),
        );
    let stats = weather_night("5xx", faults, &[]);
    assert!(stats.faults_injected["server_error"] >= 10, "{stats:?}");
}

#[test]
fn dropped_connections_on_every_endpoint_lose_nothing() {
    let faults = FaultConfig::none()
        .seed(3)
        // The answer to creating the batch (and the file) is lost after the server acted on it.
        .rule(FaultRule::new("POST /v1/**", Fault::Drop { after_bytes: 0 }).nth([1, 3]))
        .rule(FaultRule::new("* /v1/**", Fault::Drop { after_bytes: 0 }).rate(0.02))
        .rule(
            FaultRule::new(
                "GET /v1/videos/*/content",
                Fault::Drop { after_bytes: 1500 },
            )
            .rate(0.05),
        );
    let stats = weather_night("drops", faults, &[]);
    assert!(stats.faults_injected["drop"] >= 10, "{stats:?}");
}

#[test]
fn slow_answers_only_slow_the_night() {
    let faults = FaultConfig::none()
        .seed(9)
        .rule(FaultRule::new("* /v1/**", Fault::Slow { delay_ms: 25 }).rate(0.2))
        .rule(FaultRule::new(
            "POST /v1/batches",
            Fault::Slow { delay_ms: 400 },
        ));
    let stats = weather_night("slow", faults, &[]);
    assert!(stats.faults_injected["slow"] >= 20, "{stats:?}");
}

#[test]
fn a_seeded_mix_of_every_kind_of_weather() {
    let mut seeded = Seeded::new("a_seeded_mix_of_every_kind_of_weather", 2026);
    let rng = &mut seeded.rng;
    let faults = FaultConfig::none()
        .seed(rng.random())
        .rule(
            FaultRule::new(
                "* /v1/**",
                Fault::RateLimit {
                    retry_after_ms: rng.random_range(5..30),
                },
            )
            .rate(rng.random_range(0.0..0.25)),
        )
        .rule(
            FaultRule::new(
                "* /v1/**",
                Fault::ServerError {
                    status: 500 + rng.random_range(0..4),
                },
            )
            .rate(rng.random_range(0.0..0.03)),
        )
        .rule(
            FaultRule::new(
                "* /v1/**",
                Fault::Drop {
                    after_bytes: rng.random_range(0..3000),
                },
            )
            .rate(rng.random_range(0.0..0.05)),
        )
        .rule(
            FaultRule::new(
                "* /v1/**",
                Fault::Slow {
                    delay_ms: rng.random_range(1..30),
                },
            )
            .rate(rng.random_range(0.0..0.2)),
        );
    let per_batch = rng.random_range(20..=SHOTS).to_string();
    weather_night("mix", faults, &["--max-batch-requests", &per_batch]);
}
