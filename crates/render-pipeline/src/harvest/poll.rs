//! One poll of a harvest: every open batch, what other machines render, and each provider's
//! direct jobs, refilling the direct lane's free slots and handing what finished to the
//! download stage.

use std::collections::HashSet;

use crate::events::Event;
use crate::lanes::Route;
use crate::lanes::direct;
use crate::ledger::{BatchRow, Ledger, RunRow};
use render_wire::key::RequestKey;

use super::{HarvestError, Harvester, download, warn};

impl<'a> Harvester<'a> {
    /// Visits every open batch once, nearest deadline first, then every provider's direct
    /// jobs. Ledger errors end the harvest; anything else is reported and kept so the others
    /// still get their turn.
    pub(super) async fn poll(
        &mut self,
        runs: &[RunRow],
    ) -> Result<(bool, Option<HarvestError>), HarvestError> {
        let mut progressed = false;
        let mut first_error = None;
        let batches = batches_holding(runs, self.ledger)?;
        self.events.emit(Event::PollStarted {
            batches: batches.len(),
        });
        for batch in batches {
            let Some(route) = self.route_of(&batch.provider) else {
                continue;
            };
            match self.batch(&batch, route).await {
                Ok(changed) => progressed |= changed,
                Err(err @ HarvestError::Ledger(_)) => return Err(err),
                Err(err) => {
                    warn(
                        self.events,
                        format!("batch {}: {err}", batch.batch_id.as_deref().unwrap_or("?")),
                    );
                    first_error.get_or_insert(err);
                }
            }
        }
        let keys = run_keys(runs, self.ledger)?;
        match self.awaited(&keys).await {
            Ok(changed) => progressed |= changed,
            Err(err @ HarvestError::Ledger(_)) => return Err(err),
            Err(err) => {
                warn(self.events, format!("{err}"));
                first_error.get_or_insert(err);
            }
        }
        for route in self.routes.iter() {
            match self.direct(route, &keys).await {
                Ok(changed) => progressed |= changed,
                Err(err @ HarvestError::Ledger(_)) => return Err(err),
                Err(err) => {
                    warn(self.events, format!("{}: {err}", route.provider.name));
                    first_error.get_or_insert(err);
                }
            }
        }
        // At once, not at the end: another machine may be waiting for these.
        self.publish(&keys).await?;
        self.renew_claims(&keys).await?;
        self.release_claims(&keys).await?;
        Ok((progressed, first_error))
    }

    /// One round of a provider's direct lane: settle unconfirmed sends, poll what renders,
    /// download what finished, and fill the freed slots with the runs' waiting requests.
    async fn direct(
        &mut self,
        route: &Route,
        keys: &HashSet<RequestKey>,
    ) -> Result<bool, HarvestError> {
        let id = &route.provider.id;
        let busy = !self.ledger.rendering_jobs(id)?.is_empty()
            || !self.ledger.unconfirmed_jobs(id)?.is_empty()
            || !self.ledger.completed_direct(id)?.is_empty();
        let waiting = direct::waiting(route, self.ledger, keys)?;
        if !busy && waiting.is_empty() {
            return Ok(false);
        }
        let mut progressed = direct::reconcile(route, self.ledger, self.events).await?;
        let polled = direct::poll(route, self.ledger, self.events, self.options.missing).await?;
        self.pacer.finished(&polled.finished);
        progressed |= polled.progressed;
        // Refill first: the farm renders while the videos download.
        progressed |= self.refill(route, keys).await?;
        let completed = self.ledger.completed_direct(id)?;
        if !completed.is_empty() {
            self.download(completed, route).await?;
            progressed = true;
        }
        Ok(progressed)
    }

    /// The download stage, for either lane's completed requests.
    pub(super) async fn download(
        &mut self,
        requests: Vec<crate::ledger::RequestRow>,
        route: &Route,
    ) -> Result<(), HarvestError> {
        let options = self.options;
        download::download(
            requests,
            route,
            self.ledger,
            self.store,
            options,
            self.events,
            &mut self.report,
        )
        .await
    }

    /// Sends the waiting requests of `keys` into the provider's free slots.
    async fn refill(
        &mut self,
        route: &Route,
        keys: &HashSet<RequestKey>,
    ) -> Result<bool, HarvestError> {
        let waiting = direct::waiting(route, self.ledger, keys)?;
        if waiting.is_empty() || self.pacer.backing_off() {
            return Ok(false);
        }
        let run_id = waiting
            .first()
            .and_then(|r| self.ledger.newest_run_of(&r.key).ok().flatten());
        let sent =
            direct::send(route, self.ledger, self.events, &waiting, run_id.as_deref()).await?;
        self.pacer.sent(self.ledger, &route.provider.id)?;
        if let Some(wait) = sent.back_off {
            self.pacer.back_off(wait);
        }
        Ok(sent.progressed)
    }

    /// The route of a provider the ledger names, warning once when it is not configured.
    fn route_of(&mut self, provider: &str) -> Option<&'a Route> {
        let route = self.routes.get(provider);
        if route.is_none() && self.warned.insert(provider.to_string()) {
            warn(
                self.events,
                format!(
                    "work sent to {provider} is left alone: that provider is not configured here"
                ),
            );
        }
        route
    }

    /// Open batches, direct requests not yet finished, and requests other machines render, of
    /// the runs.
    pub(super) fn open_work(&self, runs: &[RunRow]) -> Result<(usize, usize, usize), HarvestError> {
        let batches = batches_holding(runs, self.ledger)?
            .into_iter()
            .filter(|b| self.routes.get(&b.provider).is_some())
            .count();
        let keys = run_keys(runs, self.ledger)?;
        let awaited = self
            .ledger
            .elsewhere()?
            .iter()
            .filter(|r| keys.contains(&r.key))
            .count();
        let mut jobs = 0;
        for route in self.routes.iter() {
            let id = &route.provider.id;
            jobs += self.ledger.rendering_jobs(id)?.len()
                + self.ledger.unconfirmed_jobs(id)?.len()
                + self.ledger.completed_direct(id)?.len()
                + direct::waiting(route, self.ledger, &keys)?.len();
        }
        Ok((batches, jobs, awaited))
    }
}

/// The keys of every request of `runs`.
fn run_keys(runs: &[RunRow], ledger: &Ledger) -> Result<HashSet<RequestKey>, HarvestError> {
    let mut keys = HashSet::new();
    for run in runs {
        keys.extend(ledger.run_items(&run.id)?.into_iter().map(|item| item.key));
    }
    Ok(keys)
}

/// The unharvested batches holding requests of `runs`: their own, and batches of other runs
/// that carry one of their requests (a shot shared with an earlier list is submitted once, by
/// the run that came first, and must be waited for, not reported pending).
fn batches_holding(runs: &[RunRow], ledger: &Ledger) -> Result<Vec<BatchRow>, HarvestError> {
    let run_set: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut keys: Option<HashSet<RequestKey>> = None;
    let mut holding = Vec::new();
    for batch in ledger.unharvested_batches()? {
        if run_set.contains(batch.run_id.as_str()) {
            holding.push(batch);
            continue;
        }
        let keys = match &mut keys {
            Some(keys) => keys,
            None => keys.insert(run_keys(runs, ledger)?),
        };
        if ledger
            .batch_requests(batch.row)?
            .iter()
            .any(|request| keys.contains(&request.key))
        {
            holding.push(batch);
        }
    }
    Ok(holding)
}
