//! Choosing work and keeping outputs honest: `--only`, `--tag`, `--project`, stable output names
//! and earlier outputs moved into `superseded/`.

mod common;

use common::{Night, assert_byte_exact, stderr_of};

const SEQUENCES: &str = "\
project: seq
shots:
  - {id: sq010_a, prompt: a lighthouse, tags: [hero]}
  - {id: sq010_b, prompt: a harbour}
  - {id: sq020_a, prompt: a storm, tags: [hero]}
";

fn planned_shots(plan: &serde_json::Value) -> Vec<String> {
    plan["shots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn files_in(night: &Night, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(night.path(dir))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".mp4"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn only_and_tag_choose_shots_and_both_must_match() {
    let night = Night::new();
    night.write("shots.yaml", SEQUENCES);
    let only = night.json(&["plan", "shots.yaml", "--only", "sq010_*"]);
    assert_eq!(planned_shots(&only), ["sq010_a", "sq010_b"]);
    let tagged = night.json(&["plan", "shots.yaml", "--tag", "hero"]);
    assert_eq!(planned_shots(&tagged), ["sq010_a", "sq020_a"]);
    let both = night.json(&["plan", "shots.yaml", "--only", "sq010_*", "--tag", "hero"]);
    assert_eq!(planned_shots(&both), ["sq010_a"]);
    let alternatives = night.json(&[
        "plan",
        "shots.yaml",
        "--only",
        "sq020_a",
        "--only",
        "sq010_b",
    ]);
    assert_eq!(planned_shots(&alternatives), ["sq010_b", "sq020_a"]);
}

#[test]
fn a_pattern_that_chooses_nothing_is_a_usage_error_and_sends_nothing() {
    let night = Night::new();
    night.write("shots.yaml", SEQUENCES);
    let typo = night.render(&["submit", "shots.yaml", "--only", "sq01O_*"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr_of(&typo).contains("--only \"sq01O_*\" matches no shot"),
        "{}",
        stderr_of(&typo)
    );
    let bad = night.render(&["plan", "shots.yaml", "--only", "sq[010"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr_of(&bad).contains("not a valid pattern"),
        "{}",
        stderr_of(&bad)
    );
    let unknown_tag = night.render(&["plan", "shots.yaml", "--tag", "villain"]);
    assert_eq!(unknown_tag.status.code(), Some(2));
    assert_eq!(night.sandbox.stats().batches_created, 0);
}

#[test]
fn a_chosen_night_renders_only_its_shots_and_moves_nothing_aside() {
    let night = Night::new();
    night.write("shots.yaml", SEQUENCES);
    night.ok(&["submit", "shots.yaml", "--only", "sq020_*"]);
    night.ok(&["harvest", "--watch"]);
    assert_eq!(files_in(&night, "renders/seq"), ["sq020_a.mp4"]);
    night.ok(&["submit", "shots.yaml", "--only", "sq010_a"]);
    night.ok(&["harvest", "--watch"]);
    // The first night's shot is still in the list: it stays current.
    assert_eq!(
        files_in(&night, "renders/seq"),
        ["sq010_a.mp4", "sq020_a.mp4"]
    );
    assert!(!night.path("renders/seq/superseded").exists());
    // The whole list now: only the shot never rendered is sent.
    let before = night.sandbox.stats().videos_created;
    night.full_night("shots.yaml");
    assert_eq!(night.sandbox.stats().videos_created - before, 1);
    assert_eq!(assert_byte_exact(&night, "renders/seq"), 3);
}

#[test]
fn a_first_take_keeps_its_name_whatever_the_number_of_takes() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: takes\nshots:\n  - {id: a, prompt: a kite}\n",
    );
    night.full_night("shots.yaml");
    let first = std::fs::read(night.path("renders/takes/a.mp4")).unwrap();
    night.write(
        "shots.yaml",
        "project: takes\nshots:\n  - {id: a, prompt: a kite, takes: 3}\n",
    );
    night.full_night("shots.yaml");
    assert_eq!(
        files_in(&night, "renders/takes"),
        ["a.mp4", "a_take2.mp4", "a_take3.mp4"]
    );
    // The first take is the same request as before: the same file, not rendered again.
    assert_eq!(
        std::fs::read(night.path("renders/takes/a.mp4")).unwrap(),
        first
    );
}

#[test]
fn outputs_of_shots_no_longer_in_the_list_are_moved_aside() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: cut\nshots:\n  - {id: keep, prompt: a kite}\n  - {id: dropped, prompt: a storm}\n  - {id: changed, prompt: old words, takes: 2}\n",
    );
    night.full_night("shots.yaml");
    let dropped = std::fs::read(night.path("renders/cut/dropped.mp4")).unwrap();
    let first_run = night.manifest("renders/cut")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    night.write(
        "shots.yaml",
        "project: cut\nshots:\n  - {id: keep, prompt: a kite}\n  - {id: changed, prompt: new words}\n",
    );
    night.full_night("shots.yaml");
    assert_eq!(files_in(&night, "renders/cut"), ["changed.mp4", "keep.mp4"]);
    assert_eq!(
        files_in(&night, "renders/cut/superseded"),
        ["changed_take2.mp4", "dropped.mp4"]
    );
    assert_eq!(
        std::fs::read(night.path("renders/cut/superseded/dropped.mp4")).unwrap(),
        dropped
    );
    let manifest = night.manifest("renders/cut");
    let moved: Vec<&str> = manifest["superseded"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| p.ends_with(".mp4"))
        .collect();
    assert_eq!(
        moved,
        ["superseded/changed_take2.mp4", "superseded/dropped.mp4"]
    );
    // One manifest per run, and the latest.
    assert!(
        night
            .path(&format!("renders/cut/manifests/{first_run}.json"))
            .is_file()
    );
    let latest = manifest["run_id"].as_str().unwrap();
    assert_ne!(latest, first_run);
    assert!(
        night
            .path(&format!("renders/cut/manifests/{latest}.json"))
            .is_file()
    );
}

