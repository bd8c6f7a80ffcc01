//! A run's deliverables: `<shot>.mp4` for a shot's first take (`<shot>_take2.mp4` and on for
//! the others, so a name never changes with the number of takes) and thumbnails, linked or
//! copied from the cache, plus `manifest.json` describing every request. What earlier runs laid
//! out and this one does not is moved into `superseded/`, so nothing stale looks current.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::{CacheError, CacheStorage};
use crate::events::{Event, EventSink};
use crate::ledger::{Ledger, LedgerError, OutputRow, RequestRow, RequestStatus, RunItem, RunRow};
use render_wire::key::Sha256Hex;

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

/// What `manifest.json` says: written by [`lay_out`], read back by scripts (and by the tests,
/// through this same type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub run_id: String,
    pub project: Option<String>,
    pub created_at: i64,
    pub out_dir: PathBuf,
    pub total_cost_usd: render_wire::money::Usd,
    pub requests: Vec<ManifestEntry>,
    /// Earlier outputs moved into `superseded/` by this layout (paths relative to the folder).
    #[serde(default)]
    pub superseded: Vec<PathBuf>,
    /// A newer run is laid out in the folder: this run's files were not put there (its
    /// manifest is `manifests/<run>.json` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_run: Option<String>,
}

impl Manifest {
    pub fn count(&self, status: EntryStatus) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }
}

/// Where a request of the manifest stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Its video is laid out.
    Harvested,
    Failed,
    /// Expired before download or never run: `render retry` sends it again.
    Lost,
    /// Still rendering or downloading.
    Pending,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Harvested => "harvested",
            EntryStatus::Failed => "failed",
            EntryStatus::Lost => "lost",
            EntryStatus::Pending => "pending",
        }
    }
}

/// What kind of failure an entry's error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Refused by the content policy: fails again unless the prompt changes.
    Policy,
    /// The server failed it: may succeed when retried.
    Server,
    Lost,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Policy => "policy",
            FailureKind::Server => "server",
            FailureKind::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub cost_usd: render_wire::money::Usd,
    pub status: EntryStatus,
    pub video_id: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Relative to the manifest's folder.
    pub video_path: Option<PathBuf>,
    pub thumbnail_path: Option<PathBuf>,
    pub error: Option<EntryError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryError {
    pub code: Option<String>,
    pub message: String,
    /// Policy rejections are not; server failures and lost requests are (`render retry`).
    pub retryable: bool,
    pub kind: FailureKind,
}

/// The output cached for `key`: recorded in the ledger *and* present in the store. A record whose
/// object is gone (removed by `cache gc`) does not count, so the request is rendered again.
pub fn cached_output(
    ledger: &Ledger,
    store: &dyn CacheStorage,
    key: &render_wire::key::RequestKey,
) -> Result<Option<OutputRow>, LedgerError> {
    Ok(ledger.output(key)?.filter(|o| store.has(&o.video_sha)))
}

/// [`cached_output`]'s answer for the many keys of a plan, cheaply: the first keys are asked
/// one query each; past [`POINT_QUERIES`], the keys of every recorded output whose object is
/// present are read at once (one query, and one listing per object folder instead of a `stat`
/// per key) — on another thread, while the shot lists are parsed, when [`prefetch`] was asked.
///
/// [`prefetch`]: CachedOutputs::prefetch
pub struct CachedOutputs<L = Ledger, S = std::sync::Arc<dyn CacheStorage>> {
    ledger: L,
    store: S,
    asked: std::cell::Cell<usize>,
    prefetched: std::cell::RefCell<Option<std::thread::JoinHandle<CachedKeys>>>,
    cached: std::cell::OnceCell<render_wire::key::KeySet>,
}

type CachedKeys = Result<render_wire::key::KeySet, LedgerError>;

/// Below this many keys, one query per key is quicker than reading every output.
pub const POINT_QUERIES: usize = 256;

