//! How requests reach a provider: the Batch lane (one JSONL batch per night, in `submit` and
//! `harvest`) and the direct lane ([`direct`]: one job per request), over a [`Route`] — a
//! provider with the client that speaks its dialect.

pub mod assets;
pub mod batch;
pub mod direct;

use crate::api::client::ApiClient;
use crate::api::retry::is_retryable_status;
use crate::events::{Event, EventSink};
use crate::ledger::{Ledger, LedgerError, RequestResult, RequestRow};
use crate::provider::Provider;

/// How far before an intent to look for the batch or job it may have made: clocks differ
/// between machines (and the sandbox runs a fast one), and a day of slack costs a few list
/// pages at most.
pub const CLOCK_SLACK_SECS: i64 = 24 * 3600;

/// A provider and the client that talks to it.
#[derive(Clone, Debug)]
pub struct Route {
    pub provider: Provider,
    pub client: ApiClient,
}

/// The routes of this invocation, found by the identity the ledger records.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes { routes }
    }

    /// The route of a provider identity, or of a pre-provider ledger's bare host when exactly
    /// one route serves that host.
    pub fn get(&self, recorded: &str) -> Option<&Route> {
        if let Some(route) = self.routes.iter().find(|r| r.provider.id == recorded) {
            return Some(route);
        }
        if recorded.is_empty() || recorded.contains("://") {
            return None;
        }
        let mut on_host = self.routes.iter().filter(|r| r.provider.host() == recorded);
        match (on_host.next(), on_host.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Records a request lost (it will not come: expired, forgotten, cancelled) and says so: the
/// one way both lanes give a request up.
pub fn record_lost(
    ledger: &mut Ledger,
    events: &dyn EventSink,
    request: &RequestRow,
    reason: String,
) -> Result<(), LedgerError> {
    events.emit(Event::RequestLost {
        shot_id: request.shot_id.clone(),
        take: request.take,
        key: request.key.hex(),
        reason: reason.clone(),
    });
    ledger.record_result(&request.key, &RequestResult::Lost { reason })
}

/// Sorts a provider's failure of one request: never run (its batch expired or was cancelled
/// first) is lost; a policy rejection or an invalid request fails again if resubmitted
/// unchanged; the rest may succeed. The one classifier of both lanes.
pub fn classify_failure(
    code: Option<String>,
    message: String,
    status: Option<u16>,
) -> RequestResult {
    let code = code.filter(|c| !c.is_empty());
    let code_text = code.as_deref().unwrap_or_default();
    if matches!(code_text, "batch_expired" | "batch_cancelled") {
        return RequestResult::Lost { reason: message };
    }
    let lower = message.to_lowercase();
    let policy = is_policy_code(code_text) || lower.contains("moderation");
    // Our own upload (a reference image) gone from the provider is its loss, not a fault of
    // the request: uploaded again, the same request succeeds.
    let lost_upload =
        lower.contains("file") && (lower.contains("not found") || lower.contains("no such"));
    let invalid = status.is_some_and(|s| (400..500).contains(&s) && !is_retryable_status(s));
    RequestResult::Failed {
        code,
        message,
        retryable: !policy && (lost_upload || !invalid),
    }
}

fn is_policy_code(code: &str) -> bool {
    code.contains("moderation") || code.contains("policy") || code == "content_filter"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable(code: Option<&str>, message: &str, status: Option<u16>) -> Option<bool> {
        match classify_failure(code.map(str::to_string), message.into(), status) {
            RequestResult::Failed { retryable, .. } => Some(retryable),
            _ => None,
        }
    }

    #[test]
    fn failures_are_sorted_by_what_resending_would_do() {
        // Policy refusals and invalid requests fail again; servers' troubles may not.
        assert_eq!(
            retryable(Some("moderation_blocked"), "refused", Some(400)),
            Some(false)
        );
        assert_eq!(retryable(None, "invalid size", Some(400)), Some(false));
        assert_eq!(
            retryable(Some("server_error"), "boom", Some(500)),
            Some(true)
        );
        assert_eq!(retryable(Some(""), "OOM", None), Some(true));
        // Our own upload gone from the provider: uploaded again, the request succeeds.
        assert_eq!(
            retryable(None, "No such File: 'file-1'", Some(404)),
            Some(true)
        );
        assert_eq!(retryable(None, "file not found", Some(400)), Some(true));
        // Never ran: lost.
        assert!(matches!(
            classify_failure(Some("batch_expired".into()), "late".into(), None),
            RequestResult::Lost { .. }
        ));
    }
}
