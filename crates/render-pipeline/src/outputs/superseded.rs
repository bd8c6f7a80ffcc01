//! `superseded/`: where the files earlier runs laid out, and the latest does not speak for, are
//! moved, so nothing stale looks current.

use std::path::{Path, PathBuf};

use super::manifest::{ManifestEntry, read_manifest};
use super::{MANIFEST_NAME, MANIFESTS_DIR, SUPERSEDED_DIR};

/// Moves into `superseded/` every file an earlier manifest of this folder laid out that this
/// layout did not write: shots dropped from the list, takes cut, and renders of a shot's old
/// prompt while its new one is pending or failed. Only files named in this folder's own
/// manifests are touched; anything else a person put here stays.
pub(super) fn supersede_earlier_outputs(
    out_dir: &Path,
    entries: &[ManifestEntry],
) -> std::io::Result<Vec<PathBuf>> {
    let current: std::collections::HashSet<&Path> = entries
        .iter()
        .flat_map(|e| [e.video_path.as_deref(), e.thumbnail_path.as_deref()])
        .flatten()
        .collect();
    let mut moved = Vec::new();
    for earlier in earlier_output_paths(out_dir)? {
        if current.contains(earlier.as_path()) || !is_plain_relative(&earlier) {
            continue;
        }
        let from = out_dir.join(&earlier);
        if !from.is_file() {
            continue;
        }
        let aside = out_dir.join(SUPERSEDED_DIR);
        std::fs::create_dir_all(&aside)?;
        std::fs::rename(&from, aside.join(&earlier))?;
        moved.push(Path::new(SUPERSEDED_DIR).join(&earlier));
    }
    if !moved.is_empty() {
        crate::fsutil::sync_dir(out_dir)?;
        tracing::info!(
            "moved {} earlier output(s) into {SUPERSEDED_DIR}/",
            moved.len()
        );
    }
    Ok(moved)
}

/// The video and thumbnail paths every manifest in `manifests/` (and the latest) names. A
/// manifest that cannot be read names nothing: it is only ever a hint of what to tidy.
fn earlier_output_paths(out_dir: &Path) -> std::io::Result<std::collections::BTreeSet<PathBuf>> {
    let mut manifests = vec![out_dir.join(MANIFEST_NAME)];
    match std::fs::read_dir(out_dir.join(MANIFESTS_DIR)) {
        Ok(dir) => {
            for entry in dir {
                manifests.push(entry?.path());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut paths = std::collections::BTreeSet::new();
    for manifest in manifests.iter().filter_map(|path| read_manifest(path)) {
        for entry in manifest.requests {
            paths.extend(entry.video_path);
            paths.extend(entry.thumbnail_path);
        }
    }
    Ok(paths)
}

/// A bare file name: a manifest is a file on disk, and one edited by hand must not make the
/// layout move files from elsewhere.
fn is_plain_relative(path: &Path) -> bool {
    let mut components = path.components();
    matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}
