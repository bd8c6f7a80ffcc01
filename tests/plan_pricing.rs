//! Pricing, defaults, YAML/CSV equivalence and cache keys of planned requests.

use std::path::{Path, PathBuf};

use render_pipeline::plan::{Plan, PlanOptions, PlannedRequest, build};
use render_pipeline::shotlist::{Format, ShotListInput};
use render_wire::catalog::{Catalog, Model, Seconds};
use render_wire::key::RequestKey;
use render_wire::money::Usd;

fn opts() -> PlanOptions {
    PlanOptions::single("127.0.0.1", Catalog::builtin())
}

fn input(path: &str, base: &Path, text: &str) -> ShotListInput {
    let format = Format::from_path(Path::new(path)).expect("a known extension");
    ShotListInput::new(path, base, text.to_string(), format)
}

fn plan_with(
    inputs: &[ShotListInput],
    opts: &PlanOptions,
    cached: &dyn Fn(&RequestKey) -> bool,
) -> Plan {
    match build(inputs, opts, cached) {
        Ok((plan, _)) => plan,
        Err(diagnostics) => panic!("invalid: {diagnostics:#?}"),
    }
}

fn plan_text(path: &str, text: &str) -> Plan {
    plan_with(
        &[input(path, Path::new("shotlists"), text)],
        &opts(),
        &|_| false,
    )
}

fn plan_file(path: &str) -> Plan {
    let text = std::fs::read_to_string(path).unwrap();
    plan_text(path, &text)
}

fn usd(text: &str) -> Usd {
    text.parse().unwrap()
}

/// The parts of a request that do not depend on which file it came from.
fn essence(r: &PlannedRequest) -> String {
    format!(
        "{} take {} {} {} {} {:?} ref={:?} tags={:?} key={} cost={}",
        r.shot_id,
        r.take,
        r.model,
        r.size,
        r.seconds.0,
        r.prompt,
        r.reference.as_ref().map(|f| f.sha256.hex()),
        r.tags,
        r.key.hex(),
        r.cost(),
    )
}

#[test]
fn night_yaml_and_night_csv_plan_the_same_requests() {
    let yaml = plan_file("shotlists/night.yaml");
    let csv = plan_file("shotlists/night.csv");
    assert_eq!(yaml.requests.len(), 12);
    let yaml: Vec<_> = yaml.requests.iter().map(essence).collect();
    let csv: Vec<_> = csv.requests.iter().map(essence).collect();
    assert_eq!(yaml, csv);
}

#[test]
fn costs_are_seconds_times_the_batch_rate_and_totals_add_up_exactly() {
    let plan = plan_file("shotlists/night.yaml");
    let expected = [
        ("s01-harbour-wide", 1, "0.40", "0.80"),
        ("s01-harbour-wide", 2, "0.40", "0.80"),
        ("s02-alley", 1, "0.20", "0.40"),
        ("s03-lighthouse", 1, "1.80", "3.60"),
        ("s04-tower-vertical", 1, "0.40", "0.80"),
        ("s04-tower-vertical", 2, "0.40", "0.80"),
        ("s04-tower-vertical", 3, "0.40", "0.80"),
        ("s05-skyline", 1, "2.80", "5.60"),
        ("s06-nets", 1, "0.20", "0.40"),
        ("s07-ferry", 1, "4.00", "8.00"),
        ("s07-ferry", 2, "4.00", "8.00"),
        ("s08-gulls", 1, "0.40", "0.80"),
    ];
    let found: Vec<(&str, u32, Usd, Usd)> = plan
        .requests
        .iter()
        .map(|r| (&*r.shot_id, r.take, r.cost(), r.standard_cost))
        .collect();
    let expected: Vec<(&str, u32, Usd, Usd)> = expected
        .iter()
        .map(|(id, take, cost, standard)| (*id, *take, usd(cost), usd(standard)))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(plan.total(), usd("15.40"));
    assert_eq!(plan.standard_total(), usd("30.80"));
    assert_eq!(plan.saving(), usd("15.40"));
    let subtotal_sum: Usd = plan.subtotals().iter().map(|s| s.cost).sum();
    assert_eq!(subtotal_sum, plan.total());
    let subtotals: Vec<(String, String, usize, Usd)> = plan
        .subtotals()
        .iter()
        .map(|s| (s.model.to_string(), s.size.to_string(), s.requests, s.cost))
        .collect();
    assert_eq!(
        subtotals,
        [
            ("sora-2".into(), "720x1280".into(), 3, usd("1.20")),
            ("sora-2".into(), "1280x720".into(), 5, usd("1.60")),
            ("sora-2-pro".into(), "1280x720".into(), 1, usd("1.80")),
            ("sora-2-pro".into(), "1792x1024".into(), 2, usd("8.00")),
            ("sora-2-pro".into(), "1920x1080".into(), 1, usd("2.80")),
        ]
    );
}

