//! How a pending object's bytes reach its file: in blocks, written on a blocking thread while
//! the next block fills, past the page cache where they can be (Linux's `O_DIRECT`).
//!
//! A night of videos is written once and not read again, so what the page cache does for them
//! (allocating pages, reserving blocks, writing back, the fsync that waits for all of it) is
//! spent for nothing, and it pushes whatever else the machine keeps there out of memory; on the
//! 2-core VM of issue #13's bench it was a quarter of a harvest's CPU at 16 MB a video and more
//! than half at 64 MB. The two blocks are used again and again. Small objects, the end of a
//! big one, other systems and filesystems that refuse `O_DIRECT` go through the page cache.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::task::JoinHandle;

use crate::cache::disk_full::{WriteLimit, no_space};

/// One direct write. Two blocks exist per object (one filling, one being written), so a crash
/// loses at most twice this of what a download had received.
const DIRECT_BLOCK: usize = 512 << 10;
/// What `O_DIRECT` needs the buffer's address, the length and the file offset aligned to: the
/// logical block size, 4096 or less on the disks in use. A disk that wants more refuses the
/// write, and the block goes through the page cache instead.
const DIRECT_ALIGN: usize = 4096;

/// Accepted bytes gathered into [`DIRECT_BLOCK`]s; a full block is written on a blocking thread
/// while the next one fills. One block is written at a time, in order, so the file always holds
/// a prefix of what was accepted, whenever the process dies. Dropped while a block is being
/// written, the write still finishes on its thread: the bytes a resumed download would write
/// at that place anyway.
pub(crate) struct BlockWrites {
    file: Arc<File>,
    /// The disk-full wrapper's budget, when the object was begun through one.
    limit: Option<Arc<WriteLimit>>,
    /// Where `filling` starts in the file.
    offset: u64,
    filling: Block,
    /// The block written before, back for reuse.
    spare: Option<Block>,
    writing: Option<JoinHandle<(Block, io::Result<Direct>)>>,
    /// The file's `O_DIRECT` state after the last block written.
    direct: Direct,
}

/// Whether the file is open for direct writes, carried from one block's write to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direct {
    Off,
    On,
    /// The filesystem refused it: every block goes through the page cache.
    Refused,
}

impl BlockWrites {
    /// Writes that continue the file at `offset` (its length).
    pub(crate) fn new(file: Arc<File>, offset: u64) -> BlockWrites {
        BlockWrites {
            file,
            limit: None,
            offset,
            filling: Block::new(),
            spare: None,
            writing: None,
            direct: Direct::Off,
        }
    }

    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Counts what reaches the file against `limit`, as a disk that fills up would.
    pub(crate) fn limit(&mut self, limit: Arc<WriteLimit>) {
        self.limit = Some(limit);
    }

    /// Takes what fits in the block being filled; a full block is handed over first.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.filling.is_full() {
            ready!(self.poll_written(cx))?;
            self.write_filling();
        }
        Poll::Ready(Ok(self.filling.push(buf)))
    }

    /// Writes what is gathered, however little, and waits until it is in the file.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_written(cx))?;
            if self.filling.is_empty() {
                // Written out: the memory goes back until more comes (a download usually
                // waits here for its fsync, with the next ones streaming meanwhile).
                (self.filling, self.spare) = (Block::new(), None);
                return Poll::Ready(Ok(()));
            }
            self.write_filling();
        }
    }

    /// Hands the block being filled to a blocking thread; the spare one fills meanwhile.
    fn write_filling(&mut self) {
        debug_assert!(self.writing.is_none(), "one block is written at a time");
        let next = self.spare.take().unwrap_or_else(Block::new);
        let block = std::mem::replace(&mut self.filling, next);
        let (file, offset, direct) = (self.file.clone(), self.offset, self.direct);
        let limit = self.limit.clone();
        self.offset += block.len() as u64;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let result = match limit {
                Some(limit) => write_within(&limit, &file, block.filled(), offset, direct),
                None => write_block(&file, block.filled(), offset, direct),
            };
            (block, result)
        }));
    }

    /// Waits for the block being written, if any, and takes it back for reuse.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(writing) = &mut self.writing else {
            return Poll::Ready(Ok(()));
        };
        let joined = ready!(Pin::new(writing).poll(cx));
        self.writing = None;
        let (mut block, result) = joined.map_err(io::Error::other)?;
        block.clear();
        self.spare = Some(block);
        self.direct = result?;
        Poll::Ready(Ok(()))
    }
}

