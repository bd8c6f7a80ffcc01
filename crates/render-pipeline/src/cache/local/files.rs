//! File-system helpers of the local store: removing what may be gone, durable copies, and the
//! permissions and identity of files (per platform).

use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::cache::{CacheError, io_error};

pub(in crate::cache) fn remove_if_exists(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

pub(super) fn copy_durably(src: &Path, dest: &Path) -> Result<(), CacheError> {
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
pub(super) fn make_read_only(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o444))
}

#[cfg(unix)]
fn make_writable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

#[cfg(unix)]
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
pub(super) fn make_read_only(path: &Path) -> io::Result<()> {
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
pub(super) fn same_file(_a: &Path, _b: &Path) -> bool {
    false
}
