//! The content-addressed store of everything downloaded: each object is named by the SHA-256 of
//! its bytes, so the same video is kept once and a corrupt one is detectable.
//!
//! Layout under `<state_dir>/cache/` (like uv's cache: a version folder and a `CACHEDIR.TAG` so
//! backup tools skip it):
//! ```text
//! cache/CACHEDIR.TAG
//! cache/v1/objects/ab/ab12…       finished objects, fanned out by the first two hex digits
//! cache/v1/tmp/obj-….tmp          objects being written (removed on drop, or when stale)
//! cache/v1/partial/<key>.part     resumable downloads (kept on drop, continued with HTTP Range)
//! cache/v1/quarantine/            objects that failed verification, kept for inspection
//! ```
//! Objects are written temp-first inside the cache, fsynced, renamed into place and the folder
//! fsynced: an object either exists whole under its true name or not at all. Finished objects are
//! made read-only, so an output hard-linked to one cannot be edited in place by accident.
//!
//! "Last used" is the object's mtime: objects never change, so the mtime is free to record use;
//! [`LocalStore::touch`] is called on `open`, `link_or_copy` and when a finished write finds the
//! object already present. atime is not used because most systems mount with `relatime`/`noatime`.
//!
//! The cache knows only objects. Which request produced which object lives in the ledger.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::fsutil;
use crate::key::Sha256Hex;

/// Bump when the layout changes: a new version folder starts empty beside the old one.
pub const CACHE_VERSION: &str = "v1";

/// The name of an object: the SHA-256 of its content.
pub type ObjectId = Sha256Hex;

/// Temp files older than this belong to a crashed process and are removed.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// Partial downloads older than this cannot be resumed anyway (video links live 24 h).
pub const STALE_PARTIAL_AGE: Duration = Duration::from_secs(48 * 60 * 60);

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by render.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

const HASH_BUFFER: usize = 1 << 20;

/// Test hook for a disk that fills up mid-download: with `RENDER_CACHE_FULL_AFTER=N`, writes
/// into pending objects fail with "no space left on device" once this process has written `N`
/// bytes into them (a tiny filesystem would need mount rights CI does not have). Unset: no-op.
pub const FULL_AFTER_ENV: &str = "RENDER_CACHE_FULL_AFTER";

/// Bytes this process has written into pending objects, for [`FULL_AFTER_ENV`].
static PENDING_BYTES_WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn injected_capacity() -> Option<u64> {
    static CAPACITY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CAPACITY.get_or_init(|| {
        std::env::var(FULL_AFTER_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })
}

/// How much of `wanted` bytes the (possibly injected) disk still takes; `Err` when it is full.
fn room_for(wanted: usize) -> io::Result<usize> {
    let Some(capacity) = injected_capacity() else {
        return Ok(wanted);
    };
    let used = PENDING_BYTES_WRITTEN.load(std::sync::atomic::Ordering::Relaxed);
    let left = capacity.saturating_sub(used);
    if left == 0 && wanted > 0 {
        return Err(no_space());
    }
    Ok(wanted.min(usize::try_from(left).unwrap_or(usize::MAX)))
}

#[cfg(unix)]
fn no_space() -> io::Error {
    // ENOSPC is 28 on Linux and the BSDs, macOS included.
    io::Error::from_raw_os_error(28)
}

#[cfg(not(unix))]
fn no_space() -> io::Error {
    io::Error::from(io::ErrorKind::StorageFull)
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache: the content is {actual} bytes but {expected} were expected; it was not stored")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("cache: object {0} is not in the cache")]
    Missing(ObjectId),
    #[error(
        "cache: `{0}` cannot name a partial download (use 1-128 letters, digits, '-', '_', '.')"
    )]
    BadPartialKey(String),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub size: u64,
    /// When the object was last written or used (its mtime).
    pub last_used: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyProblem {
    /// The content no longer hashes to the name.
    Corrupt {
        id: ObjectId,
        actual: ObjectId,
        path: PathBuf,
    },
    /// A file in `objects/` whose name is not a SHA-256 in its fan-out folder.
    Misnamed {
        path: PathBuf,
    },
    Unreadable {
        path: PathBuf,
        error: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Removed objects: unreferenced ones first, then any evicted for size, oldest-used first.
    pub removed: Vec<ObjectId>,
    pub freed_bytes: u64,
    pub kept_objects: usize,
    pub kept_bytes: u64,
    /// Stale temp files and partial downloads removed.
    pub temps_removed: usize,
}

/// How [`LocalStore::link_or_copy`] placed the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Linked,
    Copied,
}

