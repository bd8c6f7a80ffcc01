//! `render plan`: validate and price shot lists, showing what is already cached.
//!
//! [`PlanArgs`] and [`prepare`] are shared with the commands that plan before they act
//! (`render submit`, `render nightly`), so every command reads shot lists the same way.

use std::path::{Path, PathBuf};

use crate::report;
use render_pipeline::ledger::Ledger;
use render_pipeline::outputs::CachedOutputs;
use render_pipeline::plan::{COMMAND_LINE, PlanOptions, PlanRun};
use render_pipeline::provider::Providers;
use render_pipeline::select::{Selection, SelectionError};
use render_pipeline::shotlist::{Diagnostic, Pos};
use render_wire::catalog::{Model, Seconds, Size};
use render_wire::key::RequestKey;
use render_wire::money::Usd;

use super::{Format, GlobalArgs, Outcome};

/// The flags of every command that plans: flatten with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Shot lists: *.yaml, *.yml or *.csv; `-` reads YAML from standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Model for shots that name none (a list's `defaults` take precedence) [default: sora-2].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Size for shots that name none, WIDTHxHEIGHT [default: 1280x720].
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
    /// Seconds for shots that name none [default: 8].
    #[arg(long, value_name = "N")]
    pub seconds: Option<u32>,
    /// A catalog of models and prices merged over the built-in one (repeatable; later wins).
    /// `<state-dir>/catalog.yaml` is merged first when it exists.
    #[arg(long = "catalog", value_name = "FILE")]
    pub catalogs: Vec<PathBuf>,
    /// Refuse (exit status 3) when the total exceeds this many dollars.
    #[arg(long, value_name = "USD")]
    pub budget: Option<Usd>,
    /// The provider of shots that name none (a list's `defaults` take precedence)
    /// [default: `default`, the server of OPENAI_BASE_URL].
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Only the shots whose id matches (a glob such as `sq010_*`; repeatable). The whole list
    /// is still checked.
    #[arg(long = "only", value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Only the shots with this tag (repeatable; with --only, a shot must match both).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The project the night belongs to (names its output folder); overrides the lists'
    /// `project:`, and gives CSV lists one.
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArgs,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let prepared = match prepare(&args.plan, global) {
        Ok(prepared) => prepared,
        Err(usage) => {
            report::plan::print_diagnostics(&[usage], &[])?;
            return Ok(Outcome::Usage);
        }
    };
    let json = global.format == Format::Json;
    report::plan::print_run(&prepared.run, args.plan.budget, json)?;
    Ok(prepared.outcome(args.plan.budget))
}

/// A planning run with the providers it was priced for.
#[derive(Debug)]
pub struct Prepared {
    pub run: PlanRun,
    pub providers: Providers,
}

impl Prepared {
    /// `Invalid` when anything is invalid, `OverBudget` when the total exceeds `budget`.
    pub fn outcome(&self, budget: Option<Usd>) -> Outcome {
        let Some(plan) = &self.run.plan else {
            return Outcome::Invalid;
        };
        match budget.map(|b| plan.check_budget(b)) {
            Some(Err(_)) => Outcome::OverBudget,
            _ => Outcome::Success,
        }
    }
}

/// Loads the catalog (built-in, `<state-dir>/catalog.yaml`, `--catalog`) and the providers
/// (`OPENAI_BASE_URL`, then `--providers` or `<state-dir>/providers.yaml`), reads the shot lists
/// (`-` from standard input) and plans them. Invalid lists or catalogs come back as diagnostics
/// in the run; `Err` is a usage problem (a bad providers file or `OPENAI_BASE_URL`, an unknown
/// `--provider`).
pub fn prepare(args: &PlanArgs, global: &GlobalArgs) -> Result<Prepared, Diagnostic> {
    let catalog = match render_pipeline::plan::load_catalog(&global.state_dir, &args.catalogs) {
        Ok(catalog) => catalog,
        Err(err) => {
            let diagnostic = Diagnostic::error(COMMAND_LINE, Pos::NONE, err.to_string())
                .with_help("fix the catalog file, or leave out --catalog");
            return Ok(invalid(diagnostic));
        }
    };
    // A configuration mistake, like a bad flag: a usage error.
    let providers = super::state::load_providers(global, &catalog).map_err(|err| {
        Diagnostic::error(COMMAND_LINE, Pos::NONE, err.to_string()).with_help(
            "fix OPENAI_BASE_URL or the providers file (see the README's Providers section)",
        )
    })?;
    prepare_with(args, global, providers)
}