#[test]
fn sub_cent_rates_sum_without_rounding() {
    let mut catalog = Catalog::builtin();
    catalog
        .merge_str(
            "models:\n  - name: tiny\n    seconds: [3]\n    sizes:\n      - { size: 640x360, standard: \"0.000334\" }\n",
            "user.yaml",
        )
        .unwrap();
    let text = "defaults: {model: tiny, size: 640x360, seconds: 3}\nshots:\n  - {id: a, prompt: x, takes: 7}\n";
    let list = input("t.yaml", Path::new("."), text);
    let opts = PlanOptions::single("127.0.0.1", catalog);
    let (plan, _) = build(&[list], &opts, &|_| false).unwrap();
    // 0.000167 (half of 0.000334) × 3 s × 7 takes.
    assert_eq!(plan.total(), Usd::from_micros(167 * 3 * 7));
    assert_eq!(plan.standard_total(), Usd::from_micros(334 * 3 * 7));
}

#[test]
fn defaults_follow_shot_then_file_then_flags_then_builtin() {
    let text = "defaults: {seconds: 12}\nshots:\n  - {id: own, prompt: x, model: sora-2-pro, size: 1792x1024, seconds: 4}\n  - {id: inherits, prompt: x}\n";
    let flags = PlanOptions {
        model: Some(Model("sora-2-pro".into())),
        size: Some("720x1280".parse().unwrap()),
        seconds: Some(Seconds(16)),
        ..opts()
    };
    let plan = plan_with(&[input("d.yaml", Path::new("."), text)], &flags, &|_| false);
    let found: Vec<(String, String, u32)> = plan
        .requests
        .iter()
        .map(|r| (r.model.to_string(), r.size.to_string(), r.seconds.0))
        .collect();
    assert_eq!(
        found,
        [
            ("sora-2-pro".into(), "1792x1024".into(), 4),
            ("sora-2-pro".into(), "720x1280".into(), 12),
        ]
    );
    let builtin = plan_text("b.yaml", "shots:\n  - {id: a, prompt: x}\n");
    let r = &builtin.requests[0];
    assert_eq!(
        (r.model.as_str(), r.size.to_string(), r.seconds),
        ("sora-2", "1280x720".into(), Seconds(8))
    );
}

#[test]
fn cached_requests_cost_nothing_but_keep_their_standard_price() {
    let text = "shots:\n  - {id: a, prompt: x, takes: 3}\n";
    let all = plan_text("c.yaml", text);
    let second = all.requests[1].key;
    let plan = plan_with(&[input("c.yaml", Path::new("."), text)], &opts(), &|k| {
        *k == second
    });
    let cached: Vec<(u32, bool, Usd)> = plan
        .requests
        .iter()
        .map(|r| (r.take, r.cached, r.cost()))
        .collect();
    assert_eq!(
        cached,
        [
            (1, false, usd("0.40")),
            (2, true, Usd::ZERO),
            (3, false, usd("0.40"))
        ]
    );
    assert_eq!(plan.cached_count(), 1);
    assert_eq!(plan.total(), usd("0.80"));
    assert_eq!(plan.standard_total(), usd("2.40"));
}

#[test]
fn budget_is_checked_against_the_batch_total() {
    let plan = plan_file("shotlists/night.yaml");
    assert!(plan.check_budget(usd("15.40")).is_ok());
    let over = plan.check_budget(usd("15.39")).unwrap_err();
    assert_eq!((over.total, over.budget), (usd("15.40"), usd("15.39")));
    assert!(over.to_string().contains("$15.40"), "{over}");
}

fn keys(plan: &Plan) -> Vec<(String, u32, String)> {
    let mut keys: Vec<_> = plan
        .requests
        .iter()
        .map(|r| (r.prompt.to_string(), r.take, r.key.hex()))
        .collect();
    keys.sort();
    keys
}

