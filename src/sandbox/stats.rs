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
}

impl Stats {
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

    pub(crate) fn count_bytes(&mut self, variant: &str, bytes: u64) {
        *self.bytes_served.entry(variant.to_string()).or_default() += bytes;
    }
}