/// A place that holds objects by content hash. Writing goes through a local [`PendingObject`]
/// (hashing needs the bytes to pass through here anyway); a remote store would upload on finish.
pub trait ObjectStore: Send + Sync {
    fn has(&self, id: &ObjectId) -> bool;
    /// Reads an object (and records the use).
    fn open(&self, id: &ObjectId) -> Result<Box<dyn Read + Send>, CacheError>;
    fn list(&self) -> Result<Vec<ObjectInfo>, CacheError>;
    /// Removes an object; `false` if it was not there.
    fn remove(&self, id: &ObjectId) -> Result<bool, CacheError>;
    /// Re-hashes every object; with `quarantine`, moves bad ones aside.
    fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError>;
    /// Removes objects not in `keep`, then evicts oldest-used objects until at most `max_bytes`
    /// remain (referenced ones included: callers must check `has` before trusting a record).
    fn gc(&self, keep: &HashSet<ObjectId>, max_bytes: Option<u64>) -> Result<GcReport, CacheError>;
}

/// The cache on local disk.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
    versioned: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the cache under `<state_dir>/cache/`, and removes temp files
    /// left by crashed processes.
    pub fn open(state_dir: &Path) -> Result<LocalStore, CacheError> {
        let root = state_dir.join("cache");
        let store = LocalStore {
            versioned: root.join(CACHE_VERSION),
            root,
        };
        for dir in [store.objects_dir(), store.tmp_dir(), store.partial_dir()] {
            fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        }
        let tag = store.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            fsutil::atomic_write(&tag, CACHEDIR_TAG.as_bytes()).map_err(io_error("write", &tag))?;
        }
        store.clean_stale_temps(STALE_TEMP_AGE)?;
        Ok(store)
    }

    /// `<state_dir>/cache`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object lives (whether or not it exists).
    pub fn path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.hex();
        self.objects_dir().join(&hex[..2]).join(hex)
    }

    fn objects_dir(&self) -> PathBuf {
        self.versioned.join("objects")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.versioned.join("tmp")
    }

    fn partial_dir(&self) -> PathBuf {
        self.versioned.join("partial")
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.versioned.join("quarantine")
    }

    /// Starts a new object: a temp file in the cache that hashes what is written to it.
    /// Dropped without [`PendingObject::finish`], it leaves nothing behind.
    pub fn begin_object(&self) -> Result<PendingObject, CacheError> {
        let dir = self.tmp_dir();
        let tmp = tempfile::Builder::new()
            .prefix("obj-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_error("create a temp file in", &dir))?;
        let (file, path) = tmp.keep().map_err(|e| CacheError::Io {
            action: "keep a temp file in",
            path: dir.clone(),
            source: e.error,
        })?;
        Ok(PendingObject::new(
            self.clone(),
            file,
            path,
            Sha256::new(),
            0,
            false,
        ))
    }

    /// Opens (or starts) the partial download named `key` (e.g. a video id), re-hashing what it
    /// already holds; [`PendingObject::len`] is where the download continues. The partial
    /// survives a drop, so a later run can resume it.
    pub async fn resume_partial(&self, key: &str) -> Result<PendingObject, CacheError> {
        let path = self.partial_path(key)?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error("open", &path))?;
            let (hasher, len) = hash_reader(&mut file).map_err(io_error("read", &path))?;
            Ok(PendingObject::new(store, file, path, hasher, len, true))
        })
        .await
        .map_err(|e| CacheError::Io {
            action: "re-hash",
            path: self.partial_dir(),
            source: io::Error::other(e),
        })?
    }

    fn partial_path(&self, key: &str) -> Result<PathBuf, CacheError> {
        let valid = !key.is_empty()
            && key.len() <= 128
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(CacheError::BadPartialKey(key.to_string()));
        }
        Ok(self.partial_dir().join(format!("{key}.part")))
    }

    /// Stores bytes already in memory.
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<ObjectId, CacheError> {
        let id = Sha256Hex::of(bytes);
        if self.has(&id) {
            self.touch(&id)?;
            return Ok(id);
        }
        let dir = self.tmp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_error("create a temp file in", &dir))?;
        io::Write::write_all(&mut tmp, bytes).map_err(io_error("write", tmp.path()))?;
        let (file, path) = tmp.keep().map_err(|e| CacheError::Io {
            action: "keep a temp file in",
            path: dir.clone(),
            source: e.error,
        })?;
        file.sync_all().map_err(io_error("fsync", &path))?;
        self.install(&path, id, bytes.len() as u64)?;
        Ok(id)
    }

    /// Moves a complete, fsynced temp file into place under `id`.
    fn install(&self, tmp: &Path, id: ObjectId, len: u64) -> Result<(), CacheError> {
        let dest = self.path(&id);
        let dir = dest.parent().unwrap_or(&self.versioned).to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
            fsutil::sync_dir(&self.objects_dir()).map_err(io_error("fsync", &dir))?;
        }
        // An existing object of the right size is the same content; keep it, drop the copy.
        if fs::metadata(&dest).is_ok_and(|m| m.len() == len) {
            remove_if_exists(tmp)?;
            return self.touch(&id);
        }
        make_read_only(tmp).map_err(io_error("set permissions on", tmp))?;
        fs::rename(tmp, &dest).map_err(io_error("rename into", &dest))?;
        fsutil::sync_dir(&dir).map_err(io_error("fsync", &dir))
    }

    /// Records a use of the object, for size-limited gc.
    pub fn touch(&self, id: &ObjectId) -> Result<(), CacheError> {
        let path = self.path(id);
        let file = File::open(&path).map_err(io_error("open", &path))?;
        file.set_modified(SystemTime::now())
            .map_err(io_error("touch", &path))
    }

    /// Places the object at `dest`: a hard link when the filesystem allows, else a copy. Either
    /// way `dest` appears whole (temp in its folder + rename) and replaces what was there.
    pub fn link_or_copy(&self, id: &ObjectId, dest: &Path) -> Result<Placement, CacheError> {
        let src = self.path(id);
        if !src.is_file() {
            return Err(CacheError::Missing(*id));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        // Renaming a link over another link to the same file is a no-op that would strand the
        // temp link, so an output already linked to the object is left as it is.
        if same_file(&src, dest) {
            self.touch(id)?;
            return Ok(Placement::Linked);
        }
        let tmp = fsutil::temp_path_beside(dest);
        let placement = match fs::hard_link(&src, &tmp) {
            Ok(()) => Placement::Linked,
            Err(_) => {
                copy_durably(&src, &tmp)?;
                Placement::Copied
            }
        };
        if let Err(source) = fs::rename(&tmp, dest) {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::Io {
                action: "rename into",
                path: dest.to_path_buf(),
                source,
            });
        }
        fsutil::sync_dir(&dir).map_err(io_error("fsync", &dir))?;
        self.touch(id)?;
        Ok(placement)
    }

    /// Removes temp files older than `max_age` (and partial downloads older than
    /// [`STALE_PARTIAL_AGE`]); returns how many were removed.
    pub fn clean_stale_temps(&self, max_age: Duration) -> Result<usize, CacheError> {
        let mut removed = remove_older_than(&self.tmp_dir(), max_age)?;
        removed += remove_older_than(&self.partial_dir(), STALE_PARTIAL_AGE.max(max_age))?;
        Ok(removed)
    }

    /// Every file under `objects/`, with its fan-out folder.
    fn object_files(&self) -> Result<Vec<PathBuf>, CacheError> {
        let objects = self.objects_dir();
        let mut files = Vec::new();
        for fan in read_dir_sorted(&objects)? {
            if fan.is_dir() {
                files.extend(read_dir_sorted(&fan)?);
            } else {
                files.push(fan);
            }
        }
        Ok(files)
    }

    /// The id an object file claims, if its name and folder are well formed.
    fn id_of(path: &Path) -> Option<ObjectId> {
        let name = path.file_name()?.to_str()?;
        let fan = path.parent()?.file_name()?.to_str()?;
        let id: ObjectId = name.parse().ok()?;
        (name.len() == 64 && name == id.hex() && fan == &name[..2]).then_some(id)
    }

    fn quarantine(&self, path: &Path) -> Result<(), CacheError> {
        let dir = self.quarantine_dir();
        fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let target = dir.join(format!("{name}.{stamp}"));
        fs::rename(path, &target).map_err(io_error("quarantine", path))
    }
}

