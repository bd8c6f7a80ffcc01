//! What a plan costs: its totals, the saving over standard rates, the budget check and the
//! subtotals per model and size.

use std::collections::BTreeMap;

use serde::Serialize;

use render_wire::catalog::{Model, Size};
use render_wire::money::Usd;

use super::Plan;

impl Plan {
    /// Batch price of what is not cached.
    pub fn total(&self) -> Usd {
        self.requests.iter().map(|r| r.cost()).sum()
    }

    pub fn standard_total(&self) -> Usd {
        self.requests.iter().map(|r| r.standard_cost).sum()
    }

    pub fn cached_count(&self) -> usize {
        self.requests.iter().filter(|r| r.cached).count()
    }

    /// The providers as one line (`wan-farm, default`), for runs and reports.
    pub fn provider_summary(&self) -> String {
        self.providers.join(", ")
    }
}

impl Plan {
    /// What the plan spends beyond `budget`, if it exceeds it.
    pub fn check_budget(&self, budget: Usd) -> Result<(), OverBudget> {
        let total = self.total();
        if total > budget {
            return Err(OverBudget { total, budget });
        }
        Ok(())
    }

    /// What Batch and the cache save over running the same work at standard rates.
    pub fn saving(&self) -> Usd {
        self.standard_total().saturating_sub(self.total())
    }

    /// Totals per model and size, in catalog order.
    pub fn subtotals(&self) -> Vec<Subtotal> {
        let mut groups: BTreeMap<(&Model, Size), Subtotal> = BTreeMap::new();
        for r in &self.requests {
            let group = groups
                .entry((&r.model, r.size))
                .or_insert_with(|| Subtotal {
                    model: r.model.clone(),
                    size: r.size,
                    requests: 0,
                    cached: 0,
                    seconds: 0,
                    cost: Usd::ZERO,
                    standard_cost: Usd::ZERO,
                });
            group.requests += 1;
            group.cached += usize::from(r.cached);
            group.seconds += u64::from(r.seconds.0);
            group.cost += r.cost();
            group.standard_cost += r.standard_cost;
        }
        groups.into_values().collect()
    }
}

/// The requests of one model at one size, summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subtotal {
    pub model: Model,
    pub size: Size,
    pub requests: usize,
    pub cached: usize,
    /// Seconds of video asked for (cached or not).
    pub seconds: u64,
    pub cost: Usd,
    pub standard_cost: Usd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the plan costs {total}, over the budget of {budget}; nothing was spent")]
pub struct OverBudget {
    pub total: Usd,
    pub budget: Usd,
}
