//! An object being written into the local store: hashed as it streams, installed on finish.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::disk_full::WriteLimit;
use super::local::remove_if_exists;
use super::{CacheError, LocalStore, ObjectId, io_error};
use render_wire::key::Sha256Hex;

/// How much of an object is gathered before it is written: a download's first chunks are a
/// few kilobytes; the later ones, hundreds, go straight through.
const WRITE_BUFFER: usize = 64 << 10;
/// How much is written between two requests to the kernel to start writing back.
const WRITEBACK_STEP: u64 = 8 << 20;

/// An object being written: hashes as it streams, becomes an object on [`finish`].
///
/// [`finish`]: PendingObject::finish
pub struct PendingObject {
    store: LocalStore,
    /// Small chunks are gathered (up to [`WRITE_BUFFER`]) before they are written; big ones go
    /// straight through.
    file: BufWriter<FileWrites>,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    /// Partial downloads survive a drop; fresh temps do not.
    keep_on_drop: bool,
    done: bool,
    /// Bytes accepted since writeback was last started.
    since_writeback: u64,
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
            file: BufWriter::with_capacity(
                WRITE_BUFFER,
                FileWrites {
                    file: Arc::new(file),
                    limit: None,
                },
            ),
            path,
            hasher,
            len,
            keep_on_drop,
            done: false,
            since_writeback: 0,
        }
    }

    /// Counts this object's writes against `limit` (see [`super::DiskFull`]).
    pub(super) fn limited(mut self, limit: Arc<WriteLimit>) -> PendingObject {
        self.file.get_mut().limit = Some(limit);
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
        self.file
            .flush()
            .await
            .map_err(io_error("flush", &self.path))?;
        // An fsync waits for the disk: it runs on a blocking thread, not on a worker.
        let file = self.file.get_ref().file.clone();
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
        let written = ready!(Pin::new(&mut this.file).poll_write(cx, buf))?;
        // Hash exactly what was accepted, so hash and content cannot drift apart (a write that
        // fails later, from the buffer, fails the object: a partial is re-hashed from the disk).
        this.hasher.update(&buf[..written]);
        this.len += written as u64;
        this.since_writeback += written as u64;
        if this.since_writeback >= WRITEBACK_STEP {
            this.since_writeback = 0;
            start_writeback(&this.file.get_ref().file);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

/// The object's file, below the write buffer, where writes reach the disk: the disk-full
/// wrapper's budget is counted here, so a disk that fills up keeps what was written before.
///
/// A write is done in place, on the worker that received the chunk: it is a copy of one
/// network chunk (at most a few hundred KiB) into the page cache, tens of microseconds, while
/// the fsync that waits for the disk runs on a blocking thread ([`PendingObject::sync`]).
/// tokio's file would copy every chunk once more into its own buffer and wake a blocking
/// thread to write it, on another core: that hand-over was 12–15% of a harvest's CPU (issue
/// #13's bench). Here the chunk is still in this core's cache when it is hashed.
struct FileWrites {
    file: Arc<File>,
    /// The disk-full wrapper's budget, when the object was begun through one.
    limit: Option<Arc<WriteLimit>>,
}

impl AsyncWrite for FileWrites {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = match &this.limit {
            Some(limit) => limit.room_for(buf.len())?,
            None => buf.len(),
        };
        let written = io::Write::write(&mut &*this.file, &buf[..room])?;
        if let Some(limit) = &this.limit {
            limit.record(written);
        }
        Poll::Ready(Ok(written))
    }

    /// Writes are done when they return: nothing is held back here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Asks the kernel to start writing the file's dirty pages to the disk, without waiting for
/// them: the fsync that makes the object durable then finds most of it written already, instead
/// of waiting for all of it after the last byte (which costs each download a disk's worth of
/// latency at its end).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor stays open while `file` is borrowed, and the call touches no memory
    // of ours. Failing is harmless: the fsync at the end writes whatever is left.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File) {}

impl Drop for PendingObject {
    fn drop(&mut self) {
        if !self.done && !self.keep_on_drop {
            // Unlinking an open file is fine on POSIX; the data goes when the handle closes.
            let _ = fs::remove_file(&self.path);
        }
    }
}
