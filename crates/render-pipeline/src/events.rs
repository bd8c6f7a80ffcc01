//! What the engine reports while it works. The reporter renders these for people (progress bars,
//! log lines) and scripts; the engine never writes to the terminal itself.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        resumed: bool,
        requests: usize,
    },
    AssetUploaded {
        sha256: String,
        file_id: String,
        bytes: u64,
    },
    AssetReused {
        sha256: String,
        file_id: String,
    },
    BatchCreated {
        run_id: String,
        part: u32,
        batch_id: String,
        requests: u64,
    },
    /// A batch created by an earlier, interrupted invocation was found and adopted.
    BatchAdopted {
        run_id: String,
        part: u32,
        batch_id: String,
    },
    /// A direct-lane job was created for a request (or, `adopted`, found on the server after
    /// an interruption).
    JobCreated {
        provider: String,
        shot_id: String,
        take: u32,
        key: String,
        video_id: String,
        adopted: bool,
    },
    /// A round of refreshing every open batch begins (nearest deadline first).
    PollStarted {
        batches: usize,
    },
    BatchStatus {
        batch_id: String,
        status: String,
        completed: u64,
        failed: u64,
        total: u64,
        /// Seconds until the provider deletes this batch's outputs, when known.
        outputs_expire_in: Option<i64>,
    },
    /// Harvest begins: this many videos of the runs it works on are still to come.
    HarvestStarted {
        videos: u64,
    },
    DownloadsPlanned {
        videos: u64,
    },
    DownloadProgress {
        bytes: u64,
    },
    VideoHarvested {
        shot_id: String,
        take: u32,
        key: String,
        bytes: u64,
    },
    RequestFailed {
        shot_id: String,
        take: u32,
        key: String,
        code: Option<String>,
        message: String,
    },
    RequestLost {
        shot_id: String,
        take: u32,
        key: String,
        reason: String,
    },
    Warning {
        message: String,
    },
}

/// Where events go. Implementations must be cheap: they are called from download loops.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event (library callers and tests that do not watch).
pub struct Silent;

impl EventSink for Silent {
    fn emit(&self, _event: Event) {}
}
