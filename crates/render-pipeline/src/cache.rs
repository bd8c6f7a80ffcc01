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
//! [`LocalStore::touch`] is called on `read`, `link_or_copy` and when a finished write finds the
//! object already present. atime is not used because most systems mount with `relatime`/`noatime`.
//!
//! The cache knows only objects. Which request produced which object lives in the ledger.
//!
//! Every caller goes through one door, [`CacheStorage`] (the shape of sccache's `Storage`
//! trait), opened in one place, [`open`]: the local disk ([`LocalStore`]), and in front of it,
//! when a test asks for a disk that fills up, the [`DiskFull`] wrapper. The studio's shared
//! cache (`crate::shared`) is not a backend of this trait: it answers by request key (index
//! entries, claims), not by object, so it stays its own module, behind the local store, and is
//! handed this same door for everything it fetches or publishes.

mod disk_full;
mod local;
mod pending;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use render_wire::key::Sha256Hex;

pub use disk_full::{DiskFull, FULL_AFTER_ENV};
pub use local::LocalStore;
pub use pending::PendingObject;

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

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
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

/// How [`CacheStorage::link_or_copy`] placed the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Linked,
    Copied,
}

/// An object's bytes, read as they stream.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// The cache as every caller sees it: a place that holds objects by content hash.
///
/// Asynchronous, because the night that uses it is, and a store behind it may be remote. The
/// trait is used as `Arc<dyn CacheStorage>` (callers hold whatever [`open`] built, wrappers
/// included), and native `async fn` in traits is not object-safe yet: `async_trait` boxes each
/// future, which is the simplest sound way to get `dyn` (sccache does the same).
///
/// Writing goes through a local [`PendingObject`]: hashing needs the bytes to pass through here
/// anyway, and it streams, so memory does not grow with the object.
#[async_trait::async_trait]
pub trait CacheStorage: Send + Sync + std::fmt::Debug {
    /// Where the cache lives (for messages).
    fn root(&self) -> &Path;
    /// Whether the object is here. Not async: on disk it is one `stat`, and the planner asks it
    /// of every request (125,000 in a large plan) from plain code, where a boxed future and a
    /// runtime per key would buy nothing.
    fn has(&self, id: &ObjectId) -> bool;
    /// Which of `ids` are here, for a plan asking about every output it knows at once. The
    /// local store lists each object folder once instead of a `stat` per object.
    fn present(&self, ids: &[ObjectId]) -> render_wire::key::KeySet {
        ids.iter().filter(|id| self.has(id)).copied().collect()
    }
    /// Starts a new object; dropped without [`PendingObject::finish`], it leaves nothing.
    async fn begin_object(&self) -> Result<PendingObject, CacheError>;
    /// Opens (or starts) the resumable partial download named `key` (e.g. a video id).
    async fn resume_partial(&self, key: &str) -> Result<PendingObject, CacheError>;
    /// Reads an object (and records the use).
    async fn read(&self, id: &ObjectId) -> Result<ObjectReader, CacheError>;
    /// Places the object at `dest` (a hard link when the filesystem allows, else a copy); `dest`
    /// appears whole and replaces what was there. Making the new entry durable is the caller's:
    /// one fsync of the folder for all it places there.
    async fn link_or_copy(&self, id: &ObjectId, dest: &Path) -> Result<Placement, CacheError>;
    async fn list(&self) -> Result<Vec<ObjectInfo>, CacheError>;
    /// Removes an object; `false` if it was not there.
    async fn remove(&self, id: &ObjectId) -> Result<bool, CacheError>;
    /// Re-hashes every object; with `quarantine`, moves bad ones aside.
    async fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError>;
    /// Removes objects not in `keep`, then evicts oldest-used objects until at most `max_bytes`
    /// remain (referenced ones included: callers must check `has` before trusting a record).
    async fn gc(
        &self,
        keep: &HashSet<ObjectId>,
        max_bytes: Option<u64>,
    ) -> Result<GcReport, CacheError>;
}

/// A shared handle is a store too, so code holding `Arc<dyn CacheStorage>` can lend it wherever
/// `&dyn CacheStorage` is asked for.
#[async_trait::async_trait]
impl<S: CacheStorage + ?Sized> CacheStorage for Arc<S> {
    fn root(&self) -> &Path {
        (**self).root()
    }

    fn has(&self, id: &ObjectId) -> bool {
        (**self).has(id)
    }

    fn present(&self, ids: &[ObjectId]) -> render_wire::key::KeySet {
        (**self).present(ids)
    }

    async fn begin_object(&self) -> Result<PendingObject, CacheError> {
        (**self).begin_object().await
    }

    async fn resume_partial(&self, key: &str) -> Result<PendingObject, CacheError> {
        (**self).resume_partial(key).await
    }

    async fn read(&self, id: &ObjectId) -> Result<ObjectReader, CacheError> {
        (**self).read(id).await
    }

    async fn link_or_copy(&self, id: &ObjectId, dest: &Path) -> Result<Placement, CacheError> {
        (**self).link_or_copy(id, dest).await
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>, CacheError> {
        (**self).list().await
    }

    async fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        (**self).remove(id).await
    }

    async fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError> {
        (**self).verify_all(quarantine).await
    }

    async fn gc(
        &self,
        keep: &HashSet<ObjectId>,
        max_bytes: Option<u64>,
    ) -> Result<GcReport, CacheError> {
        (**self).gc(keep, max_bytes).await
    }
}

/// The cache of a state directory, as every command uses it: the local store under
/// `<state_dir>/cache/`, behind the disk-full wrapper when [`FULL_AFTER_ENV`] asks for one.
/// The one place a store is built, so every part of a process shares one (and one budget).
pub fn open(state_dir: &Path) -> Result<Arc<dyn CacheStorage>, CacheError> {
    let local: Arc<dyn CacheStorage> = Arc::new(LocalStore::open(state_dir)?);
    Ok(match DiskFull::capacity_from_env() {
        Some(capacity) => Arc::new(DiskFull::new(local, capacity)),
        None => local,
    })
}

/// Up to `len` bytes from the start of an object (to tell an image's kind by its magic bytes).
pub async fn read_head(store: &dyn CacheStorage, id: &ObjectId, len: usize) -> Vec<u8> {
    let Ok(reader) = store.read(id).await else {
        return Vec::new();
    };
    let mut head = Vec::with_capacity(len);
    let _ = reader.take(len as u64).read_to_end(&mut head).await;
    head
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

// ---------------------------------------------------------------- hashing

/// Hashes from the current position to the end, leaving the reader at the end.
pub(crate) fn hash_reader(reader: &mut impl Read) -> io::Result<(Sha256, u64)> {
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
