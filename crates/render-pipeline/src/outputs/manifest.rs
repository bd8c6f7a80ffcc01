//! What `manifest.json` says: the run, and an entry per request with its status, files and
//! error, made from the ledger's rows.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ledger::{OutputRow, RequestRow, RequestStatus, RunItem};

/// What `manifest.json` says: written by [`lay_out`](super::lay_out), read back by scripts (and by the tests,
/// through this same type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub run_id: String,
    pub project: Option<String>,
    pub created_at: i64,
    pub out_dir: PathBuf,
    pub total_cost_usd: render_wire::money::Usd,
    pub requests: Vec<ManifestEntry>,
    /// Earlier outputs moved into `superseded/` by this layout (paths relative to the folder).
    #[serde(default)]
    pub superseded: Vec<PathBuf>,
    /// A newer run is laid out in the folder: this run's files were not put there (its
    /// manifest is `manifests/<run>.json` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_run: Option<String>,
}

impl Manifest {
    pub fn count(&self, status: EntryStatus) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }
}

/// Where a request of the manifest stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Its video is laid out.
    Harvested,
    Failed,
    /// Expired before download or never run: `render retry` sends it again.
    Lost,
    /// Still rendering or downloading.
    Pending,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Harvested => "harvested",
            EntryStatus::Failed => "failed",
            EntryStatus::Lost => "lost",
            EntryStatus::Pending => "pending",
        }
    }
}

/// What kind of failure an entry's error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Refused by the content policy: fails again unless the prompt changes.
    Policy,
    /// The server failed it: may succeed when retried.
    Server,
    Lost,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Policy => "policy",
            FailureKind::Server => "server",
            FailureKind::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub shot_id: String,
    pub take: u32,
    pub key: String,
    /// Who rendered it (the provider's identity) and how it travelled.
    pub provider: Option<String>,
    pub lane: crate::provider::Lane,
    pub model: Option<String>,
    pub size: Option<String>,
    pub seconds: Option<u32>,
    pub prompt: Option<String>,
    pub cost_usd: render_wire::money::Usd,
    pub status: EntryStatus,
    pub video_id: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Relative to the manifest's folder.
    pub video_path: Option<PathBuf>,
    pub thumbnail_path: Option<PathBuf>,
    pub error: Option<EntryError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryError {
    pub code: Option<String>,
    pub message: String,
    /// Policy rejections are not; server failures and lost requests are (`render retry`).
    pub retryable: bool,
    pub kind: FailureKind,
}

pub(super) fn entry(
    item: &RunItem,
    request: Option<&RequestRow>,
    output: Option<&OutputRow>,
) -> ManifestEntry {
    let status = match (output, request.map(|r| r.status)) {
        (Some(_), _) => EntryStatus::Harvested,
        (None, Some(RequestStatus::Failed)) => EntryStatus::Failed,
        (None, Some(RequestStatus::Lost)) => EntryStatus::Lost,
        _ => EntryStatus::Pending,
    };
    let error = request.filter(|_| output.is_none()).and_then(|r| {
        let message = r.error_message.clone()?;
        let kind = match r.status {
            RequestStatus::Lost => FailureKind::Lost,
            _ if !r.retryable => FailureKind::Policy,
            _ => FailureKind::Server,
        };
        Some(EntryError {
            code: r.error_code.clone(),
            message,
            retryable: r.retryable,
            kind,
        })
    });
    ManifestEntry {
        shot_id: item.shot_id.clone(),
        take: item.take,
        key: item.key.hex(),
        provider: item.provider.clone(),
        lane: item.lane,
        model: request.map(|r| r.model.clone()),
        size: request.map(|r| r.size.clone()),
        seconds: request.map(|r| r.seconds),
        prompt: request.map(|r| r.prompt.clone()),
        cost_usd: item.cost,
        status,
        video_id: output
            .and_then(|o| o.video_id.clone())
            .or_else(|| request.and_then(|r| r.video_id.clone())),
        sha256: output.map(|o| o.video_sha.hex()),
        bytes: output.map(|o| o.video_bytes),
        video_path: None,
        thumbnail_path: None,
        error,
    }
}

/// A manifest on disk, when it reads as one (a damaged or foreign file is no manifest).
pub(super) fn read_manifest(path: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