fn invalid(diagnostic: Diagnostic) -> Prepared {
    Prepared {
        run: PlanRun {
            inputs: Vec::new(),
            plan: None,
            diagnostics: vec![diagnostic],
        },
        providers: Providers::of(Vec::new()),
    }
}

/// [`prepare`] for known providers (the in-process sandbox's).
pub fn prepare_with(
    args: &PlanArgs,
    global: &GlobalArgs,
    mut providers: Providers,
) -> Result<Prepared, Diagnostic> {
    if let Some(name) = &args.provider {
        providers.set_default(name).map_err(|err| {
            Diagnostic::error("--provider", Pos::NONE, err.to_string())
                .with_help("name a provider of providers.yaml (or `default`)")
        })?;
    }
    let selection = Selection::new(&args.only, &args.tags).map_err(selection_error)?;
    let opts = PlanOptions {
        providers,
        model: args.model.clone().map(Model),
        size: args.size,
        seconds: args.seconds.map(Seconds),
    };
    let local = cache_probe(&global.state_dir);
    let shared = shared_keys(global)?;
    let is_cached = |key: &RequestKey| shared.contains(key) || local(key);
    let mut run = render_pipeline::plan::plan_files(
        &args.files,
        &mut std::io::stdin().lock(),
        &opts,
        &is_cached,
    );
    if let Some(plan) = &mut run.plan {
        selection.apply(plan).map_err(selection_error)?;
        if args.project.is_some() {
            plan.project.clone_from(&args.project);
        }
        if let Some(note) = plan.project.as_deref().and_then(renamed_folder_note) {
            run.diagnostics.push(note);
        }
    }
    Ok(Prepared {
        run,
        providers: opts.providers,
    })
}

fn selection_error(err: SelectionError) -> Diagnostic {
    let help = match err {
        SelectionError::BadPattern { .. } => "patterns are globs: `sq010_*`, `sh0?0`, `{a,b}`",
        SelectionError::Unmatched { .. } => "`render plan` without --only/--tag lists every shot",
    };
    Diagnostic::error(COMMAND_LINE, Pos::NONE, err.to_string()).with_help(help)
}

/// Says so when a project's name could not name its folder as written.
fn renamed_folder_note(project: &str) -> Option<Diagnostic> {
    let folder = render_pipeline::outputs::project_folder(project);
    (folder != project).then(|| {
        Diagnostic::warning(
            COMMAND_LINE,
            Pos::NONE,
            format!("project {project:?} is laid out in renders/{folder}/"),
        )
        .with_help("a folder name cannot hold path separators, control characters or a leading dot")
    })
}

/// Every key the studio's shared cache holds (one listing), when one is configured. An
/// unreachable store is said, and then nothing counts as shared.
fn shared_keys(global: &GlobalArgs) -> Result<std::collections::HashSet<RequestKey>, Diagnostic> {
    let shared = super::state::shared_cache(global).map_err(|err| {
        Diagnostic::error("--cache", Pos::NONE, err.to_string())
            .with_help("e.g. --cache s3://studio-renders/cache (credentials from AWS_* variables)")
    })?;
    let Some(shared) = shared else {
        return Ok(Default::default());
    };
    let listed = super::state::runtime()
        .map_err(|e| Diagnostic::error("--cache", Pos::NONE, e.to_string()))?
        .block_on(shared.keys());
    Ok(listed.unwrap_or_else(|err| {
        crate::report::output::warn(format_args!("{err}; planning with the local cache only"));
        Default::default()
    }))
}

/// Whether the local cache holds a key's output: recorded in the ledger and present in the
/// store. Without a state directory nothing is cached (and `plan` creates none).
pub fn cache_probe(state_dir: &Path) -> impl Fn(&RequestKey) -> bool + use<> {
    let ledger_path = state_dir.join(crate::cli::state::LEDGER_FILE);
    // A plan asks for every request: the index answers many keys with one query.
    let cached = ledger_path
        .is_file()
        .then(|| {
            let cached = CachedOutputs::new(
                Ledger::open(&ledger_path).ok()?,
                render_pipeline::cache::open(state_dir).ok()?,
            );
            Some(cached.prefetch(&ledger_path))
        })
        .flatten();
    move |key: &RequestKey| cached.as_ref().is_some_and(|cached| cached.contains(key))
}
