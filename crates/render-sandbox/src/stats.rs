//! Counters a test reads to prove what happened: `GET /sandbox/stats` and `SandboxHandle::stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the sandbox's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Videos created, directly or by a batch request that rendered.
    pub videos_created: u64,
    pub batches_created: u64,
    /// Files uploaded through `POST /v1/files`, by purpose (outputs the sandbox writes are not counted).
    pub files_uploaded: BTreeMap<String, u64>,
    /// SHA-256 of each uploaded file's bytes, in upload order (a test proves dedupe with it).
    pub uploaded_sha256: Vec<String>,
    /// Body bytes actually sent by content downloads: `video`, `thumbnail`, `spritesheet`, `file`.
    pub bytes_served: BTreeMap<String, u64>,
    /// Requests by endpoint (`GET /v1/videos/{id}/content`) and status code.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Faults injected, by kind: `rate_limit`, `server_error`, `drop`, `slow`,
    /// `batch_request_failure`, `batch_expire`, `moderation`.
    pub faults_injected: BTreeMap<String, u64>,
    /// Render slots (`concurrency`): at most this many renders run at once, others queue.
    #[serde(default)]
    pub render_slots: usize,
    /// Real milliseconds the slots spent rendering, summed over slots (finished renders, the
    /// part of aborted ones that ran, and running ones up to now). Figured from the virtual
    /// timeline at the clock's scale, so a render counts exactly `render_time`.
    #[serde(default)]
    pub render_busy_ms: u64,
    /// Most renders ever in progress at once (never above `render_slots`).
    #[serde(default)]
    pub peak_renders: usize,
    /// Real milliseconds since the sandbox started at which the first job (a video or a
    /// batch) was accepted.
    #[serde(default)]
    pub first_create_ms: Option<u64>,
    /// Real milliseconds since the sandbox started at which the last render ended (clock jumps
    /// with `/sandbox/clock/advance` are not real time: they are counted as if made first).
    #[serde(default)]
    pub last_finish_ms: Option<u64>,
    /// Times the sandbox was restarted with `POST /sandbox/restart` (every video forgotten).
    #[serde(default)]
    pub restarts: u64,
    /// Most requests in progress at once, by endpoint: from arrival (before any fault's delay)
    /// to the last byte of a streamed body, or to the answer for the others. A test reads a
    /// client's concurrency here.
    #[serde(default)]
    pub peak_in_progress: BTreeMap<String, usize>,
    /// Requests in progress now, by endpoint.
    #[serde(skip)]
    in_progress: BTreeMap<String, usize>,
}

impl Stats {
    /// Share of the render slots' capacity used between the first job accepted and the last
    /// render's end: `render_busy_ms / (render_slots × span)`.
    pub fn utilisation(&self) -> Option<f64> {
        let span = self.last_finish_ms?.checked_sub(self.first_create_ms?)?;
        (span > 0 && self.render_slots > 0)
            .then(|| self.render_busy_ms as f64 / (self.render_slots as f64 * span as f64))
    }

    /// All faults injected, of every kind.
    pub fn faults_total(&self) -> u64 {
        self.faults_injected.values().sum()
    }

    /// Requests answered on `endpoint` with `status`.
    pub fn requests_with(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .get(endpoint)
            .and_then(|by_status| by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests answered on `endpoint`, any status.
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.requests
            .get(endpoint)
            .map(|by_status| by_status.values().sum())
            .unwrap_or(0)
    }

    pub(crate) fn count_fault(&mut self, name: &str) {
        *self.faults_injected.entry(name.to_string()).or_default() += 1;
    }

    pub(crate) fn count_request(&mut self, endpoint: String, status: u16) {
        *self
            .requests
            .entry(endpoint)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    pub(crate) fn request_began(&mut self, endpoint: &str) {
        let now = self.in_progress.entry(endpoint.to_string()).or_default();
        *now += 1;
        let peak = self
            .peak_in_progress
            .entry(endpoint.to_string())
            .or_default();
        *peak = (*peak).max(*now);
    }

    pub(crate) fn request_ended(&mut self, endpoint: &str) {
        if let Some(now) = self.in_progress.get_mut(endpoint) {
            *now = now.saturating_sub(1);
        }
    }

    pub(crate) fn count_bytes(&mut self, variant: &str, bytes: u64) {
        *self.bytes_served.entry(variant.to_string()).or_default() += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_is_busy_time_over_slot_time() {
        let stats = Stats {
            render_slots: 2,
            render_busy_ms: 1_200,
            first_create_ms: Some(100),
            last_finish_ms: Some(800),
            ..Stats::default()
        };
        let share = stats.utilisation().unwrap();
        assert!((share - 1_200.0 / 1_400.0).abs() < 1e-9);
        assert_eq!(Stats::default().utilisation(), None);
    }

    #[test]
    fn the_peak_in_progress_is_the_most_at_once_per_endpoint() {
        let mut stats = Stats::default();
        let (content, files) = ("GET /v1/videos/{id}/content", "POST /v1/files");
        stats.request_began(content);
        stats.request_began(content);
        stats.request_began(files);
        stats.request_ended(content);
        stats.request_began(content);
        stats.request_ended(content);
        stats.request_ended(content);
        stats.request_ended(content);
        stats.request_began(content);
        assert_eq!(stats.peak_in_progress[content], 2);
        assert_eq!(stats.peak_in_progress[files], 1);
    }
}
