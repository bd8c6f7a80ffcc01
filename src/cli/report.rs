//! `render report [RUN]`: lays a run out again from the ledger and the cache and writes its
//! contact sheet, without asking any provider anything. Also the sheet `harvest` and `nightly`
//! write after every lay-out.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::state::{existing_ledger, load_providers};
use super::{Format, GlobalArgs, Outcome, UsageError};
use crate::catalog::{Catalog, Size};
use crate::harvest::HarvestReport;
use crate::ledger::{Ledger, RunRow};
use crate::money::Usd;
use crate::outputs::{Manifest, ManifestEntry};
use crate::provider::Providers;
use crate::report::sheet::{self, Totals};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (its id or a unique prefix; default: the latest run).
    pub run: Option<String>,
    /// Output folder (default: the folder the run was laid out in, else renders/<project>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Written {
    sheet: PathBuf,
    manifest: PathBuf,
    run_id: String,
    requests: usize,
    harvested: usize,
    failed: usize,
    lost: usize,
    pending: usize,
    billed_usd: Usd,
    standard_usd: Usd,
    saved_usd: Usd,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let Some(ledger) = existing_ledger(global)? else {
        return Err(UsageError(format!(
            "no runs yet (no ledger in {}): `render nightly` or `render submit` starts one",
            global.state_dir.display()
        ))
        .into());
    };
    let run = chosen_run(&ledger, args.run.as_deref())?;
    let store = crate::cache::LocalStore::open(&global.state_dir)
        .with_context(|| format!("cannot open the cache in {}", global.state_dir.display()))?;
    let out_dir = match (args.out, &run.out_dir) {
        (Some(dir), _) => dir,
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => crate::outputs::default_out_dir(run.project.as_deref()),
    };
    let manifest = crate::outputs::lay_out(&run, &ledger, &store, &out_dir)?;
    let rates = StandardRates::load(global);
    let price = |entry: &ManifestEntry| rates.price(entry);
    let path = sheet::write(&manifest, &price)
        .with_context(|| format!("cannot write the contact sheet in {}", out_dir.display()))?;
    let totals = Totals::of(&manifest, &price);
    let written = Written {
        sheet: path,
        manifest: out_dir.join(crate::outputs::MANIFEST_NAME),
        run_id: run.id.clone(),
        requests: totals.requests,
        harvested: totals.harvested,
        failed: totals.failed,
        lost: totals.lost,
        pending: totals.pending,
        billed_usd: totals.billed,
        standard_usd: totals.standard,
        saved_usd: totals.saved(),
    };
    match global.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&written)?),
        Format::Human => println!(
            "contact sheet {} — {}: {} harvested, {} failed, {} lost, {} pending of {}; billed {}, saved {}",
            written.sheet.display(),
            written.run_id,
            written.harvested,
            written.failed,
            written.lost,
            written.pending,
            written.requests,
            written.billed_usd,
            written.saved_usd,
        ),
    }
    Ok(Outcome::Success)
}

/// The run named (an id, or a prefix of exactly one), else the newest.
fn chosen_run(ledger: &Ledger, named: Option<&str>) -> anyhow::Result<RunRow> {
    let runs = ledger.runs()?;
    let Some(named) = named else {
        return runs
            .into_iter()
            .next()
            .ok_or_else(|| UsageError("no runs yet: nothing to report".into()).into());
    };
    if let Some(run) = runs.iter().find(|r| r.id == named) {
        return Ok(run.clone());
    }
    let mut matching = runs.iter().filter(|r| r.id.starts_with(named));
    match (matching.next(), matching.next()) {
        (Some(run), None) => Ok(run.clone()),
        (Some(_), Some(_)) => Err(UsageError(format!(
            "{named} names several runs: give more of the id (`render status` lists them)"
        ))
        .into()),
        _ => Err(UsageError(format!("no run named {named} (`render status` lists them)")).into()),
    }
}

/// Writes the contact sheet of every run a harvest laid out, beside its manifest. A sheet that
/// cannot be written is a warning, not a failed night: the videos and the manifest are there.
pub fn write_sheets(report: &HarvestReport, global: &GlobalArgs) {
    let laid_out: Vec<&Manifest> = report
        .runs
        .iter()
        .filter_map(|r| r.laid_out.as_ref())
        .collect();
    if laid_out.is_empty() {
        return;
    }
    let rates = StandardRates::load(global);
    for manifest in laid_out {
        match sheet::write(manifest, &|entry| rates.price(entry)) {
            Ok(path) if global.format == Format::Human => {
                println!("contact sheet {}", path.display())
            }
            Ok(_) => {}
            Err(err) => eprintln!(
                "warning: cannot write the contact sheet in {}: {err}",
                manifest.out_dir.display()
            ),
        }
    }
}

/// Standard rates, for the saving: the ledger keeps only the price that was paid, so the
/// catalog of the provider that rendered a take (else the built-in one) prices it again.
struct StandardRates {
    providers: Option<Providers>,
    catalog: Catalog,
}

impl StandardRates {
    /// Best effort: a catalog or providers file that no longer loads prices nothing.
    fn load(global: &GlobalArgs) -> StandardRates {
        let catalog = crate::plan::load_catalog(&global.state_dir, &[])
            .unwrap_or_else(|_| Catalog::builtin());
        let providers = load_providers(global, &catalog).ok();
        StandardRates { providers, catalog }
    }

    fn price(&self, entry: &ManifestEntry) -> Option<Usd> {
        let catalog = entry
            .provider
            .as_deref()
            .and_then(|id| self.provider_catalog(id))
            .unwrap_or(&self.catalog);
        let size: Size = entry.size.as_deref()?.parse().ok()?;
        let rate = catalog.model(entry.model.as_deref()?)?.rate(size)?;
        Some(rate.standard * entry.seconds?)
    }

    /// The catalog of the provider a take was sent to; a rehearsal (`sandbox:<name>`) is
    /// priced as the provider it rehearsed.
    fn provider_catalog(&self, id: &str) -> Option<&Catalog> {
        let providers = self.providers.as_ref()?;
        let provider = providers.for_record(id).or_else(|| {
            id.strip_prefix("sandbox:")
                .and_then(|name| providers.get(name))
        })?;
        Some(&provider.catalog)
    }
}
