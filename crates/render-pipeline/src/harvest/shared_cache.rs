//! Harvest and the studio's shared cache: collecting what other machines render, taking over
//! what they abandon, publishing this machine's outputs, and renewing or releasing its claims.

use std::collections::HashSet;
use std::time::Instant;

use crate::events::Event;
use crate::ledger::RequestStatus;
use render_wire::key::RequestKey;

use super::{HarvestError, Harvester, warn};

/// How often per lease a running night renews its claims: a missed renewal or two (a slow
/// poll, a store hiccup) still leaves the claim inside its lease.
const RENEWALS_PER_LEASE: u32 = 4;

impl Harvester<'_> {
    /// Collects from the shared cache what other machines render for these runs, and takes
    /// over a request whose machine has gone silent past the lease.
    pub(super) async fn awaited(
        &mut self,
        keys: &HashSet<RequestKey>,
    ) -> Result<bool, HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(false);
        };
        let mut progressed = false;
        for request in self.ledger.elsewhere()? {
            if !keys.contains(&request.key) {
                continue;
            }
            if let Some(entry) = shared.entry(&request.key).await? {
                let output = match shared.fetch(&entry, self.store).await {
                    Ok(output) => output,
                    // Damaged: dropped from the index; the claim below decides who renders it.
                    Err(err @ crate::shared::SharedError::Corrupt { .. }) => {
                        warn(
                            self.events,
                            format!("{err}; shot {} renders again", request.shot_id),
                        );
                        shared.forget(&request.key).await?;
                        self.take_over(shared, &request).await?;
                        progressed = true;
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                };
                self.ledger.record_output(&output)?;
                self.ledger.set_published(&output.key)?;
                self.events.emit(Event::VideoHarvested {
                    shot_id: request.shot_id.clone(),
                    take: request.take,
                    key: request.key.hex(),
                    bytes: output.video_bytes,
                });
                progressed = true;
                continue;
            }
            if shared.claim(&request.key).await? == crate::shared::Claim::Ours {
                // Its machine publishes, then gives its claim up: between our look at the index
                // and our claim it may have done both. Then the claim is not ours to keep, and
                // the next round collects the video.
                if shared.entry(&request.key).await?.is_some() {
                    shared.release(&request.key).await?;
                    progressed = true;
                    continue;
                }
                warn(
                    self.events,
                    format!(
                        "shot {}: the machine rendering it has been silent past the lease; taking it over",
                        request.shot_id
                    ),
                );
                self.ledger.set_pending(&request.key)?;
                progressed = true;
            }
        }
        Ok(progressed)
    }

    /// Claims a request whose shared copy was damaged, to render it here.
    async fn take_over(
        &mut self,
        shared: &crate::shared::SharedCache,
        request: &crate::ledger::RequestRow,
    ) -> Result<(), HarvestError> {
        if shared.claim(&request.key).await? == crate::shared::Claim::Ours {
            self.ledger.set_pending(&request.key)?;
        }
        Ok(())
    }

    /// Renews this machine's claims on the runs' requests still in its hands (sent, rendering,
    /// or waiting to be sent), a few times per lease, so a long night is never taken over
    /// while it is alive. Best effort, like publishing: an unreachable store is said once.
    pub(super) async fn renew_claims(
        &mut self,
        keys: &HashSet<RequestKey>,
    ) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        let every = shared.lease() / RENEWALS_PER_LEASE;
        if self.renewed_at.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        self.renewed_at = Some(Instant::now());
        for key in keys {
            let in_hand = self.ledger.request(key)?.is_some_and(|r| {
                matches!(
                    r.status,
                    RequestStatus::Pending
                        | RequestStatus::Queued
                        | RequestStatus::Submitted
                        | RequestStatus::Completed
                )
            });
            if !in_hand {
                continue;
            }
            if let Err(err) = shared.renew(key).await {
                if self.warned.insert(format!("renew:{}", shared.url())) {
                    warn(
                        self.events,
                        format!("{err}; this machine's claims were not renewed this time"),
                    );
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Gives up the claims of requests that failed or were lost here, once each, so another
    /// machine of the studio need not wait out the lease for them. Best effort.
    pub(super) async fn release_claims(
        &mut self,
        keys: &HashSet<RequestKey>,
    ) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        for key in keys {
            if self.released.contains(key) {
                continue;
            }
            let settled_badly = self
                .ledger
                .request(key)?
                .is_some_and(|r| matches!(r.status, RequestStatus::Failed | RequestStatus::Lost));
            if !settled_badly {
                continue;
            }
            if let Err(err) = shared.release(key).await {
                if self.warned.insert(format!("release:{}", shared.url())) {
                    warn(
                        self.events,
                        format!("{err}; claims of failed requests were not released"),
                    );
                }
                return Ok(());
            }
            self.released.insert(*key);
        }
        Ok(())
    }

    /// Publishes the runs' outputs not yet in the shared cache: objects first, index last.
    /// Best effort: an unreachable store keeps them local (a later run publishes them).
    pub(super) async fn publish(&mut self, keys: &HashSet<RequestKey>) -> Result<(), HarvestError> {
        let Some(shared) = self.options.shared.as_ref() else {
            return Ok(());
        };
        let waiting = self.ledger.unpublished(keys)?;
        for (done, output) in waiting.iter().enumerate() {
            if let Err(err) = shared.publish(output, self.store).await {
                if self.warned.insert(format!("publish:{}", shared.url())) {
                    warn(
                        self.events,
                        format!(
                            "{err}; the night goes on with the local cache ({} output(s) not shared yet; a later run shares them)",
                            waiting.len() - done
                        ),
                    );
                }
                return Ok(());
            }
            self.ledger.set_published(&output.key)?;
        }
        Ok(())
    }
}
