//! The one way this program writes a file that must survive a crash: a temporary file in the
//! same folder, fsync, rename over the target, fsync the folder.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// How every temporary file this program leaves beside a target ends: a kill between write and
/// rename strands one, and [`sweep_temps`] knows it by this.
const TEMP_SUFFIX: &str = ".render-tmp";

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a part.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    persist(tmp, path)
}

/// A new temporary file in `path`'s folder, hidden and named for it.
pub fn temp_beside(path: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(parent_dir(path))
}

/// The name of a temporary file for `path` in its folder (for links, which `tempfile` cannot
/// make).
pub fn temp_path_beside(path: &Path) -> std::path::PathBuf {
    parent_dir(path).join(format!(
        "{}{:016x}{TEMP_SUFFIX}",
        temp_prefix(path),
        rand::random::<u64>()
    ))
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    format!(".{name}.")
}

/// Removes the temporary files a killed process left in `dir`; call only while no other
/// process can be writing there (hold the folder's lock). Returns how many went.
pub fn sweep_temps(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Also the names of versions before the suffix was shared.
        let ours = name.starts_with('.')
            && (name.ends_with(TEMP_SUFFIX)
                || (name.contains(".render-") && name.ends_with(".tmp")));
        if ours && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Moves a fully written temporary file into place, durably.
pub fn persist(tmp: NamedTempFile, path: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent_dir(path))
}

/// Makes a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // Opening a directory for fsync is how POSIX makes its entries durable.
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/manifest.json");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn sweeping_removes_only_stranded_temps() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.mp4");
        fs::write(&target, b"video").unwrap();
        fs::write(temp_path_beside(&target), b"half").unwrap();
        temp_beside(&target).unwrap().keep().unwrap();
        fs::write(dir.path().join(".keep-me"), b"x").unwrap();
        assert_eq!(sweep_temps(dir.path()).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".keep-me", "a.mp4"]);
    }
}
