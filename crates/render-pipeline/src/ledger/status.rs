//! Where a request stands, and the one string form of each status.

use super::{LedgerError, Result};

/// Where a request stands. Stored as text so the ledger reads well in `sqlite3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Known but not in any batch yet.
    Pending,
    /// In a batch whose creation is intended but not yet confirmed.
    Queued,
    /// In a created batch.
    Submitted,
    /// Rendered; the video is waiting to be downloaded.
    Completed,
    /// The video is in the cache.
    Harvested,
    /// The provider answered with an error (kept with the request).
    Failed,
    /// Never rendered or expired before download: resubmittable.
    Lost,
    /// Claimed in the shared cache by another machine of the studio: waited for, not sent.
    Elsewhere,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Queued => "queued",
            RequestStatus::Submitted => "submitted",
            RequestStatus::Completed => "completed",
            RequestStatus::Harvested => "harvested",
            RequestStatus::Failed => "failed",
            RequestStatus::Lost => "lost",
            RequestStatus::Elsewhere => "elsewhere",
        }
    }

    pub(super) fn parse(text: &str) -> Result<RequestStatus> {
        Ok(match text {
            "pending" => RequestStatus::Pending,
            "queued" => RequestStatus::Queued,
            "submitted" => RequestStatus::Submitted,
            "completed" => RequestStatus::Completed,
            "harvested" => RequestStatus::Harvested,
            "failed" => RequestStatus::Failed,
            "lost" => RequestStatus::Lost,
            "elsewhere" => RequestStatus::Elsewhere,
            other => return Err(LedgerError::Corrupt(format!("request status `{other}`"))),
        })
    }

    /// Somebody is already rendering (or has rendered) this request: do not submit it again.
    pub fn is_in_flight_or_done(self) -> bool {
        matches!(
            self,
            RequestStatus::Queued
                | RequestStatus::Submitted
                | RequestStatus::Completed
                | RequestStatus::Harvested
                | RequestStatus::Elsewhere
        )
    }
}
