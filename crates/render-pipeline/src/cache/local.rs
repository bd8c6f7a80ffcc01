//! The cache on local disk: see the layout in [`crate::cache`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{
    CACHE_VERSION, CACHEDIR_TAG, CacheError, CacheStorage, GcReport, ObjectId, ObjectInfo,
    ObjectReader, PendingObject, Placement, STALE_PARTIAL_AGE, STALE_TEMP_AGE, VerifyProblem,
    hash_file, hash_reader, io_error, plan_gc,
};
use crate::fsutil;
use render_wire::key::{KeySet, Sha256Hex};

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
    pub(super) fn install(&self, tmp: &Path, id: ObjectId, len: u64) -> Result<(), CacheError> {
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

    /// Whether the object is here.
    pub fn has(&self, id: &ObjectId) -> bool {
        self.path(id).is_file()
    }

    /// Reads an object (and records the use).
    pub fn read_object(&self, id: &ObjectId) -> Result<File, CacheError> {
        let path = self.path(id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing(*id)),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        file.set_modified(SystemTime::now())
            .map_err(io_error("touch", &path))?;
        Ok(file)
    }

    pub fn list(&self) -> Result<Vec<ObjectInfo>, CacheError> {
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

    /// Removes an object; `false` if it was not there.
    pub fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }

    /// Re-hashes every object; with `quarantine`, moves bad ones aside.
    pub fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError> {
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

    /// Removes objects not in `keep`, then the oldest-used until at most `max_bytes` remain.
    pub fn gc(
        &self,
        keep: &HashSet<ObjectId>,
        max_bytes: Option<u64>,
    ) -> Result<GcReport, CacheError> {
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

/// The disk work runs on the blocking pool, so a gc or a large copy never stalls the night.
/// The sync methods above stay for code (and tests) that hold the local store itself.
#[async_trait::async_trait]
impl CacheStorage for LocalStore {
    fn root(&self) -> &Path {
        &self.root
    }

    fn has(&self, id: &ObjectId) -> bool {
        LocalStore::has(self, id)
    }

    /// One listing per object folder (256 at most) instead of a `stat` per object: a plan of
    /// 100,000 cached requests asks them all.
    fn present(&self, ids: &[ObjectId]) -> KeySet {
        let mut by_folder: Vec<Vec<ObjectId>> = vec![Vec::new(); 256];
        for id in ids {
            by_folder[usize::from(id.first_byte())].push(*id);
        }
        let mut present = KeySet::with_capacity_and_hasher(ids.len(), Default::default());
        let objects = self.objects_dir();
        for (folder, ids) in by_folder.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let files = object_files_in(&objects.join(format!("{folder:02x}")));
            present.extend(ids.into_iter().filter(|id| files.contains(id)));
        }
        present
    }

    async fn begin_object(&self) -> Result<PendingObject, CacheError> {
        let store = self.clone();
        self.blocking(move || LocalStore::begin_object(&store))
            .await
    }

    async fn resume_partial(&self, key: &str) -> Result<PendingObject, CacheError> {
        LocalStore::resume_partial(self, key).await
    }

    async fn read(&self, id: &ObjectId) -> Result<ObjectReader, CacheError> {
        let (store, id) = (self.clone(), *id);
        let file = self.blocking(move || store.read_object(&id)).await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn link_or_copy(&self, id: &ObjectId, dest: &Path) -> Result<Placement, CacheError> {
        let (store, id, dest) = (self.clone(), *id, dest.to_path_buf());
        self.blocking(move || LocalStore::link_or_copy(&store, &id, &dest))
            .await
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>, CacheError> {
        let store = self.clone();
        self.blocking(move || LocalStore::list(&store)).await
    }

    async fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        let (store, id) = (self.clone(), *id);
        self.blocking(move || LocalStore::remove(&store, &id)).await
    }

    async fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError> {
        let store = self.clone();
        self.blocking(move || LocalStore::verify_all(&store, quarantine))
            .await
    }

    async fn gc(
        &self,
        keep: &HashSet<ObjectId>,
        max_bytes: Option<u64>,
    ) -> Result<GcReport, CacheError> {
        let (store, keep) = (self.clone(), keep.clone());
        self.blocking(move || LocalStore::gc(&store, &keep, max_bytes))
            .await
    }
}

impl LocalStore {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| CacheError::Io {
                action: "work in",
                path: self.root.clone(),
                source: io::Error::other(e),
            })?
    }
}

// ---------------------------------------------------------------- helpers

pub(super) fn remove_if_exists(path: &Path) -> Result<(), CacheError> {
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

/// The names of the regular files in `folder` (through symbolic links, as `is_file` does).
/// The objects among the regular files of `folder`: names that are 64 lowercase hex digits,
/// read as the ids they spell, without a `String` each.
fn object_files_in(folder: &Path) -> KeySet {
    let Ok(entries) = fs::read_dir(folder) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let id = ObjectId::from_lower_hex(entry.file_name().as_encoded_bytes())?;
            match entry.file_type() {
                Ok(kind) if kind.is_symlink() => entry.path().is_file(),
                Ok(kind) => kind.is_file(),
                Err(_) => false,
            }
            .then_some(id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheStorage;

    /// `present` lists each folder once and reads the names as ids: it must answer what a
    /// `has` per object answers, whatever else lies in the folders.
    #[test]
    fn present_answers_what_has_answers_for_each_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let ids: Vec<ObjectId> = (0u32..600)
            .map(|i| Sha256Hex::of(&i.to_le_bytes()))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let path = store.path(id);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            match i % 6 {
                0 | 1 => fs::write(&path, b"video").unwrap(),
                // A folder of the object's name is not the object.
                2 => fs::create_dir(&path).unwrap(),
                // The same name in capitals is another file.
                3 => fs::write(path.with_file_name(id.hex().to_uppercase()), b"x").unwrap(),
                #[cfg(unix)]
                4 => std::os::unix::fs::symlink(store.path(&ids[0]), &path).unwrap(),
                #[cfg(unix)]
                5 => std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap(),
                _ => {}
            }
            // Strays beside the objects.
            fs::write(path.with_file_name("notes.txt"), b"x").unwrap();
            fs::write(path.with_file_name(format!("{}.part", id.hex())), b"x").unwrap();
        }
        let expected: std::collections::HashSet<ObjectId> =
            ids.iter().filter(|id| store.has(id)).copied().collect();
        let present = CacheStorage::present(&store, &ids);
        assert_eq!(present.iter().copied().collect::<HashSet<_>>(), expected);
        assert!(expected.len() >= 200, "{} present", expected.len());
        assert!(present.contains(&ids[0]) && !present.contains(&ids[2]));
        assert!(CacheStorage::present(&store, &[]).is_empty());
    }
}