#[test]
fn keys_ignore_shot_names_order_tags_and_files() {
    let original = plan_text(
        "a.yaml",
        "shots:\n  - {id: one, prompt: dusk, takes: 2, tags: [x]}\n  - {id: two, prompt: dawn, reference: refs/harbour.png}\n",
    );
    let renamed_and_reordered = plan_text(
        "elsewhere.yaml",
        "project: other\nshots:\n  - {id: zwei, prompt: dawn, reference: ./refs/harbour.png}\n  - {id: eins, prompt: dusk, takes: 2}\n",
    );
    let as_csv = plan_text(
        "a.csv",
        "id,prompt,takes,reference\nb,dawn,,refs/harbour.png\na,dusk,2,\n",
    );
    assert_eq!(keys(&original), keys(&renamed_and_reordered));
    assert_eq!(keys(&original), keys(&as_csv));
}

#[test]
fn keys_change_with_everything_that_changes_the_video() {
    let dir = tempfile::tempdir().unwrap();
    let harbour = std::fs::read("shotlists/refs/harbour.png").unwrap();
    std::fs::write(dir.path().join("a.png"), &harbour).unwrap();
    let mut edited = harbour.clone();
    edited.push(0); // Same header, different bytes.
    std::fs::write(dir.path().join("b.png"), &edited).unwrap();

    let base =
        "{id: s, prompt: dusk, model: sora-2-pro, size: 1280x720, seconds: 8, reference: a.png}";
    let variants = [
        base.replace("dusk", "dawn"),
        base.replace("1280x720", "720x1280")
            .replace(", reference: a.png", ""),
        base.replace("seconds: 8", "seconds: 4"),
        base.replace("sora-2-pro", "sora-2"),
        base.replace("a.png", "b.png"),
        base.replace(", reference: a.png", ""),
    ];
    let key_of = |shot: &str, provider: &str| {
        let list = input("k.yaml", dir.path(), &format!("shots:\n  - {shot}\n"));
        let opts = PlanOptions::single(provider, Catalog::builtin());
        plan_with(&[list], &opts, &|_| false).requests[0].key
    };
    let original = key_of(base, "127.0.0.1");
    let mut seen = std::collections::HashSet::from([original]);
    for variant in &variants {
        assert!(
            seen.insert(key_of(variant, "127.0.0.1")),
            "{variant} kept the key"
        );
    }
    assert!(
        seen.insert(key_of(base, "api.openai.com")),
        "the provider changes the key"
    );
    // The same image bytes under another name keep the key.
    std::fs::copy(dir.path().join("a.png"), dir.path().join("copy.png")).unwrap();
    assert_eq!(
        key_of(&base.replace("a.png", "copy.png"), "127.0.0.1"),
        original
    );
}

#[test]
fn takes_are_distinct_requests_with_distinct_keys() {
    let plan = plan_text("t.yaml", "shots:\n  - {id: a, prompt: x, takes: 4}\n");
    let takes: Vec<(u32, u32)> = plan.requests.iter().map(|r| (r.take, r.takes)).collect();
    assert_eq!(takes, [(1, 4), (2, 4), (3, 4), (4, 4)]);
    let distinct: std::collections::HashSet<_> = plan.requests.iter().map(|r| r.key).collect();
    assert_eq!(distinct.len(), 4);
}

#[test]
fn references_resolve_against_the_lists_folder_and_are_hashed_once() {
    let plan = plan_file("shotlists/night.yaml");
    let reference = plan.requests[0].reference.as_ref().unwrap();
    assert_eq!(reference.path, PathBuf::from("shotlists/refs/harbour.png"));
    assert_eq!(reference.mime, "image/png");
    let bytes = std::fs::read("shotlists/refs/harbour.png").unwrap();
    assert_eq!(reference.bytes, bytes.len() as u64);
    assert_eq!(reference.sha256, render_wire::key::Sha256Hex::of(&bytes));
    let mimes: Vec<&str> = plan
        .requests
        .iter()
        .filter_map(|r| r.reference.as_ref())
        .map(|f| f.mime)
        .collect();
    assert!(
        mimes.contains(&"image/jpeg") && mimes.contains(&"image/webp"),
        "{mimes:?}"
    );
}