/// A store held or lent: what [`CachedOutputs`] asks (a night lends its store; `plan` owns one).
pub trait StoreHandle {
    fn store(&self) -> &dyn CacheStorage;
}

impl StoreHandle for &dyn CacheStorage {
    fn store(&self) -> &dyn CacheStorage {
        *self
    }
}

impl StoreHandle for std::sync::Arc<dyn CacheStorage> {
    fn store(&self) -> &dyn CacheStorage {
        self.as_ref()
    }
}

impl<L, S> CachedOutputs<L, S>
where
    L: std::borrow::Borrow<Ledger>,
    S: StoreHandle,
{
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
    pub fn prefetch(self, ledger_path: &Path) -> CachedOutputs<L, S>
    where
        S: Clone + Send + 'static,
    {
        let (path, store) = (ledger_path.to_path_buf(), self.store.clone());
        let reader = std::thread::Builder::new()
            .name("cache-index".into())
            .spawn(move || cached_keys(&Ledger::open_reader(&path)?, store.store()));
        *self.prefetched.borrow_mut() = reader.ok();
        self
    }

    /// Whether `key`'s output is recorded and present (a ledger error counts as not cached).
    pub fn contains(&self, key: &render_wire::key::RequestKey) -> bool {
        self.try_contains(key).unwrap_or(false)
    }

    /// Whether `key`'s output is recorded and present.
    pub fn try_contains(&self, key: &render_wire::key::RequestKey) -> Result<bool, LedgerError> {
        let asked = self.asked.get() + 1;
        self.asked.set(asked);
        let (ledger, store) = (self.ledger.borrow(), self.store.store());
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

/// The keys of every recorded output whose object is in the store, asked of the store at once.
fn cached_keys(ledger: &Ledger, store: &dyn CacheStorage) -> CachedKeys {
    let outputs = ledger.output_videos()?;
    let shas: Vec<Sha256Hex> = outputs.iter().map(|(_, sha)| *sha).collect();
    let present = store.present(&shas);
    let mut keys =
        render_wire::key::KeySet::with_capacity_and_hasher(outputs.len(), Default::default());
    keys.extend(
        outputs
            .into_iter()
            .filter(|(_, sha)| present.contains(sha))
            .map(|(key, _)| key),
    );
    Ok(keys)
}

/// `renders/<project>/`, or `renders/default/` for a shot list without a project.
pub fn default_out_dir(project: Option<&str>) -> PathBuf {
    Path::new("renders").join(project.map_or_else(|| "default".into(), project_folder))
}

/// The folder name of a project: its name as written where it can be one (spaces and
/// non-ASCII letters are kept, so people recognise it), with what cannot name a folder
/// (separators, control characters, a leading dot) turned into `-`.
pub fn project_folder(project: &str) -> String {
    let replaced: String = project
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' => '-',
            c if c.is_control() => '-',
            c => c,
        })
        .collect();
    let trimmed = replaced
        .trim()
        .trim_start_matches('.')
        .trim_end_matches('.')
        .trim();
    if is_safe_file_stem(trimmed) {
        trimmed.to_string()
    } else {
        "default".to_string()
    }
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

fn entry(
    item: &RunItem,
    request: Option<&RequestRow>,
    output: Option<&OutputRow>,
) -> ManifestEntry {
    let status = match (output, request.map(|r| r.status)) {
        (Some(_), _) => EntryStatus::Harvested,
        (None, Some(RequestStatus::Failed)) => EntryStatus::Failed,
        (None, Some(RequestStatus::Lost)) => EntryStatus::Lost,
        _ => EntryStatus::Pending,
    };
    let error = request.filter(|_| output.is_none()).and_then(|r| {
        let message = r.error_message.clone()?;
        let kind = match r.status {
            RequestStatus::Lost => FailureKind::Lost,
            _ if !r.retryable => FailureKind::Policy,
            _ => FailureKind::Server,
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
        cost_usd: item.cost,
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
    fn claim(&mut self, item: &RunItem, events: &dyn EventSink) -> String {
        let stem = output_stem(&item.shot_id, item.take);
        if self.0.insert(stem.to_lowercase()) {
            return stem;
        }
        let unique = format!("{stem}-{}", &item.key.hex()[..8]);
        events.emit(Event::Warning {
            message: format!(
                "{stem} is taken by another shot; writing {unique} for {}",
                item.shot_id
            ),
        });
        self.0.insert(unique.to_lowercase());
        unique
    }
}

/// `<shot>` for the first take, `<shot>_take<n>` for the others.
pub fn output_stem(shot_id: &str, take: u32) -> String {
    match take {
        0 | 1 => shot_id.to_string(),
        n => format!("{shot_id}_take{n}"),
    }
}

/// Moves into `superseded/` every file an earlier manifest of this folder laid out that this
/// layout did not write: shots dropped from the list, takes cut, and renders of a shot's old
/// prompt while its new one is pending or failed. Only files named in this folder's own
/// manifests are touched; anything else a person put here stays.
fn supersede_earlier_outputs(
    out_dir: &Path,
    entries: &[ManifestEntry],
) -> std::io::Result<Vec<PathBuf>> {
    let current: std::collections::HashSet<&Path> = entries
        .iter()
        .flat_map(|e| [e.video_path.as_deref(), e.thumbnail_path.as_deref()])
        .flatten()
        .collect();
    let mut moved = Vec::new();
    for earlier in earlier_output_paths(out_dir)? {
        if current.contains(earlier.as_path()) || !is_plain_relative(&earlier) {
            continue;
        }
        let from = out_dir.join(&earlier);
        if !from.is_file() {
            continue;
        }
        let aside = out_dir.join(SUPERSEDED_DIR);
        std::fs::create_dir_all(&aside)?;
        std::fs::rename(&from, aside.join(&earlier))?;
        moved.push(Path::new(SUPERSEDED_DIR).join(&earlier));
    }
    if !moved.is_empty() {
        crate::fsutil::sync_dir(out_dir)?;
        tracing::info!(
            "moved {} earlier output(s) into {SUPERSEDED_DIR}/",
            moved.len()
        );
    }
    Ok(moved)
}

/// The video and thumbnail paths every manifest in `manifests/` (and the latest) names. A
/// manifest that cannot be read names nothing: it is only ever a hint of what to tidy.
fn earlier_output_paths(out_dir: &Path) -> std::io::Result<std::collections::BTreeSet<PathBuf>> {
    let mut manifests = vec![out_dir.join(MANIFEST_NAME)];
    match std::fs::read_dir(out_dir.join(MANIFESTS_DIR)) {
        Ok(dir) => {
            for entry in dir {
                manifests.push(entry?.path());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut paths = std::collections::BTreeSet::new();
    for manifest in manifests.iter().filter_map(|path| read_manifest(path)) {
        for entry in manifest.requests {
            paths.extend(entry.video_path);
            paths.extend(entry.thumbnail_path);
        }
    }
    Ok(paths)
}

/// A manifest on disk, when it reads as one (a damaged or foreign file is no manifest).
fn read_manifest(path: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A bare file name: a manifest is a file on disk, and one edited by hand must not make the
/// layout move files from elsewhere.
fn is_plain_relative(path: &Path) -> bool {
    let mut components = path.components();
    matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
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
        assert_eq!(default_out_dir(Some("../etc")), Path::new("renders/-etc"));
        assert_eq!(
            default_out_dir(Some("Printemps été")),
            Path::new("renders/Printemps été")
        );
        assert_eq!(project_folder("a/b\\c:d"), "a-b-c-d");
        assert_eq!(project_folder(".hidden "), "hidden");
        assert_eq!(project_folder(".."), "default");
        assert_eq!(default_out_dir(None), Path::new("renders/default"));
    }
}
