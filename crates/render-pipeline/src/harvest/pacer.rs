//! How long a harvest waits between polls: backing off while nothing moves, and pacing the
//! direct lane by how long its jobs take.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ledger::Ledger;

use super::HarvestError;

/// The longest the direct lane stops sending because a server asked it to: a longer wait (or
/// a hostile one) is cut to this, and the server is asked again then.
const MAX_BACK_OFF: Duration = Duration::from_secs(15 * 60);

/// Paces the direct lane's polls by how long its jobs take: a job's time is measured from its
/// POST (by this process) to the poll that saw it finished.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    sent: HashMap<i64, Instant>,
    /// Mean job time so far, and how many jobs it averages.
    mean: Option<(Duration, u32)>,
    back_off_until: Option<Instant>,
}

impl Pacer {
    /// Notes when each of the provider's rendering jobs was first seen sent.
    pub(super) fn sent(&mut self, ledger: &Ledger, provider: &str) -> Result<(), HarvestError> {
        for job in ledger.rendering_jobs(provider)? {
            self.sent.entry(job.row).or_insert_with(Instant::now);
        }
        Ok(())
    }

    pub(super) fn finished(&mut self, rows: &[i64]) {
        for row in rows {
            let Some(sent) = self.sent.remove(row) else {
                continue;
            };
            let took = sent.elapsed();
            self.mean = Some(match self.mean {
                None => (took, 1),
                Some((mean, n)) => ((mean * n + took) / (n + 1), n + 1),
            });
        }
    }

    /// Stops sending for the server's `wait`, at most [`MAX_BACK_OFF`].
    pub(super) fn back_off(&mut self, wait: Duration) {
        self.back_off_until = Some(Instant::now() + wait.min(MAX_BACK_OFF));
    }

    pub(super) fn backing_off(&self) -> bool {
        self.back_off_until.is_some_and(|t| Instant::now() < t)
    }

    /// A twentieth of a job's time (so a freed slot waits ~5% of a job), within bounds.
    pub(super) fn interval(&self, max: Duration) -> Duration {
        const FLOOR: Duration = Duration::from_millis(20);
        match self.mean {
            Some((mean, _)) => (mean / 20).clamp(FLOOR, max.max(FLOOR)),
            None => Duration::from_millis(100).min(max),
        }
    }
}

/// Backoff between polls: quick at first, then patient, never a busy loop.
pub(super) fn poll_interval(idle_polls: u32, max: Duration) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << idle_polls.min(10))).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_wait_is_kept_and_bounded() {
        let mut pacer = Pacer::default();
        assert!(!pacer.backing_off());
        pacer.back_off(Duration::MAX);
        assert!(pacer.backing_off());
        let until = pacer.back_off_until.unwrap();
        assert!(until <= Instant::now() + MAX_BACK_OFF);
        pacer.back_off(Duration::ZERO);
        assert!(!pacer.backing_off());
    }
}
