//! `render nightly`: plan → submit → wait → harvest → outputs and manifest, in one resumable
//! command. Run it again after any crash: it continues the same run and never resubmits what is
//! in flight or done.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::harvest::TrustArgs;
use super::plan::{PlanArgs, Prepared, prepare, prepare_with};
use super::state::{load_providers, open_state, route_with_key, routes_for, runtime};
use super::submit::{LimitArgs, checked_plan};
use super::{Format, GlobalArgs, Outcome};
use crate::report::output;
use crate::report::progress::Progress;
use crate::report::spend::WithSpend;
use render_pipeline::harvest::{HarvestOptions, HarvestReport, harvest, run_providers};
use render_pipeline::lanes::Routes;
use render_pipeline::provider::Provider;
use render_pipeline::submit::submit;
use render_sandbox::{SandboxConfig, SandboxHandle};

pub const NIGHTLY_HELP: &str = "\
Exit status:
  0   every request harvested (or already cached)
  1   invalid shot list or catalog (nothing was spent)
  3   the plan exceeds --budget (nothing was spent)
  4   some requests failed (their errors are in the manifest)
  5   some requests were lost: they expired before harvest (`render retry RUN`)
  10  runtime failure (API, network, disk): run the same command again to continue

Hooks run through `sh -c` with the manifest path as $1 and in $RENDER_MANIFEST.";

#[derive(Debug, clap::Args)]
#[command(after_help = NIGHTLY_HELP)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Run the whole night against a built-in sandbox started in-process (no key, no cost).
    #[arg(long)]
    pub sandbox: bool,
    /// With --sandbox: the size of each generated video in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, requires = "sandbox")]
    pub sandbox_video_bytes: u64,
    /// Videos downloading at once (as many more are made durable and fetch their thumbnails).
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Output folder (default: renders/<project>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Command to run when every request was harvested.
    #[arg(long, value_name = "CMD")]
    pub on_complete: Option<String>,
    /// Command to run when some requests failed or were lost.
    #[arg(long, value_name = "CMD")]
    pub on_failure: Option<String>,
    /// Longest pause between polls while waiting for batches.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub max_poll_interval: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Kept alive for the whole night when --sandbox is given.
    let (prepared, sandbox_routes, _sandboxes) = if args.sandbox {
        match sandbox_night(&args, global)? {
            Ok(night) => night,
            Err(outcome) => return Ok(outcome),
        }
    } else {
        match prepare(&args.plan, global) {
            Ok(prepared) => (prepared, None, Vec::new()),
            Err(usage) => {
                crate::report::plan::print_diagnostics(&[usage], &[])?;
                return Ok(Outcome::Usage);
            }
        }
    };
    let (plan, providers) = match checked_plan(prepared, &args.plan)? {
        Ok(planned) => planned,
        Err(outcome) => return Ok(outcome),
    };
    let routes = match sandbox_routes {
        Some(routes) => routes,
        None => routes_for(&providers, &plan.providers, args.trust.bounds())?,
    };
    let mut state = open_state(global)?;
    let human = global.format == Format::Human;
    let estimate = super::spend::before_sending(&plan, &mut state.ledger, human)?;
    let progress = global.progress();
    let harvest_options = HarvestOptions {
        jobs: args.jobs,
        watch: true,
        out_dir: args.out.clone(),
        max_poll_interval: Duration::from_secs(args.max_poll_interval.max(1)),
        missing: args.trust.rule(),
        shared: state.shared.take(),
    };
    let report = runtime()?.block_on(async {
        let submitted = submit(
            &plan,
            &mut state.ledger,
            &state.store,
            harvest_options.shared.as_ref(),
            &routes,
            args.limits.limits(),
            &progress,
        )
        .await?;
        // After submitting, so tonight's run is the one a rerun continues.
        collect_leftovers(
            &submitted.run_id,
            &mut state,
            &routes,
            &harvest_options,
            &progress,
        )
        .await;
        let report = harvest(
            std::slice::from_ref(&submitted.run_id),
            &mut state.ledger,
            &routes,
            &state.store,
            &harvest_options,
            &progress,
        )
        .await?;
        anyhow::Ok(report)
    });
    progress.finish();
    let report = report?;
    let spent = match report.runs.first() {
        Some(run) => super::spend::spent(&state.ledger, &run.run_id)?,
        None => render_wire::money::Usd::ZERO,
    };
    output::print(&WithSpend::new(&report, &estimate, spent), global.format)?;
    super::report::write_sheets(&report, &state.ledger, global)?;
    let outcome = super::harvest::outcome(&report, true);
    let secrets: Vec<String> = providers
        .iter()
        .filter_map(|p| p.api_key_env.clone())
        .chain(["OPENAI_API_KEY".to_string()])
        .collect();
    run_hook(&args, &report, outcome, &secrets)?;
    Ok(outcome)
}

