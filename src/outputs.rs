//! A run's deliverables: `<shot>.mp4` (with the take when a shot has several) and thumbnails,
//! linked or copied from the cache, plus `manifest.json` describing every request.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::{CacheError, LocalStore, ObjectStore};
use crate::key::Sha256Hex;
use crate::ledger::{Ledger, LedgerError, OutputRow, RequestRow, RequestStatus, RunItem, RunRow};

pub const MANIFEST_NAME: &str = "manifest.json";
/// One manifest per run lives here (`manifests/<run>.json`); `manifest.json` is the latest.
pub const MANIFESTS_DIR: &str = "manifests";
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

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub version: u32,
    pub run_id: String,
    pub project: Option<String>,
    pub created_at: i64,
    pub out_dir: PathBuf,
    pub total_cost_usd: String,
    pub requests: Vec<ManifestEntry>,
}

impl Manifest {
    pub fn count(&self, status: &str) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ManifestEntry {
    pub shot_id: String,
    pub take: u32,
    pub key: String,
    /// Who rendered it (the provider's identity) and how it travelled.
    pub provider: Option<String>,
    pub lane: crate::provider::Lane,
    pub model: Option<String>,
    pub size: Option<String>,
    pub seconds: Option<u32>,
    pub prompt: Option<String>,
    pub cost_usd: String,
    /// `harvested`, `failed`, `lost`, or `pending` (still rendering or downloading).
    pub status: &'static str,
    pub video_id: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Relative to the manifest's folder.
    pub video_path: Option<PathBuf>,
    pub thumbnail_path: Option<PathBuf>,
    pub error: Option<EntryError>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EntryError {
    pub code: Option<String>,
    pub message: String,
    /// Policy rejections are not; server failures and lost requests are (`render retry`).
    pub retryable: bool,
    /// `policy` or `server` or `lost`: what kind of failure this is.
    pub kind: &'static str,
}

/// The output cached for `key`: recorded in the ledger *and* present in the store. A record whose
/// object is gone (removed by `cache gc`) does not count, so the request is rendered again.
pub fn cached_output(
    ledger: &Ledger,
    store: &LocalStore,
    key: &crate::key::RequestKey,
) -> Result<Option<OutputRow>, LedgerError> {
    Ok(ledger.output(key)?.filter(|o| store.has(&o.video_sha)))
}

/// [`cached_output`]'s answer for the many keys of a plan, cheaply: the first keys are asked
/// one query each; past [`POINT_QUERIES`], the keys of every recorded output whose object is
/// present are read at once (one query, and one listing per object folder instead of a `stat`
/// per key) — on another thread, while the shot lists are parsed, when [`prefetch`] was asked.
///
/// [`prefetch`]: CachedOutputs::prefetch
pub struct CachedOutputs<L = Ledger, S = LocalStore> {
    ledger: L,
    store: S,
    asked: std::cell::Cell<usize>,
    prefetched: std::cell::RefCell<Option<std::thread::JoinHandle<CachedKeys>>>,
    cached: std::cell::OnceCell<std::collections::HashSet<crate::key::RequestKey>>,
}

type CachedKeys = Result<std::collections::HashSet<crate::key::RequestKey>, LedgerError>;

/// Below this many keys, one query per key is quicker than reading every output.
pub const POINT_QUERIES: usize = 256;

impl<L: std::borrow::Borrow<Ledger>, S: std::borrow::Borrow<LocalStore>> CachedOutputs<L, S> {
    /// Over an owned or a borrowed ledger and store.
    pub fn new(ledger: L, store: S) -> CachedOutputs<L, S> {
        CachedOutputs {
            ledger,
            store,
            asked: Default::default(),
            prefetched: Default::default(),
            cached: Default::default(),
        }
    }

    /// Starts reading every cached key on another thread, through its own connection to the
    /// ledger at `ledger_path`. Unused when the plan turns out small (the thread ends with the
    /// process).
    pub fn prefetch(self, ledger_path: &Path) -> CachedOutputs<L, S> {
        let (path, store) = (ledger_path.to_path_buf(), self.store.borrow().clone());
        let reader = std::thread::Builder::new()
            .name("cache-index".into())
            .spawn(move || cached_keys(&Ledger::open(&path)?, &store));
        *self.prefetched.borrow_mut() = reader.ok();
        self
    }

    /// Whether `key`'s output is recorded and present (a ledger error counts as not cached).
    pub fn contains(&self, key: &crate::key::RequestKey) -> bool {
        self.try_contains(key).unwrap_or(false)
    }

    /// Whether `key`'s output is recorded and present.
    pub fn try_contains(&self, key: &crate::key::RequestKey) -> Result<bool, LedgerError> {
        let asked = self.asked.get() + 1;
        self.asked.set(asked);
        let (ledger, store) = (self.ledger.borrow(), self.store.borrow());
        if asked <= POINT_QUERIES {
            return Ok(cached_output(ledger, store, key)?.is_some());
        }
        if self.cached.get().is_none() {
            let prefetched = self.prefetched.borrow_mut().take();
            // A reader that failed to start or panicked: read here instead.
            let keys = match prefetched.map(std::thread::JoinHandle::join) {
                Some(Ok(keys)) => keys?,
                _ => cached_keys(ledger, store)?,
            };
            let _ = self.cached.set(keys);
        }
        Ok(self.cached.get().is_some_and(|keys| keys.contains(key)))
    }
}

/// The keys of every recorded output whose object is in the store: the store's folders are
/// listed once each instead of a `stat` per object (outputs sorted by object, so that objects
/// of one folder come together and each folder is found without hashing its path).
fn cached_keys(ledger: &Ledger, store: &LocalStore) -> CachedKeys {
    let mut outputs = ledger.output_videos()?;
    outputs.sort_unstable_by_key(|(_, sha)| *sha);
    let mut listed: std::collections::HashMap<PathBuf, std::collections::HashSet<_>> =
        Default::default();
    let mut current: Option<(PathBuf, std::collections::HashSet<std::ffi::OsString>)> = None;
    let mut cached = std::collections::HashSet::with_capacity(outputs.len());
    for (key, sha) in outputs {
        let path = store.path(&sha);
        let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
            if store.has(&sha) {
                cached.insert(key);
            }
            continue;
        };
        if current.as_ref().is_none_or(|(f, _)| f != folder) {
            if let Some((f, files)) = current.take() {
                listed.insert(f, files);
            }
            let files = listed.remove(folder).unwrap_or_else(|| files_in(folder));
            current = Some((folder.to_path_buf(), files));
        }
        if current
            .as_ref()
            .is_some_and(|(_, files)| files.contains(name))
        {
            cached.insert(key);
        }
    }
    Ok(cached)
}

/// The names of the regular files in `folder` (through symbolic links, as `is_file` does).
fn files_in(folder: &Path) -> std::collections::HashSet<std::ffi::OsString> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter(|entry| match entry.file_type() {
            Ok(kind) if kind.is_symlink() => entry.path().is_file(),
            Ok(kind) => kind.is_file(),
            Err(_) => false,
        })
        .map(|entry| entry.file_name())
        .collect()
}

