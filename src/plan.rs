//! Shot lists → a priced, validated Plan: one request per take, each with its cache key and cost.
//!
//! The shapes below are the contract the later stages (batch, submit, harvest) consume.

use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::{Model, Seconds, Size};
use crate::key::{RequestKey, Sha256Hex};
use crate::money::Usd;

/// A first-frame image, identified by its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// Where it was read from (resolved against the shot list's folder).
    pub path: PathBuf,
    pub sha256: Sha256Hex,
    /// `image/jpeg`, `image/png` or `image/webp`.
    pub mime: &'static str,
    pub bytes: u64,
}

/// One take of one shot: exactly one `POST /v1/videos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedRequest {
    pub shot_id: String,
    /// 1-based take number.
    pub take: u32,
    /// How many takes the shot has (decides whether output names carry the take).
    pub takes: u32,
    pub model: Model,
    pub size: Size,
    pub seconds: Seconds,
    pub prompt: String,
    pub reference: Option<Reference>,
    pub tags: Vec<String>,
    pub key: RequestKey,
    /// At the Batch rate; zero when cached.
    pub cost: Usd,
    /// At the standard (non-Batch) rate, ignoring the cache: what the same work costs elsewhere.
    pub standard_cost: Usd,
    pub cached: bool,
    /// The shot list the shot came from.
    pub source: PathBuf,
}

/// A night's work, validated and priced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The `project` of the first shot list that names one.
    pub project: Option<String>,
    pub sources: Vec<PathBuf>,
    pub requests: Vec<PlannedRequest>,
}

impl Plan {
    /// Batch price of what is not cached.
    pub fn total(&self) -> Usd {
        self.requests.iter().map(|r| r.cost).sum()
    }

    pub fn standard_total(&self) -> Usd {
        self.requests.iter().map(|r| r.standard_cost).sum()
    }

    pub fn cached_count(&self) -> usize {
        self.requests.iter().filter(|r| r.cached).count()
    }
}