impl ObjectStore for LocalStore {
    fn has(&self, id: &ObjectId) -> bool {
        self.path(id).is_file()
    }

    fn open(&self, id: &ObjectId) -> Result<Box<dyn Read + Send>, CacheError> {
        let path = self.path(id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing(*id)),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        file.set_modified(SystemTime::now())
            .map_err(io_error("touch", &path))?;
        Ok(Box::new(file))
    }

    fn list(&self) -> Result<Vec<ObjectInfo>, CacheError> {
        let mut infos = Vec::new();
        for path in self.object_files()? {
            let Some(id) = Self::id_of(&path) else {
                continue;
            };
            let meta = fs::metadata(&path).map_err(io_error("stat", &path))?;
            infos.push(ObjectInfo {
                id,
                size: meta.len(),
                last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(infos)
    }

    fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }

    fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError> {
        let mut problems = Vec::new();
        for path in self.object_files()? {
            let problem = match Self::id_of(&path) {
                None => Some(VerifyProblem::Misnamed { path: path.clone() }),
                Some(id) => match hash_file(&path) {
                    Ok(actual) if actual == id => None,
                    Ok(actual) => Some(VerifyProblem::Corrupt {
                        id,
                        actual,
                        path: path.clone(),
                    }),
                    Err(e) => Some(VerifyProblem::Unreadable {
                        path: path.clone(),
                        error: e.to_string(),
                    }),
                },
            };
            if let Some(problem) = problem {
                if quarantine && !matches!(problem, VerifyProblem::Unreadable { .. }) {
                    self.quarantine(&path)?;
                }
                problems.push(problem);
            }
        }
        Ok(problems)
    }

    fn gc(&self, keep: &HashSet<ObjectId>, max_bytes: Option<u64>) -> Result<GcReport, CacheError> {
        let mut report = GcReport {
            temps_removed: self.clean_stale_temps(STALE_TEMP_AGE)?,
            ..GcReport::default()
        };
        let plan = plan_gc(self.list()?, keep, max_bytes);
        for info in &plan.remove {
            if self.remove(&info.id)? {
                report.removed.push(info.id);
                report.freed_bytes += info.size;
            }
        }
        report.kept_objects = plan.keep.len();
        report.kept_bytes = plan.keep.iter().map(|i| i.size).sum();
        Ok(report)
    }
}

/// What a gc removes and keeps, decided before anything is removed (`cache gc --dry-run`
/// shows it; `gc` carries it out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Objects no retained run uses, then those evicted for size, oldest-used first.
    pub remove: Vec<ObjectInfo>,
    pub keep: Vec<ObjectInfo>,
}

impl GcPlan {
    pub fn freed_bytes(&self) -> u64 {
        self.remove.iter().map(|i| i.size).sum()
    }

