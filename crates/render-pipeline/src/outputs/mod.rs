//! A run's deliverables: `<shot>.mp4` for a shot's first take (`<shot>_take2.mp4` and on for
//! the others, so a name never changes with the number of takes) and thumbnails, linked or
//! copied from the cache, plus `manifest.json` describing every request. What earlier runs laid
//! out and this one does not is moved into `superseded/`, so nothing stale looks current.
//!
//! Here: [`lay_out`], which places a run's files and writes its manifests. Beside it: `manifest`
//! (what `manifest.json` says, entry by entry), `cached` (which outputs the cache holds, asked
//! by `plan` and `submit` too), `names` (folder and file names) and `superseded` (moving aside
//! what an earlier run laid out).

mod cached;
mod manifest;
mod names;
mod superseded;

use std::path::{Path, PathBuf};

use crate::cache::{CacheError, CacheStorage};
use crate::events::{Event, EventSink};
use crate::ledger::{Ledger, LedgerError, OutputRow, RunItem, RunRow};
use render_wire::key::Sha256Hex;

use manifest::{entry, read_manifest};
use names::OutputNames;
use superseded::supersede_earlier_outputs;

pub use cached::{CachedOutputs, POINT_QUERIES, PREFETCH_LIMIT, StoreHandle, cached_output};
pub use manifest::{EntryError, EntryStatus, FailureKind, Manifest, ManifestEntry};
pub use names::{default_out_dir, is_safe_file_stem, output_stem, project_folder};

pub const MANIFEST_NAME: &str = "manifest.json";
/// One manifest per run lives here (`manifests/<run>.json`); `manifest.json` is the latest.
pub const MANIFESTS_DIR: &str = "manifests";
/// Where earlier outputs that the latest run does not speak for are moved.
pub const SUPERSEDED_DIR: &str = "superseded";
/// Held while a run is laid out: two state directories laying out into one folder take turns.
const LAYOUT_LOCK: &str = ".render-layout.lock";
const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Links every harvested video of the run into `out_dir` and writes its manifest (its own,
/// and `manifest.json` as the latest), holding the folder's lock so that runs of other state
/// directories laying out into the same folder take turns.
pub async fn lay_out(
    run: &RunRow,
    ledger: &Ledger,
    store: &dyn CacheStorage,
    out_dir: &Path,
    events: &dyn EventSink,
) -> Result<Manifest, LayoutError> {
    let write_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| LayoutError::Write { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(write_error(out_dir))?;
    let lock_path = out_dir.join(LAYOUT_LOCK);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_error(&lock_path))?;
    lock.lock().map_err(write_error(&lock_path))?;
    // Holding the lock, nobody else is writing here: what a kill left half-written goes.
    crate::fsutil::sweep_temps(out_dir).map_err(write_error(out_dir))?;
    // An older run harvested (or reported) after a newer one was laid out here must not put
    // its files over the newer night's, nor move them aside: it gets its own manifest only.
    let newer_run = newer_run_laid_out(out_dir, run, ledger);
    let mut entries = Vec::new();
    let mut total = render_wire::money::Usd::ZERO;
    let mut names = OutputNames::default();
    for item in ledger.run_items(&run.id)? {
        let request = ledger.request(&item.key)?;
        let output = cached_output(ledger, store, &item.key)?;
        let mut entry = entry(&item, request.as_ref(), output.as_ref());
        if let Some(output) = output.as_ref().filter(|_| newer_run.is_none()) {
            let placed = Placing {
                item: &item,
                output,
                store,
                out_dir,
                events,
            };
            place_files(placed, &mut names, &mut entry).await?;
        }
        total += item.cost;
        entries.push(entry);
    }
    let superseded = if run.partial || newer_run.is_some() {
        Vec::new()
    } else {
        supersede_earlier_outputs(out_dir, &entries).map_err(write_error(out_dir))?
    };
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        run_id: run.id.clone(),
        project: run.project.clone(),
        created_at: run.created_at,
        out_dir: out_dir.to_path_buf(),
        total_cost_usd: total,
        requests: entries,
        superseded,
        newer_run,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest always serializes");
    let own = out_dir.join(MANIFESTS_DIR).join(format!("{}.json", run.id));
    crate::fsutil::atomic_write(&own, &json).map_err(write_error(&own))?;
    if manifest.newer_run.is_none() {
        // Written into the folder the outputs were placed in: its fsync makes them durable too.
        let latest = out_dir.join(MANIFEST_NAME);
        crate::fsutil::atomic_write(&latest, &json).map_err(write_error(&latest))?;
    }
    Ok(manifest)
}

/// The run of the folder's latest manifest, when it is newer than `run`: by this ledger's
/// order when it knows both (runs started in the same second included), else by start time.
fn newer_run_laid_out(out_dir: &Path, run: &RunRow, ledger: &Ledger) -> Option<String> {
    let latest = read_manifest(&out_dir.join(MANIFEST_NAME))?;
    if latest.run_id == run.id {
        return None;
    }
    let runs = ledger.runs().ok()?;
    let position = |id: &str| runs.iter().position(|r| r.id == id);
    let newer = match (position(&latest.run_id), position(&run.id)) {
        // Newest first.
        (Some(theirs), Some(ours)) => theirs < ours,
        _ => latest.created_at > run.created_at,
    };
    newer.then_some(latest.run_id)
}

/// One output to put in the run's folder, and where to say what went wrong.
struct Placing<'a> {
    item: &'a RunItem,
    output: &'a OutputRow,
    store: &'a dyn CacheStorage,
    out_dir: &'a Path,
    events: &'a dyn EventSink,
}

async fn place_files(
    placing: Placing<'_>,
    names: &mut OutputNames,
    entry: &mut ManifestEntry,
) -> Result<(), LayoutError> {
    let Placing {
        item,
        output,
        store,
        out_dir,
        events,
    } = placing;
    if !is_safe_file_stem(&item.shot_id) {
        events.emit(Event::Warning {
            message: format!(
                "shot id {:?} cannot name a file; its output is not laid out",
                item.shot_id
            ),
        });
        return Ok(());
    }
    let stem = names.claim(item, events);
    let video = PathBuf::from(format!("{stem}.mp4"));
    store
        .link_or_copy(&output.video_sha, &out_dir.join(&video))
        .await?;
    entry.video_path = Some(video);
    if let Some(thumb_sha) = output.thumbnail_sha.filter(|s| store.has(s)) {
        let extension = image_extension(store, &thumb_sha).await;
        let thumb = PathBuf::from(format!("{stem}.{extension}"));
        store
            .link_or_copy(&thumb_sha, &out_dir.join(&thumb))
            .await?;
        entry.thumbnail_path = Some(thumb);
    }
    Ok(())
}

/// `jpg` or `webp`, by the image's own magic bytes.
async fn image_extension(store: &dyn CacheStorage, sha: &Sha256Hex) -> &'static str {
    let head = crate::cache::read_head(store, sha, 12).await;
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        "webp"
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else {
        "jpg"
    }
}
