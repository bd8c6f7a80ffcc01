//! `render cache ls|verify|gc`.

use std::collections::HashMap;

use super::state::open_state;
use super::{GlobalArgs, Outcome};
use crate::report::cache::{Collected, Doomed, Entry, GcPreview, Listing, Verified, rfc3339};
use crate::report::output;
use render_pipeline::cache::{CacheStorage, GcPlan, ObjectId, ObjectInfo, VerifyProblem};
use render_pipeline::cache::{human_size, parse_size, plan_gc};
use render_pipeline::ledger::{KeyUse, Ledger};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// List cached outputs: shot, project, size and last use (newest first).
    Ls,
    /// Re-hash every object against its name; corrupt ones are quarantined (exit 6 if any).
    /// With --cache, the shared store's objects too (corrupt ones are removed).
    Verify,
    /// Remove objects no retained run uses, then the least recently used beyond --max-size.
    Gc {
        /// Keep the cache under this size: bytes, or 50G, 500M, 1.5T (K/M/G/T decimal, powers
        /// of 1000; KiB/MiB/GiB/TiB binary, powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Retain only the outputs of the N newest runs (default: every run).
        #[arg(long, value_name = "N")]
        keep_runs: Option<usize>,
        /// With --cache: remove shared index entries no machine has used (rendered, fetched
        /// or laid out) for this many days, then the shared objects no entry points at.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        shared_max_age: u64,
        /// Say what would be removed and how much it would free; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Args {
    /// `verify` quarantines and `gc` removes; `ls` and `gc --dry-run` only look.
    pub fn changes_state(&self) -> bool {
        !matches!(
            self.command,
            CacheCommand::Ls | CacheCommand::Gc { dry_run: true, .. }
        )
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Looking creates nothing: without a state directory, the cache is empty. Changing it
    // (verify quarantines, gc removes) takes the directory's lock.
    let exists = global.state_dir.is_dir();
    match args.command {
        CacheCommand::Ls => {
            let Some(ledger) = super::state::existing_ledger(global)? else {
                return empty(&args.command, global);
            };
            let store = render_pipeline::cache::open(&global.state_dir)?;
            output::print(&Listing(list_entries(&ledger, &*store)?), global.format)?;
            Ok(Outcome::Success)
        }
        CacheCommand::Verify if !exists => empty(&args.command, global),
        CacheCommand::Gc { dry_run: false, .. } if !exists => empty(&args.command, global),
        CacheCommand::Verify => {
            let state = open_state(global)?;
            let runtime = super::state::runtime()?;
            let problems = runtime.block_on(state.store.verify_all(true))?;
            let mut problems: Vec<String> = problems.iter().map(describe).collect();
            if let Some(shared) = &state.shared {
                let found = runtime.block_on(shared.verify(&state.store))?;
                problems.extend(found.into_iter().map(|p| format!("shared {p}")));
            }
            let clean = problems.is_empty();
            output::print(&Verified { problems }, global.format)?;
            Ok(if clean {
                Outcome::Success
            } else {
                Outcome::Corrupt
            })
        }
        CacheCommand::Gc {
            max_size,
            keep_runs,
            dry_run: true,
            ..
        } => dry_run_gc(global, max_size, keep_runs),
        CacheCommand::Gc {
            max_size,
            keep_runs,
            shared_max_age,
            dry_run: false,
        } => {
            let state = open_state(global)?;
            let runtime = super::state::runtime()?;
            let shared_removed = match &state.shared {
                Some(shared) => {
                    let age = std::time::Duration::from_secs(shared_max_age * 24 * 3600);
                    Some(runtime.block_on(shared.gc(age))?)
                }
                None => None,
            };
            let keep = match keep_runs {
                Some(n) => state.ledger.objects_of_newest_runs(n)?,
                None => state.ledger.referenced_objects()?,
            };
            let report = runtime.block_on(state.store.gc(&keep, max_size))?;
            // A size limit may evict referenced objects: forget outputs whose object is gone,
            // so the next plan prices them again instead of trusting a dangling record.
            for output in state.ledger.outputs()? {
                if !state.store.has(&output.video_sha) {
                    state.ledger.forget_output(&output.key)?;
                }
            }
            let collected = Collected {
                removed: report.removed.len(),
                freed_bytes: report.freed_bytes,
                kept_objects: report.kept_objects,
                kept_bytes: report.kept_bytes,
                shared_entries_removed: shared_removed.map(|r| r.0),
                shared_objects_removed: shared_removed.map(|r| r.1),
            };
            output::print(&collected, global.format)?;
            Ok(Outcome::Success)
        }
    }
}

/// What each subcommand says about a state directory that does not exist.
fn empty(command: &CacheCommand, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    match command {
        CacheCommand::Ls => output::print(&Listing(Vec::new()), global.format)?,
        CacheCommand::Verify => output::print(&Verified::default(), global.format)?,
        CacheCommand::Gc { .. } => output::print(&Collected::default(), global.format)?,
    }
    Ok(Outcome::Success)
}

/// Every output the ledger records, named by its newest use, newest first.
fn list_entries(ledger: &Ledger, store: &dyn CacheStorage) -> anyhow::Result<Vec<Entry>> {
    let listed = super::state::runtime()?.block_on(store.list())?;
    let objects: HashMap<ObjectId, ObjectInfo> = listed.into_iter().map(|o| (o.id, o)).collect();
    let uses = ledger.newest_uses()?;
    let mut entries: Vec<Entry> = ledger
        .outputs()?
        .into_iter()
        .map(|o| {
            let video = objects.get(&o.video_sha);
            let thumbnail = o.thumbnail_sha.and_then(|t| objects.get(&t));
            let size_bytes = video.iter().chain(thumbnail.iter()).map(|i| i.size).sum();
            let used: Option<&KeyUse> = uses.get(&o.key);
            let last_used_at = video.map(|v| v.last_used);
            Entry {
                key: o.key.hex(),
                sha256: o.video_sha.hex(),
                bytes: o.video_bytes,
                video_id: o.video_id,
                present: video.is_some(),
                shot_id: used.map(|u| u.shot_id.clone()),
                take: used.map(|u| u.take),
                project: used.and_then(|u| u.project.clone()),
                size_bytes,
                size: human_size(size_bytes),
                last_used: last_used_at.map(rfc3339),
                last_used_at,
            }
        })
        .collect();
    entries.sort_by(|a, b| b.last_used_at.cmp(&a.last_used_at).then(a.key.cmp(&b.key)));
    Ok(entries)
}

/// `cache gc --dry-run`: the same choice gc makes, shown, and nothing removed. It takes no lock
/// and leaves the shared cache alone (its gc is not previewed).
fn dry_run_gc(
    global: &GlobalArgs,
    max_size: Option<u64>,
    keep_runs: Option<usize>,
) -> anyhow::Result<Outcome> {
    let Some(ledger) = super::state::existing_ledger(global)? else {
        return print_gc_plan(&GcPlan::default(), &HashMap::new(), global);
    };
    let store = render_pipeline::cache::open(&global.state_dir)?;
    let keep = match keep_runs {
        Some(n) => ledger.objects_of_newest_runs(n)?,
        None => ledger.referenced_objects()?,
    };
    let plan = plan_gc(
        super::state::runtime()?.block_on(store.list())?,
        &keep,
        max_size,
    );
    // Name each object by the shot whose video or thumbnail it is.
    let uses = ledger.newest_uses()?;
    let mut names = HashMap::new();
    for output in ledger.outputs()? {
        if let Some(used) = uses.get(&output.key) {
            names.insert(output.video_sha, used.clone());
            if let Some(thumbnail) = output.thumbnail_sha {
                names.insert(thumbnail, used.clone());
            }
        }
    }
    print_gc_plan(&plan, &names, global)
}

fn print_gc_plan(
    plan: &GcPlan,
    names: &HashMap<ObjectId, KeyUse>,
    global: &GlobalArgs,
) -> anyhow::Result<Outcome> {
    let would_remove = plan
        .remove
        .iter()
        .map(|info| {
            let used = names.get(&info.id);
            Doomed {
                sha256: info.id.hex(),
                bytes: info.size,
                shot_id: used.map(|u| u.shot_id.clone()),
                project: used.and_then(|u| u.project.clone()),
                last_used: rfc3339(info.last_used),
            }
        })
        .collect();
    let preview = GcPreview {
        dry_run: true,
        would_remove,
        would_free_bytes: plan.freed_bytes(),
        kept_objects: plan.keep.len(),
        kept_bytes: plan.kept_bytes(),
        shared: global.cache.is_some(),
    };
    output::print(&preview, global.format)?;
    Ok(Outcome::Success)
}

fn describe(problem: &VerifyProblem) -> String {
    match problem {
        VerifyProblem::Corrupt { id, actual, path } => format!(
            "corrupt: {} hashes to {actual}, not {id} (quarantined)",
            path.display()
        ),
        VerifyProblem::Misnamed { path } => format!("misnamed: {}", path.display()),
        VerifyProblem::Unreadable { path, error } => {
            format!("unreadable: {}: {error}", path.display())
        }
    }
}
