//! The cache on local disk: see the layout in [`crate::cache`].
//!
//! Here: the [`LocalStore`], where objects live and how they are written, read, placed and
//! removed. Beside it: `upkeep` (listing, verifying, gc and stale temp files), `storage` (the
//! store behind the [`CacheStorage`] door, its disk work on the blocking pool) and `files`
//! (file-system helpers: durable copies, permissions).

mod files;
mod storage;
mod upkeep;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{
    CACHE_VERSION, CACHEDIR_TAG, CacheError, ObjectId, PendingObject, Placement, STALE_TEMP_AGE,
    hash_reader, io_error,
};
use crate::fsutil;
use render_wire::key::Sha256Hex;

use files::{copy_durably, make_read_only, same_file};

pub(super) use files::remove_if_exists;

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
    /// way `dest` appears whole (temp in its folder + rename) and replaces what was there. The
    /// caller makes the folder's new entries durable, once for all it places there (a night
    /// lays out hundreds of files in one folder; an fsync of the folder each costs a disk flush).
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
        self.touch(id)?;
        Ok(placement)
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

    /// Removes an object; `false` if it was not there.
    pub fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }
}
