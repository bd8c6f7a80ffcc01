//! A night of a few hundred requests through HTTP weather: 429 storms with Retry-After, 5xx
//! bursts, dropped connections on every endpoint, slow answers. Whatever the weather, the night
//! ends with the same invariant (`assert_night_invariant`).

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use reliability::*;
use render::sandbox::faults::{Fault, FaultConfig, FaultRule};

#[test]
fn a_calm_night_harvests_everything_once() {
    let night = night_with(4096, FaultConfig::none());
    night.write("shots.yaml", big_list(300, "calm"));
    let t = std::time::Instant::now();
    let output = expect_exit(&night, &nightly_args("shots.yaml", &[]), &[], 0);
    eprintln!("nightly took {:?}", t.elapsed());
    let report = report_of(&output);
    assert_eq!(report["runs"][0]["harvested"], 300, "{report}");
    let tally = assert_night_invariant(&night, OUT, Allow::ONCE);
    eprintln!("total {:?}", t.elapsed());
    assert_eq!(tally.harvested, 300);
    assert_eq!(tally.videos_created, 300);
}