/// Writes as much of `bytes` as `limit` has room for, then fails as a full disk does.
fn write_within(
    limit: &WriteLimit,
    file: &File,
    bytes: &[u8],
    offset: u64,
    direct: Direct,
) -> io::Result<Direct> {
    let room = limit.room_for(bytes.len())?;
    let direct = write_block(file, &bytes[..room], offset, direct)?;
    limit.record(room);
    if room < bytes.len() {
        return Err(no_space());
    }
    Ok(direct)
}

/// Writes `bytes` at `offset`: past the page cache when they are a whole block at an aligned
/// offset, through it otherwise, turning `O_DIRECT` on and off to suit (and off for good when
/// the filesystem refuses it). Returns the file's state for the next block.
fn write_block(file: &File, bytes: &[u8], offset: u64, direct: Direct) -> io::Result<Direct> {
    let aligned = bytes.len() == DIRECT_BLOCK && offset.is_multiple_of(DIRECT_ALIGN as u64);
    let wanted = match direct {
        Direct::Refused => Direct::Refused,
        _ if aligned => Direct::On,
        _ => Direct::Off,
    };
    let now = match (wanted, direct) {
        _ if wanted == direct => direct,
        (Direct::On, _) => set_direct(file, true).map_or(Direct::Refused, |()| Direct::On),
        // Without turning it off, what is not a whole aligned block cannot be written at all.
        _ => set_direct(file, false).map(|()| wanted)?,
    };
    match write_all_at(file, bytes, offset) {
        // A filesystem may take the flag and refuse the write itself (EINVAL); a refused write
        // wrote nothing, so the block goes again, through the page cache.
        Err(e) if now == Direct::On && e.kind() == io::ErrorKind::InvalidInput => {
            set_direct(file, false)?;
            write_all_at(file, bytes, offset)?;
            Ok(Direct::Refused)
        }
        result => result.map(|()| now),
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

/// One block is written at a time, so seeking first is safe.
#[cfg(not(unix))]
fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Turns direct writes on or off for the open file.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor that stays open while `file` is borrowed; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere every block goes through the page cache.
#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, _: bool) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Up to [`DIRECT_BLOCK`] bytes starting at an address aligned for `O_DIRECT`, allocated when
/// the first bytes come.
struct Block {
    /// Never grows past its first capacity, so the aligned start does not move.
    bytes: Vec<u8>,
    /// Where the aligned part starts in `bytes`.
    start: usize,
}

impl Block {
    fn new() -> Block {
        Block {
            bytes: Vec::new(),
            start: 0,
        }
    }

    fn allocate(&mut self) {
        self.bytes = Vec::with_capacity(DIRECT_BLOCK + DIRECT_ALIGN);
        self.start = self.bytes.as_ptr().align_offset(DIRECT_ALIGN);
        self.bytes.resize(self.start, 0);
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_full(&self) -> bool {
        self.len() == DIRECT_BLOCK
    }

    /// Takes as much of `data` as fits; returns how much.
    fn push(&mut self, data: &[u8]) -> usize {
        if self.bytes.capacity() == 0 {
            self.allocate();
        }
        let n = data.len().min(DIRECT_BLOCK - self.len());
        self.bytes.extend_from_slice(&data[..n]);
        n
    }

    fn clear(&mut self) {
        self.bytes.truncate(self.start);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::future::poll_fn;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;

    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    fn new_file(dir: &tempfile::TempDir, name: &str) -> Arc<File> {
        let path = dir.path().join(name);
        let mut options = File::options();
        options.read(true).write(true).create_new(true);
        Arc::new(options.open(path).unwrap())
    }

    async fn write(writes: &mut BlockWrites, mut data: &[u8], chunk: usize) {
        while !data.is_empty() {
            let piece = &data[..chunk.min(data.len())];
            let n = poll_fn(|cx| writes.poll_write(cx, piece)).await.unwrap();
            data = &data[n..];
        }
    }

    async fn flush(writes: &mut BlockWrites) {
        poll_fn(|cx| writes.poll_flush(cx)).await.unwrap();
    }

    fn read_back(file: &File) -> Vec<u8> {
        let mut back = vec![0; file.metadata().unwrap().len() as usize];
        file.read_exact_at(&mut back, 0).unwrap();
        back
    }

    /// Whether this filesystem takes a direct write at all (tmpfs, for one, may not).
    fn takes_direct_writes(dir: &tempfile::TempDir) -> bool {
        let file = new_file(dir, "probe");
        let mut block = Block::new();
        block.push(&[1; DIRECT_ALIGN]);
        set_direct(&file, true).is_ok() && file.write_all_at(block.filled(), 0).is_ok()
    }

    /// How many pages of the file's first `len` bytes are in the page cache.
    fn resident_pages(file: &File, len: usize) -> usize {
        // SAFETY: a read-only shared mapping of `len` bytes of an open file, only passed to
        // mincore (which reads no byte of it) and unmapped before returning.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED, "{}", io::Error::last_os_error());
            let mut pages = vec![0u8; len.div_ceil(page)];
            let status = libc::mincore(map, len, pages.as_mut_ptr());
            libc::munmap(map, len);
            assert_eq!(status, 0, "{}", io::Error::last_os_error());
            pages.iter().filter(|&&p| p & 1 == 1).count()
        }
    }

    #[tokio::test]
    async fn whole_blocks_go_past_the_page_cache_and_the_end_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = new_file(&dir, "object");
        let data = content(3 * DIRECT_BLOCK + 12_345);
        let mut writes = BlockWrites::new(file.clone(), 0);
        write(&mut writes, &data, 100_003).await;
        flush(&mut writes).await;

        if takes_direct_writes(&dir) {
            let whole_blocks = 3 * DIRECT_BLOCK;
            assert_eq!(
                resident_pages(&file, whole_blocks),
                0,
                "the whole blocks were written past the page cache"
            );
        }
        assert_eq!(read_back(&file), data);
    }

    #[tokio::test]
    async fn writing_on_after_a_flush_continues_the_file() {
        // A body cut short is flushed, then the download resumes by Range into the same object:
        // the file goes on from an unaligned length, through the page cache.
        let dir = tempfile::tempdir().unwrap();
        let file = new_file(&dir, "object");
        let data = content(2 * DIRECT_BLOCK + 700_001);
        let mut writes = BlockWrites::new(file.clone(), 0);
        write(&mut writes, &data[..700_001], 65_536).await;
        flush(&mut writes).await;
        assert_eq!(file.metadata().unwrap().len(), 700_001);
        write(&mut writes, &data[700_001..], 400_000).await;
        flush(&mut writes).await;
        assert_eq!(read_back(&file), data);
    }

    #[test]
    fn a_block_the_disk_refuses_goes_through_the_page_cache_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = new_file(&dir, "object");
        // One byte off the alignment O_DIRECT needs in memory: refused, whatever the disk.
        let data = content(2 * DIRECT_BLOCK + 1);
        let refused = write_block(&file, &data[1..=DIRECT_BLOCK], 0, Direct::Off).unwrap();
        assert_eq!(refused, Direct::Refused);
        let mut aligned = Block::new();
        aligned.push(&data[DIRECT_BLOCK + 1..]);
        let next = write_block(&file, aligned.filled(), DIRECT_BLOCK as u64, refused).unwrap();
        assert_eq!(next, Direct::Refused, "refused once, never tried again");
        assert_eq!(read_back(&file), data[1..]);
    }
}
