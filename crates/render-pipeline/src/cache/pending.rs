//! An object being written into the local store: hashed as it streams, installed on finish.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::disk_full::WriteLimit;
use super::local::remove_if_exists;
use super::{CacheError, LocalStore, ObjectId, io_error};
use blocks::BlockWrites;
use render_wire::key::Sha256Hex;

mod blocks;

/// An object being written: hashes as it streams, becomes an object on [`finish`].
///
/// [`finish`]: PendingObject::finish
pub struct PendingObject {
    store: LocalStore,
    /// Where the accepted bytes wait for their turn to be written.
    blocks: BlockWrites,
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
    pub(super) fn new(
        store: LocalStore,
        file: File,
        path: PathBuf,
        hasher: Sha256,
        len: u64,
        keep_on_drop: bool,
    ) -> PendingObject {
        PendingObject {
            store,
            blocks: BlockWrites::new(Arc::new(file), len),
            path,
            hasher,
            len,
            keep_on_drop,
            done: false,
        }
    }

    /// Counts this object's writes against `limit` (see [`super::DiskFull`]).
    pub(super) fn limited(mut self, limit: Arc<WriteLimit>) -> PendingObject {
        self.blocks.limit(limit);
        self
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
        self.flush().await.map_err(io_error("flush", &self.path))?;
        // An fsync waits for the disk: it runs on a blocking thread, not on a worker.
        let file = self.blocks.file().clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)))
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
        let written = ready!(this.blocks.poll_write(cx, buf))?;
        // Hash exactly what was accepted, so hash and content cannot drift apart (a write that
        // fails later, from a block, fails the object: a partial is re-hashed from the disk).
        this.hasher.update(&buf[..written]);
        this.len += written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().blocks.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
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