    pub fn kept_bytes(&self) -> u64 {
        self.keep.iter().map(|i| i.size).sum()
    }
}

/// Removes what is not in `keep`, then the least recently used of the rest until at most
/// `max_bytes` remain.
pub fn plan_gc(
    objects: Vec<ObjectInfo>,
    keep: &HashSet<ObjectId>,
    max_bytes: Option<u64>,
) -> GcPlan {
    let (mut kept, mut remove): (Vec<ObjectInfo>, Vec<ObjectInfo>) = objects
        .into_iter()
        .partition(|info| keep.contains(&info.id));
    if let Some(max_bytes) = max_bytes {
        kept.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
        let mut total: u64 = kept.iter().map(|i| i.size).sum();
        let mut evict = 0;
        while total > max_bytes && evict < kept.len() {
            total -= kept[evict].size;
            evict += 1;
        }
        remove.extend(kept.drain(..evict));
    }
    GcPlan { remove, keep: kept }
}

/// A size as people write it: plain bytes (`1048576`), or a number with a unit. `K`, `M`, `G`,
/// `T` (with or without `B`) are decimal, powers of 1000, as disks are sold; `KiB`, `MiB`,
/// `GiB`, `TiB` are binary, powers of 1024. Fractions are allowed (`1.5T`); any case.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{text}` is not a size: expected bytes or a number with K, M, G or T (decimal) or KiB, MiB, GiB or TiB (binary), e.g. 50G"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (number.ends_with('.')) {
        return Err(bad());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    // Integer arithmetic: 1.5T is exactly 1,500,000,000,000 bytes, whatever floats would say.
    let scale = 10u128.checked_pow(fraction.len() as u32).ok_or_else(bad)?;
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let bytes = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .and_then(|n| n.checked_mul(u128::from(unit_bytes)))
        .map(|n| n / scale)
        .ok_or_else(bad)?;
    u64::try_from(bytes).map_err(|_| bad())
}

/// Bytes for people, in binary units with one decimal: `512 B`, `1.2 MiB`, `46.6 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut divisor: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= divisor * 1024 {
        unit += 1;
        divisor *= 1024;
    }
    // Tenths of the unit, rounded half up, in integers.
    let tenths = (u128::from(bytes) * 10 + divisor / 2) / divisor;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

// ---------------------------------------------------------------- writing

/// An object being written: hashes as it streams, becomes an object on [`finish`].
///
/// [`finish`]: PendingObject::finish
pub struct PendingObject {
    store: LocalStore,
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    /// Partial downloads survive a drop; fresh temps do not.
    keep_on_drop: bool,
    done: bool,
}

