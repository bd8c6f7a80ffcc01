//! A disk that fills up mid-download, for tests: a wrapper in front of another store (the shape
//! of sccache's `ReadOnlyStorage`), not a switch inside the local one. A tiny filesystem would
//! need mount rights CI does not have.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    CacheError, CacheStorage, GcReport, ObjectId, ObjectInfo, ObjectReader, PendingObject,
    Placement, VerifyProblem,
};

/// With `RENDER_CACHE_FULL_AFTER=N`, [`super::open`] puts the store behind [`DiskFull`]: writes
/// into pending objects fail with "no space left on device" once the store has taken `N` bytes.
pub const FULL_AFTER_ENV: &str = "RENDER_CACHE_FULL_AFTER";

/// A store whose pending objects share a budget of `capacity` bytes; everything else passes
/// through to the store behind it.
#[derive(Debug)]
pub struct DiskFull {
    inner: Arc<dyn CacheStorage>,
    limit: Arc<WriteLimit>,
}

/// What a [`DiskFull`] store has taken so far, shared by every object written through it.
#[derive(Debug)]
pub(crate) struct WriteLimit {
    capacity: u64,
    written: AtomicU64,
}

impl DiskFull {
    pub fn new(inner: Arc<dyn CacheStorage>, capacity: u64) -> DiskFull {
        DiskFull {
            inner,
            limit: Arc::new(WriteLimit {
                capacity,
                written: AtomicU64::new(0),
            }),
        }
    }

    /// The capacity [`FULL_AFTER_ENV`] asks for, if it is set to a number.
    pub fn capacity_from_env() -> Option<u64> {
        std::env::var(FULL_AFTER_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    }
}

impl WriteLimit {
    /// How much of `wanted` bytes the disk still takes; `Err` when it is full.
    pub(crate) fn room_for(&self, wanted: usize) -> io::Result<usize> {
        let left = self
            .capacity
            .saturating_sub(self.written.load(Ordering::Relaxed));
        if left == 0 && wanted > 0 {
            return Err(no_space());
        }
        Ok(wanted.min(usize::try_from(left).unwrap_or(usize::MAX)))
    }

    pub(crate) fn record(&self, written: usize) {
        self.written.fetch_add(written as u64, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl CacheStorage for DiskFull {
    fn root(&self) -> &Path {
        self.inner.root()
    }

    fn has(&self, id: &ObjectId) -> bool {
        self.inner.has(id)
    }

    async fn begin_object(&self) -> Result<PendingObject, CacheError> {
        let pending = self.inner.begin_object().await?;
        Ok(pending.limited(self.limit.clone()))
    }

    async fn resume_partial(&self, key: &str) -> Result<PendingObject, CacheError> {
        let pending = self.inner.resume_partial(key).await?;
        Ok(pending.limited(self.limit.clone()))
    }

    async fn read(&self, id: &ObjectId) -> Result<ObjectReader, CacheError> {
        self.inner.read(id).await
    }

    async fn link_or_copy(&self, id: &ObjectId, dest: &Path) -> Result<Placement, CacheError> {
        self.inner.link_or_copy(id, dest).await
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>, CacheError> {
        self.inner.list().await
    }

    async fn remove(&self, id: &ObjectId) -> Result<bool, CacheError> {
        self.inner.remove(id).await
    }

    async fn verify_all(&self, quarantine: bool) -> Result<Vec<VerifyProblem>, CacheError> {
        self.inner.verify_all(quarantine).await
    }

    async fn gc(
        &self,
        keep: &HashSet<ObjectId>,
        max_bytes: Option<u64>,
    ) -> Result<GcReport, CacheError> {
        self.inner.gc(keep, max_bytes).await
    }
}

#[cfg(unix)]
pub(crate) fn no_space() -> io::Error {
    // ENOSPC is 28 on Linux and the BSDs, macOS included.
    io::Error::from_raw_os_error(28)
}

#[cfg(not(unix))]
pub(crate) fn no_space() -> io::Error {
    io::Error::from(io::ErrorKind::StorageFull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writes_past_the_capacity_fail_with_no_space() {
        let state = tempfile::tempdir().unwrap();
        let local: Arc<dyn CacheStorage> =
            Arc::new(super::super::LocalStore::open(state.path()).unwrap());
        let store = DiskFull::new(local.clone(), 10);
        // Counted where the bytes reach the file, below the object's write blocks.
        let mut first = store.begin_object().await.unwrap();
        first.write_all(b"123456").await.unwrap();
        first.flush().await.unwrap();
        // The budget is the store's, not the object's: a second object gets what is left.
        let mut second = store.begin_object().await.unwrap();
        second.write_all(b"abcdefgh").await.unwrap();
        let err = second.flush().await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
        // The store behind it is not limited.
        let mut free = local.begin_object().await.unwrap();
        free.write_all(&[7u8; 64]).await.unwrap();
    }
}