/// `renders/<project>/`, or `renders/default/` for a shot list without a project.
pub fn default_out_dir(project: Option<&str>) -> PathBuf {
    let name = project
        .filter(|p| is_safe_file_stem(p))
        .unwrap_or("default");
    Path::new("renders").join(name)
}

/// Whether `stem` can name a file inside the output folder and nothing else: the same rule
/// the shot list's ids are held to (no separators, no `..`, no leading dot, no control
/// characters), checked again because the ledger outlives versions of that rule.
pub fn is_safe_file_stem(stem: &str) -> bool {
    crate::shotlist::check_id(stem).is_ok()
}

/// Links every harvested video of the run into `out_dir` and writes its manifest (its own,
/// and `manifest.json` as the latest), holding the folder's lock so that runs of other state
/// directories laying out into the same folder take turns.
pub fn lay_out(
    run: &RunRow,
    ledger: &Ledger,
    store: &LocalStore,
    out_dir: &Path,
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
    let mut entries = Vec::new();
    let mut total = crate::money::Usd::ZERO;
    let mut names = OutputNames::default();
    for item in ledger.run_items(&run.id)? {
        let request = ledger.request(&item.key)?;
        let output = cached_output(ledger, store, &item.key)?;
        let mut entry = entry(&item, request.as_ref(), output.as_ref());
        if let Some(output) = &output {
            place_files(&item, output, store, out_dir, &mut names, &mut entry)?;
        }
        total += item.cost;
        entries.push(entry);
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        run_id: run.id.clone(),
        project: run.project.clone(),
        created_at: run.created_at,
        out_dir: out_dir.to_path_buf(),
        total_cost_usd: plain_usd(total),
        requests: entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest always serializes");
    let own = out_dir.join(MANIFESTS_DIR).join(format!("{}.json", run.id));
    crate::fsutil::atomic_write(&own, &json).map_err(write_error(&own))?;
    let latest = out_dir.join(MANIFEST_NAME);
    crate::fsutil::atomic_write(&latest, &json).map_err(write_error(&latest))?;
    Ok(manifest)
}

fn entry(
    item: &RunItem,
    request: Option<&RequestRow>,
    output: Option<&OutputRow>,
) -> ManifestEntry {
    let status = match (output, request.map(|r| r.status)) {
        (Some(_), _) => "harvested",
        (None, Some(RequestStatus::Failed)) => "failed",
        (None, Some(RequestStatus::Lost)) => "lost",
        _ => "pending",
    };
    let error = request.filter(|_| output.is_none()).and_then(|r| {
        let message = r.error_message.clone()?;
        let kind = match r.status {
            RequestStatus::Lost => "lost",
            _ if !r.retryable => "policy",
            _ => "server",
        };
        Some(EntryError {
            code: r.error_code.clone(),
            message,
            retryable: r.retryable,
            kind,
        })
    });
    ManifestEntry {
        shot_id: item.shot_id.clone(),
        take: item.take,
        key: item.key.hex(),
        provider: item.provider.clone(),
        lane: item.lane,
        model: request.map(|r| r.model.clone()),
        size: request.map(|r| r.size.clone()),
        seconds: request.map(|r| r.seconds),
        prompt: request.map(|r| r.prompt.clone()),
        cost_usd: plain_usd(item.cost),
        status,
        video_id: output
            .and_then(|o| o.video_id.clone())
            .or_else(|| request.and_then(|r| r.video_id.clone())),
        sha256: output.map(|o| o.video_sha.hex()),
        bytes: output.map(|o| o.video_bytes),
        video_path: None,
        thumbnail_path: None,
        error,
    }
}

/// The file stems a run's outputs use, so no two requests write the same file: shot `a` with
/// two takes and a shot named `a_take2`, or ids that differ only in case on a
/// case-insensitive disk.
#[derive(Default)]
struct OutputNames(std::collections::HashSet<String>);

impl OutputNames {
    fn claim(&mut self, item: &RunItem) -> String {
        let stem = if item.takes > 1 {
            format!("{}_take{}", item.shot_id, item.take)
        } else {
            item.shot_id.clone()
        };
        if self.0.insert(stem.to_lowercase()) {
            return stem;
        }
        let unique = format!("{stem}-{}", &item.key.hex()[..8]);
        tracing::warn!(shot = %item.shot_id, "{stem} is taken by another shot; writing {unique}");
        self.0.insert(unique.to_lowercase());
        unique
    }
}

fn place_files(
    item: &RunItem,
    output: &OutputRow,
    store: &LocalStore,
    out_dir: &Path,
    names: &mut OutputNames,
    entry: &mut ManifestEntry,
) -> Result<(), LayoutError> {
    if !is_safe_file_stem(&item.shot_id) {
        tracing::warn!(shot = %item.shot_id, "shot id cannot name a file; output not laid out");
        return Ok(());
    }
    let stem = names.claim(item);
    let video = PathBuf::from(format!("{stem}.mp4"));
    store.link_or_copy(&output.video_sha, &out_dir.join(&video))?;
    entry.video_path = Some(video);
    if let Some(thumb_sha) = output.thumbnail_sha.filter(|s| store.has(s)) {
        let thumb = PathBuf::from(format!("{stem}.{}", image_extension(store, &thumb_sha)));
        store.link_or_copy(&thumb_sha, &out_dir.join(&thumb))?;
        entry.thumbnail_path = Some(thumb);
    }
    Ok(())
}

/// `jpg` or `webp`, by the image's own magic bytes.
fn image_extension(store: &LocalStore, sha: &Sha256Hex) -> &'static str {
    let mut head = [0u8; 12];
    let read = std::fs::File::open(store.path(sha))
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head));
    match read {
        Ok(n) if n >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" => "webp",
        Ok(n) if n >= 8 && head[..8] == *b"\x89PNG\r\n\x1a\n" => "png",
        _ => "jpg",
    }
}

fn plain_usd(amount: crate::money::Usd) -> String {
    amount.to_string().replace('$', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_safe() {
        for ok in ["shot-01", "Opening Scene", "a.b", "ünïcode"] {
            assert!(is_safe_file_stem(ok), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", "a\\b", ".hidden", "c:x", "a\nb", "a\0b",
        ] {
            assert!(!is_safe_file_stem(bad), "{bad:?}");
        }
    }

    #[test]
    fn default_folder_is_named_for_the_project() {
        assert_eq!(
            default_out_dir(Some("spring-ad")),
            Path::new("renders/spring-ad")
        );
        assert_eq!(
            default_out_dir(Some("../etc")),
            Path::new("renders/default")
        );
        assert_eq!(default_out_dir(None), Path::new("renders/default"));
    }
}