impl std::fmt::Debug for PendingObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingObject")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("resumable", &self.keep_on_drop)
            .finish()
    }
}

impl PendingObject {
    fn new(
        store: LocalStore,
        file: File,
        path: PathBuf,
        hasher: Sha256,
        len: u64,
        keep_on_drop: bool,
    ) -> PendingObject {
        PendingObject {
            store,
            file: tokio::fs::File::from_std(file),
            path,
            hasher,
            len,
            keep_on_drop,
            done: false,
        }
    }

    /// Bytes written so far (for a resumed partial: where the download continues).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes what was written durable, so a resumable partial survives a power cut.
    pub async fn sync(&mut self) -> Result<(), CacheError> {
        self.file
            .flush()
            .await
            .map_err(io_error("flush", &self.path))?;
        self.file
            .sync_data()
            .await
            .map_err(io_error("fsync", &self.path))
    }

    /// Checks the length, fsyncs, and moves the content into `objects/` under its hash.
    /// On a length mismatch nothing is stored and the temp (or partial) is removed.
    pub async fn finish(mut self, expected_len: Option<u64>) -> Result<ObjectId, CacheError> {
        self.done = true;
        let path = self.path.clone();
        let result = self.finish_inner(expected_len).await;
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    async fn finish_inner(&mut self, expected_len: Option<u64>) -> Result<ObjectId, CacheError> {
        if let Some(expected) = expected_len
            && expected != self.len
        {
            return Err(CacheError::LengthMismatch {
                expected,
                actual: self.len,
            });
        }
        self.sync().await?;
        let id = Sha256Hex::from_digest(std::mem::take(&mut self.hasher).finalize().into());
        let (store, path, len) = (self.store.clone(), self.path.clone(), self.len);
        tokio::task::spawn_blocking(move || store.install(&path, id, len))
            .await
            .map_err(|e| CacheError::Io {
                action: "install",
                path: self.path.clone(),
                source: io::Error::other(e),
            })??;
        Ok(id)
    }

    /// Throws the content away now (a partial too).
    pub async fn abandon(mut self) -> Result<(), CacheError> {
        self.done = true;
        remove_if_exists(&self.path)
    }
}

impl AsyncWrite for PendingObject {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = room_for(buf.len())?;
        let written = ready!(Pin::new(&mut this.file).poll_write(cx, &buf[..room]))?;
        PENDING_BYTES_WRITTEN.fetch_add(written as u64, std::sync::atomic::Ordering::Relaxed);
        // Hash exactly what the file accepted, so hash and content cannot drift apart.
        this.hasher.update(&buf[..written]);
        this.len += written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl Drop for PendingObject {
    fn drop(&mut self) {
        if !self.done && !self.keep_on_drop {
            // Unlinking an open file is fine on POSIX; the data goes when the handle closes.
            let _ = fs::remove_file(&self.path);
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Hashes from the current position to the end, leaving the reader at the end.
fn hash_reader(reader: &mut impl Read) -> io::Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok((hasher, len)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

/// The SHA-256 of a file's content, streamed.
pub fn hash_file(path: &Path) -> io::Result<ObjectId> {
    let mut file = File::open(path)?;
    let (hasher, _) = hash_reader(&mut file)?;
    Ok(Sha256Hex::from_digest(hasher.finalize().into()))
}

fn remove_if_exists(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error("list", dir))?;
    paths.sort();
    Ok(paths)
}

fn remove_older_than(dir: &Path, max_age: Duration) -> Result<usize, CacheError> {
    let now = SystemTime::now();
    let mut removed = 0;
    for path in read_dir_sorted(dir)? {
        let age = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| now.duration_since(t).unwrap_or_default());
        if age.is_ok_and(|age| age >= max_age) && path.is_file() {
            remove_if_exists(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn copy_durably(src: &Path, dest: &Path) -> Result<(), CacheError> {
    let cleanup = |e: io::Error| {
        let _ = fs::remove_file(dest);
        io_error("copy to", dest)(e)
    };
    fs::copy(src, dest).map_err(cleanup)?;
    // The copy is the user's file, not the cache's: give it ordinary permissions.
    make_writable(dest).map_err(cleanup)?;
    File::open(dest).and_then(|f| f.sync_all()).map_err(cleanup)
}

#[cfg(unix)]
fn make_read_only(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o444))
}

#[cfg(unix)]
fn make_writable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn make_read_only(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms)
}

#[cfg(not(unix))]
fn make_writable(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(path, perms)
}

#[cfg(not(unix))]
fn same_file(_a: &Path, _b: &Path) -> bool {
    false
}
