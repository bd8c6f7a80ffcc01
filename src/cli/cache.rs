//! `render cache ls|verify|gc`.

use serde::Serialize;

use super::state::open_state;
use super::{Format, GlobalArgs, Outcome};
use crate::cache::LocalStore;
use crate::cache::{ObjectStore, VerifyProblem};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// List cached outputs: key, object, size.
    Ls,
    /// Re-hash every object against its name; corrupt ones are quarantined (exit 6 if any).
    /// With --cache, the shared store's objects too (corrupt ones are removed).
    Verify,
    /// Remove objects no retained run uses, then the least recently used beyond --max-size.
    Gc {
        /// Keep the cache under this many bytes (e.g. 50000000000).
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
        /// Retain only the outputs of the N newest runs (default: every run).
        #[arg(long, value_name = "N")]
        keep_runs: Option<usize>,
        /// With --cache: remove shared index entries no machine has used (rendered, fetched
        /// or laid out) for this many days, then the shared objects no entry points at.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        shared_max_age: u64,
    },
}

#[derive(Serialize)]
struct Entry {
    key: String,
    sha256: String,
    bytes: u64,
    video_id: Option<String>,
    present: bool,
}

impl Args {
    /// `verify` quarantines and `gc` removes; `ls` only looks.
    pub fn changes_state(&self) -> bool {
        !matches!(self.command, CacheCommand::Ls)
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Looking creates nothing: without a state directory, the cache is empty. Changing it
    // (verify quarantines, gc removes) takes the directory's lock.
    let exists = global.state_dir.is_dir();
    match args.command {
        CacheCommand::Ls => {
            let Some(ledger) = super::state::existing_ledger(global)? else {
                return empty(&args.command, global.format);
            };
            let store = LocalStore::open(&global.state_dir)?;
            let entries: Vec<Entry> = ledger
                .outputs()?
                .into_iter()
                .map(|o| Entry {
                    key: o.key.hex(),
                    sha256: o.video_sha.hex(),
                    bytes: o.video_bytes,
                    video_id: o.video_id,
                    present: store.has(&o.video_sha),
                })
                .collect();
            if global.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in &entries {
                    let missing = if e.present { "" } else { "  (object missing)" };
                    println!(
                        "{}  {}  {:>12} bytes{missing}",
                        &e.key[..16],
                        &e.sha256[..16],
                        e.bytes
                    );
                }
                println!("{} outputs", entries.len());
            }
            Ok(Outcome::Success)
        }
        CacheCommand::Verify if !exists => empty(&args.command, global.format),
        CacheCommand::Gc { .. } if !exists => empty(&args.command, global.format),
        CacheCommand::Verify => {
            let state = open_state(global)?;
            let problems = state.store.verify_all(true)?;
            let mut lines: Vec<String> = problems.iter().map(describe).collect();
            if let Some(shared) = super::state::shared_cache(global)? {
                let found = super::state::runtime()?.block_on(shared.verify(&state.store))?;
                lines.extend(found.into_iter().map(|p| format!("shared {p}")));
            }
            if global.format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "problems": lines }))?
                );
            } else {
                for line in &lines {
                    println!("{line}");
                }
                println!("{} problems", lines.len());
            }
            Ok(if lines.is_empty() {
                Outcome::Success
            } else {
                Outcome::Corrupt
            })
        }
        CacheCommand::Gc {
            max_size,
            keep_runs,
            shared_max_age,
        } => {
            let state = open_state(global)?;
            let shared_removed = match super::state::shared_cache(global)? {
                Some(shared) => {
                    let age = std::time::Duration::from_secs(shared_max_age * 24 * 3600);
                    Some(super::state::runtime()?.block_on(shared.gc(age))?)
                }
                None => None,
            };
            let keep = match keep_runs {
                Some(n) => state.ledger.objects_of_newest_runs(n)?,
                None => state.ledger.referenced_objects()?,
            };
            let report = state.store.gc(&keep, max_size)?;
            // A size limit may evict referenced objects: forget outputs whose object is gone,
            // so the next plan prices them again instead of trusting a dangling record.
            for output in state.ledger.outputs()? {
                if !state.store.has(&output.video_sha) {
                    state.ledger.forget_output(&output.key)?;
                }
            }
            if global.format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "removed": report.removed.len(),
                        "freed_bytes": report.freed_bytes,
                        "kept_objects": report.kept_objects,
                        "kept_bytes": report.kept_bytes,
                        "shared_entries_removed": shared_removed.map(|r| r.0),
                        "shared_objects_removed": shared_removed.map(|r| r.1),
                    }))?
                );
            } else {
                if let Some((entries, objects)) = shared_removed {
                    println!(
                        "shared: removed {entries} unused index entries and {objects} objects"
                    );
                }
                println!(
                    "removed {} objects ({} bytes); kept {} ({} bytes)",
                    report.removed.len(),
                    report.freed_bytes,
                    report.kept_objects,
                    report.kept_bytes
                );
            }
            Ok(Outcome::Success)
        }
    }
}

/// What each subcommand says about a state directory that does not exist.
fn empty(command: &CacheCommand, format: Format) -> anyhow::Result<Outcome> {
    let json = format == Format::Json;
    match command {
        CacheCommand::Ls if json => println!("[]"),
        CacheCommand::Ls => println!("0 outputs"),
        CacheCommand::Verify if json => println!("{}", serde_json::json!({ "problems": [] })),
        CacheCommand::Verify => println!("0 problems"),
        CacheCommand::Gc { .. } if json => println!(
            "{}",
            serde_json::json!({"removed": 0, "freed_bytes": 0, "kept_objects": 0, "kept_bytes": 0})
        ),
        CacheCommand::Gc { .. } => println!("removed 0 objects (0 bytes); kept 0 (0 bytes)"),
    }
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
