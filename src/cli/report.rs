//! `render report [RUN]`: lays a run out again from the ledger and the cache and writes its
//! contact sheet, without asking any provider anything. Also the sheet `harvest` and `nightly`
//! write after every lay-out.

use std::path::PathBuf;

use super::state::{existing_ledger, find_run};
use super::{GlobalArgs, Outcome, UsageError};
use crate::report::output;
use crate::report::sheet::{self, Totals};
use crate::report::summary::SheetWritten;
use anyhow::Context;
use render_pipeline::harvest::HarvestReport;
use render_pipeline::ledger::Ledger;
use render_pipeline::outputs::{Manifest, ManifestEntry};
use render_wire::money::Usd;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its id, a prefix only it has, or `last` (the default).
    pub run: Option<String>,
    /// Output folder (default: the folder the run was laid out in, else renders/<project>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let Some(ledger) = existing_ledger(global)? else {
        return Err(UsageError(format!(
            "no runs yet (no ledger in {}): `render nightly` or `render submit` starts one",
            global.state_dir.display()
        ))
        .into());
    };
    let run = find_run(&ledger, args.run.as_deref().unwrap_or("last"))?;
    let store = render_pipeline::cache::open(&global.state_dir)
        .with_context(|| format!("cannot open the cache in {}", global.state_dir.display()))?;
    let out_dir = match (args.out, &run.out_dir) {
        (Some(dir), _) => dir,
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => render_pipeline::outputs::default_out_dir(run.project.as_deref()),
    };
    let progress = global.progress();
    let manifest = super::state::runtime()?.block_on(render_pipeline::outputs::lay_out(
        &run,
        &ledger,
        store.as_ref(),
        &out_dir,
        &progress,
    ));
    progress.finish();
    let manifest = manifest?;
    if let Some(newer) = &manifest.newer_run {
        return Err(UsageError(format!(
            "{} is laid out for a newer run ({newer}); run {} has its manifest in {} only",
            out_dir.display(),
            run.id,
            out_dir
                .join(render_pipeline::outputs::MANIFESTS_DIR)
                .join(format!("{}.json", run.id))
                .display()
        ))
        .into());
    }
    let price = standard_price(&ledger);
    let path = sheet::write(&manifest, &price)
        .with_context(|| format!("cannot write the contact sheet in {}", out_dir.display()))?;
    let totals = Totals::of(&manifest, &price);
    let written = SheetWritten {
        sheet: path,
        manifest: out_dir.join(render_pipeline::outputs::MANIFEST_NAME),
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
    output::print(&written, global.format)?;
    Ok(Outcome::Success)
}

/// Writes the contact sheet of every run a harvest laid out, beside its manifest. A sheet that
/// cannot be written is a warning, not a failed night: the videos and the manifest are there.
pub fn write_sheets(
    report: &HarvestReport,
    ledger: &Ledger,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    // The folder's sheet is its latest night's; an older run laid out after it has none.
    let laid_out: Vec<&Manifest> = report
        .runs
        .iter()
        .filter_map(|r| r.laid_out.as_ref())
        .filter(|m| m.newer_run.is_none())
        .collect();
    if laid_out.is_empty() {
        return Ok(());
    }
    let price = standard_price(ledger);
    for manifest in laid_out {
        match sheet::write(manifest, &price) {
            Ok(path) => output::note(
                global.format,
                format_args!("contact sheet {}", path.display()),
            )?,
            Err(err) => output::warn(format_args!(
                "cannot write the contact sheet in {}: {err}",
                manifest.out_dir.display()
            )),
        }
    }
    Ok(())
}

/// The standard-rate price of a take, for the saving: what the plan priced it at outside the
/// Batch lane when it was sent (the bill's own record, so the sheet and `render spend` agree).
fn standard_price(ledger: &Ledger) -> impl Fn(&ManifestEntry) -> Option<Usd> + '_ {
    |entry| {
        let key = entry.key.parse().ok()?;
        ledger.standard_price(&key).ok().flatten()
    }
}
