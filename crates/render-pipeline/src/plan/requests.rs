//! The plan's shapes: the [`Plan`], its [`PlannedRequest`]s (one per take) and the
//! [`Reference`] images they share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::provider::Lane;
use crate::shotlist::Priority;
use render_wire::catalog::{Model, Seconds, Size};
use render_wire::key::{RequestKey, Sha256Hex};
use render_wire::money::Usd;

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
///
/// A plan holds a hundred thousand of these: what every take of a shot shares (its text, its
/// reference) and what every request of a provider shares (its names) is shared, not copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedRequest {
    pub shot_id: Arc<str>,
    /// The provider's identity (its name, or the default provider's base URL).
    pub provider: Arc<str>,
    /// What the shot list calls the provider.
    pub provider_name: Arc<str>,
    pub lane: Lane,
    pub priority: Priority,
    /// 1-based take number.
    pub take: u32,
    /// How many takes the shot has (decides whether output names carry the take).
    pub takes: u32,
    pub model: Model,
    /// The `model` string sent (the catalog's `served_as`, else the model's name).
    pub served_as: Arc<str>,
    pub size: Size,
    pub seconds: Seconds,
    pub prompt: Arc<str>,
    pub reference: Option<Arc<Reference>>,
    pub tags: Arc<[String]>,
    pub key: RequestKey,
    /// At the price of its lane (Batch or standard); zero when cached.
    pub cost: Usd,
    /// At the standard (non-Batch) rate, ignoring the cache: what the same work costs elsewhere.
    pub standard_cost: Usd,
    /// At the Batch rate, where the provider offers a Batch lane (ignoring the cache).
    pub batch_cost: Option<Usd>,
    pub cached: bool,
    /// The shot list the shot came from.
    pub source: Arc<Path>,
}

/// A night's work, validated and priced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The identities of the providers the plan's requests go to, in first-use order.
    pub providers: Vec<String>,
    /// The `project` of the first shot list that names one.
    pub project: Option<String>,
    pub sources: Vec<PathBuf>,
    pub requests: Vec<PlannedRequest>,
    /// Only some of the lists' shots were chosen (`--only`, `--tag`): the night does not speak
    /// for the shots left out, so their earlier outputs stay where they are.
    pub partial: bool,
}