#[test]
fn several_lists_plan_together_and_ids_must_be_unique_across_them() {
    let a = input(
        "a.yaml",
        Path::new("."),
        "project: first\nshots:\n  - {id: x, prompt: one}\n",
    );
    let b = input("b.csv", Path::new("."), "id,prompt\ny,two\n");
    let plan = plan_with(&[a.clone(), b], &opts(), &|_| false);
    assert_eq!(plan.project.as_deref(), Some("first"));
    assert_eq!(
        plan.sources,
        [PathBuf::from("a.yaml"), PathBuf::from("b.csv")]
    );
    assert_eq!(plan.requests.len(), 2);

    let clash = input("c.csv", Path::new("."), "id,prompt\nx,again\n");
    let errors = build(&[a, clash], &opts(), &|_| false).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].path.as_str(), errors[0].line), ("c.csv", 2));
    assert_eq!(
        (
            errors[0].related[0].path.as_str(),
            errors[0].related[0].line
        ),
        ("a.yaml", 3)
    );
}

/// A list is planned while it is read, shot by shot: where the defaults come after the shots,
/// the shots wait for them, and the plan is the same as with the defaults first.
#[test]
fn defaults_after_the_shots_apply_to_them() {
    let shots =
        "shots:\n  - id: a\n    prompt: a harbour\n  - id: b\n    prompt: a boat\n    seconds: 4\n";
    let defaults = "defaults:\n  model: sora-2-pro\n  size: 1792x1024\n  seconds: 12\n";
    let first = plan_text("first.yaml", &format!("{defaults}{shots}"));
    let last = plan_text("last.yaml", &format!("{shots}{defaults}"));
    assert_eq!(keys(&first), keys(&last));
    assert_eq!(first.requests[0].model, Model("sora-2-pro".into()));
    assert_eq!(last.requests[1].seconds, Seconds(4));
    assert_eq!(first.total(), last.total());
}

/// The fast reader hands shots to the planner as it reads them; when it gives up part-way (a
/// quoted prompt), the list is planned again from the start, each shot and problem once.
#[test]
fn a_list_read_again_part_way_is_planned_once() {
    let text = "shots:\n  - id: a\n    prompt: plain\n  - id: a\n    prompt: again\n    model: nope\n  - id: c\n    prompt: \"quoted\"\n";
    let diagnostics = build(
        &[input("again.yaml", Path::new("shotlists"), text)],
        &opts(),
        &|_| false,
    )
    .expect_err("a duplicate id and an unknown model");
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.contains("duplicate shot id"))
            .count(),
        1,
        "{messages:#?}"
    );
    assert_eq!(
        messages.iter().filter(|m| m.contains("nope")).count(),
        1,
        "{messages:#?}"
    );
    let fixed = text.replace("  - id: a\n    prompt: again\n    model: nope\n", "");
    let plan = plan_text("again.yaml", &fixed);
    let ids: Vec<&str> = plan.requests.iter().map(|r| &*r.shot_id).collect();
    assert_eq!(ids, ["a", "c"]);
}

/// A plan of a hundred thousand shots holds each shot's strings once: ids and prompts written
/// as they are point into the list's text, a shot's takes share the shot, and shots rendered
/// alike share one target. What the list writes with escapes is read, not pointed at.
#[test]
fn requests_share_the_lists_text_their_shot_and_their_target() {
    let text = "shots:\n  - {id: a, prompt: a harbour at dusk, takes: 2, tags: [night]}\n  - id: b\n    prompt: \"a boat\\tat sea\"\n    tags: [night]\n  - id: \"c\"\n    prompt: 'a lighthouse'\n";
    let list = input("shared.yaml", Path::new("shotlists"), text);
    let plan = plan_with(std::slice::from_ref(&list), &opts(), &|_| false);
    let within_text = |s: &str| {
        let range = list.text.as_bytes().as_ptr_range();
        range.contains(&s.as_ptr()) && s.len() <= list.text.len()
    };
    let r = &plan.requests;
    assert_eq!(r.len(), 4);
    for (request, points_into_text) in [(&r[0], true), (&r[2], false), (&r[3], true)] {
        assert!(within_text(&request.shot_id), "{}", request.shot_id);
        assert_eq!(
            within_text(&request.prompt),
            points_into_text,
            "{:?}",
            request.prompt
        );
    }
    assert_eq!(&*r[2].prompt, "a boat\tat sea");
    assert_eq!(&*r[3].prompt, "a lighthouse");
    assert!(std::sync::Arc::ptr_eq(&r[0].shot, &r[1].shot));
    assert!(!std::sync::Arc::ptr_eq(&r[0].shot, &r[2].shot));
    assert!(std::sync::Arc::ptr_eq(&r[0].target, &r[3].target));
    assert!(std::sync::Arc::ptr_eq(&r[0].tags, &r[2].tags));
}
