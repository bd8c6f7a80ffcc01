//! Snapshots of what people and scripts see: rendered diagnostics and the JSON plan.

use std::path::PathBuf;

use render::report::plan::{plan_json, render_diagnostics, render_table};
use render_pipeline::plan::{PlanOptions, PlanRun, plan_files};
use render_wire::catalog::Catalog;

fn run(paths: &[&str], provider: &str) -> PlanRun {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    plan_files(
        &paths,
        &mut std::io::empty(),
        &PlanOptions::single(provider, Catalog::builtin()),
        &|_| false,
    )
}

macro_rules! snapshot {
    ($($body:tt)*) => {
        insta::with_settings!({snapshot_path => "fixtures/snapshots", prepend_module_to_snapshot => false}, {
            $($body)*
        })
    };
}

#[test]
fn broken_yaml_diagnostics() {
    let run = run(&["shotlists/broken.yaml"], "127.0.0.1");
    assert!(!run.is_valid());
    let rendered = render_diagnostics(&run.diagnostics, &run.inputs, false);
    snapshot!(insta::assert_snapshot!("broken_yaml_diagnostics", rendered));
}

#[test]
fn retirement_warnings_on_api_openai_com() {
    let run = run(&["shotlists/night.yaml"], "api.openai.com");
    assert!(run.is_valid(), "warnings do not make a plan invalid");
    let rendered = render_diagnostics(&run.diagnostics, &run.inputs, false);
    snapshot!(insta::assert_snapshot!("retirement_warnings", rendered));
}

#[test]
fn night_yaml_table() {
    let run = run(&["shotlists/night.yaml"], "127.0.0.1");
    let table = render_table(run.plan.as_ref().unwrap(), Some("20".parse().unwrap()));
    snapshot!(insta::assert_snapshot!("night_yaml_table", table));
}

#[test]
fn night_yaml_json_plan() {
    let run = run(&["shotlists/night.yaml"], "127.0.0.1");
    let json = serde_json::to_value(plan_json(&run, Some("10".parse().unwrap()))).unwrap();
    snapshot!(insta::assert_json_snapshot!("night_yaml_json_plan", json));
}

#[test]
fn invalid_json_plan_carries_the_diagnostics() {
    let run = run(&["shotlists/broken.yaml"], "127.0.0.1");
    let json = serde_json::to_value(plan_json(&run, None)).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["shots"].as_array().unwrap().len(), 0);
    let first = &json["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["path"], "shotlists/broken.yaml");
    assert_eq!(
        (first["line"].as_u64(), first["col"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(first["message"], "unknown field `sise`");
    assert_eq!(first["help"], "did you mean `size`?");
}
