//! The local store behind the one door, [`CacheStorage`]: its disk work runs on the blocking
//! pool, and `present` lists each object folder once.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use super::LocalStore;
use crate::cache::{
    CacheError, CacheStorage, GcReport, ObjectId, ObjectInfo, ObjectReader, PendingObject,
    Placement, VerifyProblem,
};
use render_wire::key::KeySet;

/// The disk work runs on the blocking pool, so a gc or a large copy never stalls the night.
/// The sync methods of `LocalStore` stay for code (and tests) that hold the local store itself.
#[async_trait::async_trait]
impl CacheStorage for LocalStore {
    fn root(&self) -> &Path {
        &self.root
    }

    fn has(&self, id: &ObjectId) -> bool {
        LocalStore::has(self, id)
    }

    /// One listing per object folder (256 at most) instead of a `stat` per object: a plan of
    /// 100,000 cached requests asks them all (a folder's worth at a time).
    fn present(&self, ids: &[ObjectId]) -> KeySet {
        let objects = self.objects_dir();
        let mut listed: HashMap<u8, KeySet> = HashMap::new();
        ids.iter()
            .filter(|id| {
                let folder = id.first_byte();
                listed
                    .entry(folder)
                    .or_insert_with(|| object_files_in(&objects.join(format!("{folder:02x}"))))
                    .contains(id)
            })
            .copied()
            .collect()
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
    use render_wire::key::Sha256Hex;

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