#[test]
fn a_csv_list_takes_its_project_from_the_flag_and_odd_names_keep_a_folder() {
    let night = Night::new();
    night.write("shots.csv", "id,prompt\nopening,a kite over the bay\n");
    night.ok(&["submit", "shots.csv", "--project", "Été 2027"]);
    night.ok(&["harvest", "--watch"]);
    assert!(night.path("renders/Été 2027/opening.mp4").is_file());

    let renamed = night.render(&["plan", "shots.csv", "--project", "spring/summer"]);
    assert_eq!(renamed.status.code(), Some(0));
    assert!(
        stderr_of(&renamed)
            .contains("project \"spring/summer\" is laid out in renders/spring-summer/"),
        "{}",
        stderr_of(&renamed)
    );
}

#[test]
fn an_older_run_harvested_late_never_covers_a_newer_nights_outputs() {
    let night = Night::new();
    night.write(
        "shots.yaml",
        "project: late\nshots:\n  - {id: a, prompt: monday's words}\n",
    );
    let monday = night.json(&["submit", "shots.yaml"]);
    let monday = monday["run_id"].as_str().unwrap().to_string();
    night.write(
        "shots.yaml",
        "project: late\nshots:\n  - {id: a, prompt: tuesday's words}\n",
    );
    let tuesday = night.json(&["submit", "shots.yaml"]);
    let tuesday = tuesday["run_id"].as_str().unwrap().to_string();
    night.ok(&["harvest", &tuesday, "--watch"]);
    let tuesdays_video = std::fs::read(night.path("renders/late/a.mp4")).unwrap();

    night.ok(&["harvest", &monday, "--watch"]);
    assert_eq!(
        std::fs::read(night.path("renders/late/a.mp4")).unwrap(),
        tuesdays_video
    );
    assert_eq!(night.manifest("renders/late")["run_id"], tuesday.as_str());
    assert!(!night.path("renders/late/superseded").exists());
    assert!(
        night
            .path(&format!("renders/late/manifests/{monday}.json"))
            .is_file()
    );
    let report = night.render(&["report", &monday]);
    assert_eq!(report.status.code(), Some(2), "{}", stderr_of(&report));
    assert!(
        stderr_of(&report).contains("newer run"),
        "{}",
        stderr_of(&report)
    );
}
