//! The studio's shared cache, as `submit` and `resubmit` meet it: what another machine has
//! published is fetched instead of rendered, and each request is claimed before it is sent, so
//! two machines never pay for the same render. When the store cannot be reached, the night goes
//! on with the local cache alone.

use std::collections::HashSet;

use crate::cache::CacheStorage;
use crate::events::{Event, EventSink};
use crate::ledger::{Ledger, RequestRow};
use crate::outputs::cached_output;
use crate::plan::Plan;
use crate::shared::{Claim, SharedCache, SharedError};
use render_wire::key::RequestKey;

use super::{SubmitError, SubmitReport};

/// Fetches into the local store every request of the plan that the shared cache holds and the
/// local one does not. Returns the keys whose shared objects were damaged (to render again).
pub(super) async fn pull_shared(
    plan: &Plan,
    ledger: &mut Ledger,
    store: &dyn CacheStorage,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<HashSet<RequestKey>, SubmitError> {
    let mut corrupt = HashSet::new();
    let Some(listed) = shared_keys(shared, events).await else {
        return Ok(corrupt);
    };
    let puller = Puller {
        store,
        shared,
        events,
    };
    for request in &plan.requests {
        if !listed.contains(&request.key) || cached_output(ledger, store, &request.key)?.is_some() {
            continue;
        }
        match puller
            .pull(request.key, &request.shot_id, ledger, report)
            .await?
        {
            Pulled::Fetched | Pulled::Absent => {}
            Pulled::Corrupt => {
                corrupt.insert(request.key);
            }
            Pulled::Unreachable => break,
        }
    }
    Ok(corrupt)
}

/// The keys the shared index holds; `None` (said once) when the store cannot be reached.
async fn shared_keys(shared: &SharedCache, events: &dyn EventSink) -> Option<HashSet<RequestKey>> {
    match shared.keys().await {
        Ok(keys) => Some(keys),
        Err(err) => {
            unreachable_shared(events, &err);
            None
        }
    }
}

/// Brings requests from the shared cache into the local store.
struct Puller<'a> {
    store: &'a dyn CacheStorage,
    shared: &'a SharedCache,
    events: &'a dyn EventSink,
}

/// What became of one request asked of the shared cache.
enum Pulled {
    /// In the local store now, and recorded.
    Fetched,
    /// No machine published it.
    Absent,
    /// Its shared objects were damaged: the entry is dropped and it renders again.
    Corrupt,
    /// The store could not be reached (said): ask it nothing more this time.
    Unreachable,
}

impl Puller<'_> {
    /// Fetches `key` (the take of shot `shot_id`) and records it, where a machine published it.
    async fn pull(
        &self,
        key: RequestKey,
        shot_id: &str,
        ledger: &mut Ledger,
        report: &mut SubmitReport,
    ) -> Result<Pulled, SubmitError> {
        let Puller {
            store,
            shared,
            events,
        } = *self;
        let fetched = match shared.entry(&key).await {
            Ok(Some(entry)) => shared.fetch(&entry, store).await,
            Ok(None) => return Ok(Pulled::Absent),
            Err(err) => Err(err),
        };
        match fetched {
            Ok(output) => {
                ledger.record_output(&output)?;
                ledger.set_published(&output.key)?;
                report.fetched_shared += 1;
                Ok(Pulled::Fetched)
            }
            Err(err @ SharedError::Corrupt { .. }) => {
                events.emit(Event::Warning {
                    message: format!("{err}; shot {shot_id} renders again"),
                });
                shared.forget(&key).await.ok();
                Ok(Pulled::Corrupt)
            }
            Err(err) => {
                unreachable_shared(events, &err);
                Ok(Pulled::Unreachable)
            }
        }
    }
}

/// The rows a retry still has to send: those another machine has published since are
/// fetched instead (`report.fetched_shared`).
pub(super) async fn pull_shared_rows(
    rows: Vec<RequestRow>,
    ledger: &mut Ledger,
    store: &dyn CacheStorage,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<Vec<RequestRow>, SubmitError> {
    let Some(listed) = shared_keys(shared, events).await else {
        return Ok(rows);
    };
    let puller = Puller {
        store,
        shared,
        events,
    };
    let mut left = Vec::with_capacity(rows.len());
    let mut reachable = true;
    for row in rows {
        if !reachable || !listed.contains(&row.key) {
            left.push(row);
            continue;
        }
        match puller.pull(row.key, &row.shot_id, ledger, report).await? {
            Pulled::Fetched => {}
            Pulled::Absent | Pulled::Corrupt => left.push(row),
            Pulled::Unreachable => {
                reachable = false;
                left.push(row);
            }
        }
    }
    Ok(left)
}

/// Claims each row's key in the shared cache; rows another machine holds are left to it (and
/// waited for by harvest), the rest are returned to be sent.
pub(super) async fn claim_rows(
    rows: Vec<RequestRow>,
    ledger: &mut Ledger,
    shared: &SharedCache,
    events: &dyn EventSink,
    report: &mut SubmitReport,
) -> Result<Vec<RequestRow>, SubmitError> {
    let mut mine = Vec::with_capacity(rows.len());
    let mut owners = std::collections::BTreeSet::new();
    let mut reachable = true;
    for row in rows {
        if !reachable {
            mine.push(row);
            continue;
        }
        match shared.claim(&row.key).await {
            Ok(Claim::Ours) => mine.push(row),
            Ok(Claim::Theirs { owner, .. }) => {
                ledger.set_elsewhere(&row.key)?;
                report.skipped_elsewhere += 1;
                owners.insert(owner);
            }
            // Unreachable: the night goes on alone, as it would without a shared cache.
            Err(err) => {
                unreachable_shared(events, &err);
                reachable = false;
                mine.push(row);
            }
        }
    }
    if !owners.is_empty() {
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        events.emit(Event::Warning {
            message: format!(
                "{} request(s) are being rendered by another machine ({}): waiting for them instead of paying twice",
                report.skipped_elsewhere,
                owners.join(", ")
            ),
        });
    }
    Ok(mine)
}

fn unreachable_shared(events: &dyn EventSink, err: &SharedError) {
    events.emit(Event::Warning {
        message: format!("{err}; the night goes on with the local cache"),
    });
}