/// Collects whatever earlier nights of this provider left finished but unharvested (a crash,
/// an edited list) before its deadline passes. Best effort: their trouble must not stop
/// tonight's work.
async fn collect_leftovers(
    tonight: &str,
    state: &mut super::state::State,
    routes: &Routes,
    options: &HarvestOptions,
    progress: &Progress,
) {
    let served = |run: &render_pipeline::ledger::RunRow| {
        run_providers(run).iter().any(|p| routes.get(p).is_some())
    };
    let earlier: Vec<String> = match state.ledger.runs() {
        Ok(runs) => runs
            .into_iter()
            .filter(|r| !r.done && r.id != tonight && served(r))
            .map(|r| r.id)
            .collect(),
        Err(err) => {
            tracing::warn!("listing earlier nights: {err}");
            return;
        }
    };
    if earlier.is_empty() {
        return;
    }
    let leftovers = HarvestOptions {
        watch: false,
        out_dir: None,
        ..options.clone()
    };
    let result = harvest(
        &earlier,
        &mut state.ledger,
        routes,
        &state.store,
        &leftovers,
        progress,
    );
    if let Err(err) = result.await {
        output::warn(format_args!("collecting earlier nights' videos: {err}"));
    }
}

/// What `--sandbox` plans with: the plan, the routes to the sandboxes, and the sandboxes.
type SandboxNight = (Prepared, Option<Routes>, Vec<SandboxHandle>);

/// Plans against in-process sandboxes: one per configured provider, speaking its dialect and
/// rendering its catalog, so a night with several providers rehearses each. Identities become
/// `sandbox:<name>` (stable, so an unchanged rehearsal is cached); every sandbox starts from a
/// fresh seed, so no two rehearsals share a batch, file or video id.
fn sandbox_night(
    args: &Args,
    global: &GlobalArgs,
) -> anyhow::Result<Result<SandboxNight, Outcome>> {
    let catalog = render_pipeline::plan::load_catalog(&global.state_dir, &args.plan.catalogs)?;
    let providers = load_providers(global, &catalog)?;
    let mut sandboxes = Vec::new();
    let mut routes = Vec::new();
    let mut failure = None;
    let providers = providers.map(|provider| {
        let key = provider
            .facts()
            .requires_key
            .then(|| "sk-sandbox".to_string());
        let config = SandboxConfig::default()
            .seed(rand::random())
            .video_bytes(args.sandbox_video_bytes)
            .dialect(provider.dialect)
            .catalog(provider.catalog.as_served());
        let config = match &key {
            Some(key) => config.api_key(key.clone()),
            None => config,
        };
        match render_sandbox::spawn(config) {
            Ok(sandbox) => {
                let rehearsed = Provider {
                    id: format!("sandbox:{}", provider.name),
                    base_url: sandbox.base_url().to_string(),
                    api_key_env: None,
                    ..provider
                };
                match route_with_key(&rehearsed, key, args.trust.bounds()) {
                    Ok(route) => routes.push(route),
                    Err(err) => failure = Some(err),
                }
                output::notice(
                    global.format,
                    format_args!(
                        "sandbox for {} ({}) serving at {}",
                        rehearsed.name,
                        rehearsed.dialect,
                        sandbox.base_url()
                    ),
                );
                sandboxes.push(sandbox);
                rehearsed
            }
            Err(err) => {
                failure = Some(anyhow::Error::from(err).context("cannot start the sandbox"));
                provider
            }
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    match prepare_with(&args.plan, global, providers) {
        Ok(prepared) => Ok(Ok((prepared, Some(Routes::new(routes)), sandboxes))),
        Err(usage) => {
            crate::report::plan::print_diagnostics(&[usage], &[])?;
            Ok(Err(Outcome::Usage))
        }
    }
}

/// Runs --on-complete or --on-failure with the manifest path. The hook gets what it needs —
/// the manifest, the run, the outcome — and none of the API keys; its output goes to stderr,
/// so stdout stays the one JSON document under `--format json`.
fn run_hook(
    args: &Args,
    report: &HarvestReport,
    outcome: Outcome,
    secrets: &[String],
) -> anyhow::Result<()> {
    let hook = match outcome {
        Outcome::Success => args.on_complete.as_deref(),
        _ => args.on_failure.as_deref(),
    };
    let (Some(hook), Some(run)) = (hook, report.runs.first()) else {
        return Ok(());
    };
    let Some(manifest) = run.manifest.as_deref() else {
        return Ok(());
    };
    let mut command = hook_command(hook, manifest);
    command
        .env("RENDER_RUN_ID", &run.run_id)
        .env("RENDER_OUTCOME", outcome.code().to_string())
        .stdout(std::process::Stdio::from(std::io::stderr()));
    for secret in secrets {
        command.env_remove(secret);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run hook `{hook}`"))?;
    if !status.success() {
        output::warn(format_args!("hook `{hook}` exited with {status}"));
    }
    Ok(())
}

fn hook_command(hook: &str, manifest: &Path) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(hook)
        .arg("render-hook")
        .arg(manifest)
        .env("RENDER_MANIFEST", manifest);
    command
}
