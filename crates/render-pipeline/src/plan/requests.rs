//! The plan's shapes: the [`Plan`], its [`PlannedRequest`]s (one per take) and the
//! [`Reference`] images they share; what the takes of a shot share ([`PlannedShot`]) and what
//! shots share ([`Target`]).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::SharedStr;
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
/// A plan holds a hundred thousand of these, so a take holds only what is its own (its number,
/// key and whether it is cached) and reads the rest from its shot, which every take of the shot
/// shares: `request.prompt` is the shot's prompt, `request.model` its target's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRequest {
    pub shot: Arc<PlannedShot>,
    /// 1-based take number.
    pub take: u32,
    pub key: RequestKey,
    pub cached: bool,
}

impl PlannedRequest {
    /// At the price of its lane (Batch or standard); zero when cached.
    pub fn cost(&self) -> Usd {
        match self.cached {
            true => Usd::ZERO,
            false => self.lane_cost,
        }
    }
}

impl Deref for PlannedRequest {
    type Target = PlannedShot;

    fn deref(&self) -> &PlannedShot {
        &self.shot
    }
}

/// What every take of a shot shares: its text and reference, and its [`Target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedShot {
    pub shot_id: SharedStr,
    pub prompt: SharedStr,
    pub priority: Priority,
    /// How many takes the shot has (decides whether output names carry the take).
    pub takes: u32,
    pub reference: Option<Arc<Reference>>,
    pub tags: Arc<[String]>,
    pub target: Arc<Target>,
}

impl Deref for PlannedShot {
    type Target = Target;

    fn deref(&self) -> &Target {
        &self.target
    }
}

/// Who renders a shot, and how: provider, lane, model, size and length, with their prices. Many
/// shots of a list share one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The provider's identity (its name, or the default provider's base URL).
    pub provider: Arc<str>,
    /// What the shot list calls the provider.
    pub provider_name: Arc<str>,
    pub lane: Lane,
    pub model: Model,
    /// The `model` string sent (the catalog's `served_as`, else the model's name).
    pub served_as: Arc<str>,
    pub size: Size,
    pub seconds: Seconds,
    /// At the price of its lane (Batch or standard), ignoring the cache.
    pub lane_cost: Usd,
    /// At the standard (non-Batch) rate, ignoring the cache: what the same work costs elsewhere.
    pub standard_cost: Usd,
    /// At the Batch rate, where the provider offers a Batch lane (ignoring the cache).
    pub batch_cost: Option<Usd>,
    /// The shot list the shot came from.
    pub source: Arc<Path>,
}

/// A night's work, validated and priced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
