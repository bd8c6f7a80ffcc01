//! Shot lists → a priced, validated Plan: one request per take, each with its cache key and cost.
//!
//! Here: how to plan ([`PlanOptions`], the built-in defaults) and [`build`] and [`plan_files`],
//! which plan a set of shot lists. Beside it: `requests` (the [`Plan`] and its requests: the
//! shapes the later stages, batch, submit and harvest, consume), `totals` (what a plan costs, in
//! sum and per model and size), `inputs` (reading shot lists and the catalog), `planner` (the
//! per-shot planning behind `build`), `resolve` (where each of a shot's values comes from),
//! `checks` (the shot against its provider's catalog), `reference` (first-frame images),
//! `shared_str` (strings that point into a list's text) and `shot_ids` (each id's first use).

mod checks;
mod inputs;
mod planner;
mod reference;
mod requests;
mod resolve;
mod shared_str;
mod shot_ids;
mod totals;

use std::io::Read;
use std::path::PathBuf;

use crate::provider::{Provider, Providers};
use crate::shotlist::diagnostic::{has_errors, sort_and_dedup};
use crate::shotlist::{Diagnostic, ShotListInput};
use render_wire::catalog::{Catalog, Model, Seconds, Size};
use render_wire::key::RequestKey;

use planner::Planner;

pub use inputs::{load_catalog, read_inputs};
pub use requests::{Plan, PlannedRequest, PlannedShot, Reference, Target};
pub use shared_str::SharedStr;
pub use totals::{OverBudget, Subtotal};

/// Used when neither the shot, its list's `defaults`, nor a flag names a model.
pub const DEFAULT_MODEL: &str = "sora-2";
pub const DEFAULT_SIZE: Size = Size {
    width: 1280,
    height: 720,
};
pub const DEFAULT_SECONDS: Seconds = Seconds(8);
pub use crate::provider::DEFAULT_BASE_URL;
/// Where diagnostics about flags point.
pub const COMMAND_LINE: &str = "command line";

/// How to plan: who renders, and the defaults from the command line.
///
/// Precedence for each of provider, model, size and seconds: the shot's own value, then its
/// list's `defaults`, then these flags (the providers' default), then the built-in defaults
/// (sora-2, 1280x720, 8 s, or the provider's first offer where it has none of those).
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Who can render; shots without a `provider` go to its default.
    pub providers: Providers,
    pub model: Option<Model>,
    pub size: Option<Size>,
    pub seconds: Option<Seconds>,
}

impl PlanOptions {
    pub fn new(providers: Providers) -> PlanOptions {
        PlanOptions {
            providers,
            model: None,
            size: None,
            seconds: None,
        }
    }

    /// One OpenAI-dialect provider whose identity is `id` (a host such as `127.0.0.1`, or a
    /// base URL), rendering the models of `catalog`: what tests and benchmarks plan against.
    pub fn single(id: &str, catalog: Catalog) -> PlanOptions {
        let base_url = if id.contains("://") {
            id.to_string()
        } else {
            format!("http://{id}/v1")
        };
        PlanOptions::new(Providers::of(vec![Provider {
            name: crate::provider::DEFAULT_PROVIDER.into(),
            id: id.to_string(),
            base_url,
            api_key_env: None,
            dialect: render_wire::dialect::Dialect::Openai,
            lane: crate::provider::LaneChoice::Auto,
            max_in_flight: crate::provider::DEFAULT_MAX_IN_FLIGHT,
            catalog,
            thumbnails: None,
        }]))
    }
}

/// The outcome of planning a set of shot lists: the plan when nothing is invalid, every
/// diagnostic (errors and warnings, sorted), and the texts they point into.
#[derive(Clone, Debug)]
pub struct PlanRun {
    pub inputs: Vec<ShotListInput>,
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl PlanRun {
    pub fn is_valid(&self) -> bool {
        self.plan.is_some()
    }
}

/// Reads the shot lists at `paths` (`-` is YAML from `stdin`) and plans them.
pub fn plan_files(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
    opts: &PlanOptions,
    is_cached: &dyn Fn(&RequestKey) -> bool,
) -> PlanRun {
    let (inputs, mut diagnostics) = read_inputs(paths, stdin);
    let plan = match build(&inputs, opts, is_cached) {
        Ok((plan, warnings)) if diagnostics.is_empty() => {
            diagnostics = warnings;
            Some(plan)
        }
        Ok((_, more)) | Err(more) => {
            diagnostics.extend(more);
            None
        }
    };
    sort_and_dedup(&mut diagnostics);
    PlanRun {
        inputs,
        plan,
        diagnostics,
    }
}

/// Validates and prices shot lists: one [`PlannedRequest`] per take of each shot.
///
/// `Ok` holds the plan and its warnings; `Err` every diagnostic (errors and warnings) when
/// anything is invalid. Diagnostics are sorted by file and position. Reference images are read
/// (header and SHA-256) once per distinct path.
pub fn build(
    lists: &[ShotListInput],
    opts: &PlanOptions,
    is_cached: &dyn Fn(&RequestKey) -> bool,
) -> Result<(Plan, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut planner = Planner::new(opts);
    let mut plan = Plan::default();
    for input in lists {
        let (list, diagnostics) = planner.plan_list(input, &mut plan.requests);
        planner.diagnostics.extend(diagnostics);
        plan.sources.push(PathBuf::from(&input.path));
        if plan.project.is_none() {
            plan.project = list.project.map(|p| p.value);
        }
    }
    // Asked once every request is planned, so that a probe reading its index on another
    // thread (the CLI's) has had the whole parse to do it.
    for request in &mut plan.requests {
        request.cached = is_cached(&request.key);
    }
    for request in &plan.requests {
        if !plan.providers.iter().any(|p| **p == *request.provider) {
            plan.providers.push(request.provider.to_string());
        }
    }
    planner.warn_retired();
    let mut diagnostics = planner.diagnostics;
    sort_and_dedup(&mut diagnostics);
    if has_errors(&diagnostics) {
        return Err(diagnostics);
    }
    Ok((plan, diagnostics))
}
