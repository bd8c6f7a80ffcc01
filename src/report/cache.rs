//! What `render cache ls|verify|gc` say.

use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;

use super::output::Document;
use super::terminal::escape_controls;
use render_pipeline::cache::human_size;

/// One cached output, named by its newest use.
#[derive(Serialize)]
pub struct Entry {
    pub key: String,
    pub sha256: String,
    /// The video's bytes (the thumbnail's are in `size`).
    pub bytes: u64,
    pub video_id: Option<String>,
    pub present: bool,
    /// The shot, take and project of the newest run that uses it (none for an output no run
    /// of this ledger lists, e.g. fetched from the shared cache for a run since removed).
    pub shot_id: Option<String>,
    pub take: Option<u32>,
    pub project: Option<String>,
    /// Video and thumbnail objects present, in bytes and for people ("1.2 MiB").
    pub size_bytes: u64,
    pub size: String,
    /// When the video object was last written or laid out (RFC 3339, UTC).
    pub last_used: Option<String>,
    #[serde(skip)]
    pub last_used_at: Option<SystemTime>,
}

/// `cache ls`: every output, newest use first (a JSON array).
#[derive(Serialize)]
#[serde(transparent)]
pub struct Listing(pub Vec<Entry>);

impl Document for Listing {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let entries = &self.0;
        if entries.is_empty() {
            return writeln!(out, "0 outputs");
        }
        let rows: Vec<[String; 4]> = entries.iter().map(row).collect();
        let header = ["shot", "project", "size", "last use (UTC)"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let [shot, project, size, last] = row;
            let [w0, w1, w2, _] = widths;
            writeln!(out, "{shot:<w0$}  {project:<w1$}  {size:>w2$}  {last}")?;
        }
        let total: u64 = entries.iter().map(|e| e.size_bytes).sum();
        writeln!(out, "{} outputs, {}", entries.len(), human_size(total))
    }
}

fn row(entry: &Entry) -> [String; 4] {
    let shot = match (&entry.shot_id, entry.take) {
        (Some(shot), Some(take)) if take > 1 => format!("{shot} (take {take})"),
        (Some(shot), _) => shot.clone(),
        (None, _) => format!("({}…)", &entry.key[..12]),
    };
    let last_use = match &entry.last_used_at {
        Some(at) => human_time(*at),
        None => "(object missing)".to_string(),
    };
    [
        escape_controls(&shot).into_owned(),
        escape_controls(entry.project.as_deref().unwrap_or("-")).into_owned(),
        entry.size.clone(),
        last_use,
    ]
}

/// `cache verify`: the problems found (exit 6 when there are any).
#[derive(Default, Serialize)]
pub struct Verified {
    pub problems: Vec<String>,
}

impl Document for Verified {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        for line in &self.problems {
            writeln!(out, "{}", escape_controls(line))?;
        }
        writeln!(out, "{} problems", self.problems.len())
    }
}

/// `cache gc`: what was removed and kept, here and (with `--cache`) in the shared store.
#[derive(Default, Serialize)]
pub struct Collected {
    pub removed: usize,
    pub freed_bytes: u64,
    pub kept_objects: usize,
    pub kept_bytes: u64,
    pub shared_entries_removed: Option<usize>,
    pub shared_objects_removed: Option<usize>,
}

impl Document for Collected {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        if let (Some(entries), Some(objects)) =
            (self.shared_entries_removed, self.shared_objects_removed)
        {
            writeln!(
                out,
                "shared: removed {entries} unused index entries and {objects} objects"
            )?;
        }
        writeln!(
            out,
            "removed {} objects ({} bytes, {}); kept {} ({} bytes, {})",
            self.removed,
            self.freed_bytes,
            human_size(self.freed_bytes),
            self.kept_objects,
            self.kept_bytes,
            human_size(self.kept_bytes)
        )
    }
}

/// `cache gc --dry-run`: the same choice gc makes, shown.
#[derive(Serialize)]
pub struct GcPreview {
    pub dry_run: bool,
    pub would_remove: Vec<Doomed>,
    pub would_free_bytes: u64,
    pub kept_objects: usize,
    pub kept_bytes: u64,
    /// A shared cache is configured: its gc is not previewed, and people are told so.
    #[serde(skip)]
    pub shared: bool,
}

/// An object the gc would remove, named by the shot whose video or thumbnail it is.
#[derive(Serialize)]
pub struct Doomed {
    pub sha256: String,
    pub bytes: u64,
    pub shot_id: Option<String>,
    pub project: Option<String>,
    pub last_used: String,
}

impl Document for GcPreview {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        for doomed in &self.would_remove {
            let name = match &doomed.shot_id {
                Some(shot) => format!("{shot} ({})", doomed.project.as_deref().unwrap_or("-")),
                None => "no output uses it".to_string(),
            };
            writeln!(
                out,
                "would remove {}…  {:>10}  {}",
                &doomed.sha256[..16],
                human_size(doomed.bytes),
                escape_controls(&name)
            )?;
        }
        writeln!(
            out,
            "dry run: would remove {} objects ({}, {} bytes); would keep {} ({}); nothing was removed",
            self.would_remove.len(),
            human_size(self.would_free_bytes),
            self.would_free_bytes,
            self.kept_objects,
            human_size(self.kept_bytes)
        )?;
        if self.shared {
            writeln!(out, "the shared cache is not examined in a dry run")?;
        }
        Ok(())
    }
}

pub fn rfc3339(at: SystemTime) -> String {
    super::spend::rfc3339(unix_seconds(at))
}

fn human_time(at: SystemTime) -> String {
    chrono::DateTime::from_timestamp(unix_seconds(at), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
