//! Keeping the local store in order: listing its objects, re-hashing them (quarantining bad
//! ones), gc by use and size, and removing temp files crashed processes left.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::LocalStore;
use super::files::remove_if_exists;
use crate::cache::{
    CacheError, GcReport, ObjectId, ObjectInfo, STALE_PARTIAL_AGE, STALE_TEMP_AGE, VerifyProblem,
    hash_file, io_error, plan_gc,
};

impl LocalStore {
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
