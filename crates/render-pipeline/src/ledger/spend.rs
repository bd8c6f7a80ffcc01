//! The bill: what each run was planned to cost and what the providers rendered for it.
//!
//! A request row is shared by every run that needs its key and keeps only its latest attempt,
//! so a bill read from `requests` alone would move a render from one night to the next when a
//! shot is rendered again. Instead every render is written down once, when it happens: a
//! trigger adds a row to `renders` whenever a request is given a video id (the one moment the
//! provider says "rendered", on either lane), charging it to the run that sent it (the batch's
//! run, else the job's, else the newest run holding the key) at the price of the lane it went
//! through. Refused and failed requests never get a video id, nor do requests an expired batch
//! never ran; cached and reused outputs are laid out without one. So the bill is exactly what
//! was rendered, and a rerun of an unchanged night adds nothing.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::{Ledger, RequestStatus, Result};
use render_wire::key::RequestKey;
use render_wire::money::Usd;

/// Appended to the ledger's migrations: the standard price of each key (written by the CLI from
/// the plan before sending, so the saving of a Batch render is known), the render log, the
/// trigger that keeps it, and the renders of ledgers from before it (their latest attempts).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE standard_prices (
    key             TEXT PRIMARY KEY,
    standard_micros INTEGER NOT NULL
);
CREATE TABLE renders (
    row             INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL,
    video_id        TEXT NOT NULL,
    run_id          TEXT,
    provider        TEXT,
    lane            TEXT NOT NULL,
    cost_micros     INTEGER NOT NULL,
    standard_micros INTEGER,
    rendered_at     INTEGER NOT NULL,
    UNIQUE (key, video_id)
);
CREATE INDEX renders_run ON renders(run_id);
CREATE TRIGGER requests_rendered AFTER UPDATE OF video_id ON requests
WHEN NEW.video_id IS NOT NULL AND NEW.video_id IS NOT OLD.video_id
BEGIN
    INSERT OR IGNORE INTO renders (key, video_id, run_id, provider, lane, cost_micros,
        standard_micros, rendered_at)
    VALUES (NEW.key, NEW.video_id,
        COALESCE((SELECT run_id FROM batches WHERE row = NEW.batch_row),
                 (SELECT run_id FROM jobs WHERE row = NEW.job_row),
                 (SELECT run_id FROM run_items WHERE key = NEW.key ORDER BY rowid DESC LIMIT 1)),
        NEW.provider, CASE WHEN NEW.batch_row IS NOT NULL THEN 'batch' ELSE 'direct' END,
        NEW.cost_micros,
        (SELECT standard_micros FROM standard_prices WHERE key = NEW.key),
        NEW.updated_at);
END;
INSERT OR IGNORE INTO renders (key, video_id, run_id, provider, lane, cost_micros, rendered_at)
SELECT key, video_id,
    COALESCE((SELECT run_id FROM batches WHERE row = requests.batch_row),
             (SELECT run_id FROM jobs WHERE row = requests.job_row),
             (SELECT run_id FROM run_items WHERE key = requests.key ORDER BY rowid DESC LIMIT 1)),
    provider, CASE WHEN batch_row IS NOT NULL THEN 'batch' ELSE 'direct' END,
    cost_micros, updated_at
FROM requests
WHERE video_id IS NOT NULL AND status IN ('completed', 'harvested', 'lost');
"#;

/// One run's line of the bill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpend {
    pub run_id: String,
    pub project: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
    /// Requests in the run (cached ones included).
    pub requests: u64,
    /// Renders charged to the run.
    pub rendered: u64,
    /// What `plan` priced the run at (cached requests at $0).
    pub planned: Usd,
    /// What the providers rendered for the run, at the price of the lane each went through.
    pub billed: Usd,
    /// The same renders at standard rates (a render without a known standard price counts at
    /// its own price: no saving is claimed for it).
    pub standard: Usd,
}

impl RunSpend {
    /// What Batch saved against standard rates on what was rendered.
    pub fn saved(&self) -> Usd {
        self.standard.saturating_sub(self.billed)
    }
}

/// What a night is about to send, before it sends it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Distinct requests to be sent.
    pub requests: usize,
    /// Requests laid out from the cache, at $0.
    pub cached: usize,
    pub cost: Usd,
}

/// A planned request, as the estimate needs it.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    pub key: RequestKey,
    pub cost: Usd,
    pub standard: Usd,
    pub cached: bool,
}

const RUN_SPEND: &str = "SELECT runs.id, runs.project, runs.created_at,
    (SELECT COUNT(*) FROM run_items WHERE run_id = runs.id),
    (SELECT COALESCE(SUM(cost_micros), 0) FROM run_items WHERE run_id = runs.id),
    (SELECT COUNT(*) FROM renders WHERE run_id = runs.id),
    (SELECT COALESCE(SUM(cost_micros), 0) FROM renders WHERE run_id = runs.id),
    (SELECT COALESCE(SUM(COALESCE(standard_micros, cost_micros)), 0) FROM renders
        WHERE run_id = runs.id)
    FROM runs";

fn run_spend_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSpend> {
    Ok(RunSpend {
        run_id: r.get(0)?,
        project: r.get(1)?,
        started_at: r.get(2)?,
        requests: r.get(3)?,
        planned: Usd::from_micros(r.get(4)?),
        rendered: r.get(5)?,
        billed: Usd::from_micros(r.get(6)?),
        standard: Usd::from_micros(r.get(7)?),
    })
}

impl Ledger {
    /// The bill of every run started at or after `since` (seconds since the epoch), of
    /// `project` when given, oldest first.
    pub fn spend(&self, since: Option<i64>, project: Option<&str>) -> Result<Vec<RunSpend>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{RUN_SPEND} WHERE runs.created_at >= ?1 AND (?2 IS NULL OR runs.project = ?2)
             ORDER BY runs.created_at, runs.rowid"
        ))?;
        let rows = stmt.query_map(
            params![since.unwrap_or(i64::MIN), project],
            run_spend_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One run's line of the bill.
    pub fn run_spend(&self, run_id: &str) -> Result<Option<RunSpend>> {
        Ok(self
            .conn
            .prepare_cached(&format!("{RUN_SPEND} WHERE runs.id = ?1"))?
            .query_row([run_id], run_spend_from_row)
            .optional()?)
    }

    /// What a run has committed at its providers: what they rendered for it, plus what it sent
    /// that is still rendering (at the price of its lane).
    pub fn committed(&self, run_id: &str) -> Result<Usd> {
        let billed = self.run_spend(run_id)?.map_or(Usd::ZERO, |s| s.billed);
        let rendering: i64 = self.conn.query_row(
            &format!(
                "SELECT COALESCE(SUM(cost_micros), 0) FROM requests
                 WHERE status IN {}
                   AND (batch_row IN (SELECT row FROM batches WHERE run_id = ?1)
                        OR (batch_row IS NULL
                            AND job_row IN (SELECT row FROM jobs WHERE run_id = ?1)))",
                RequestStatus::sql_set(RequestStatus::SENT),
            ),
            [run_id],
            |r| r.get(0),
        )?;
        Ok(billed + Usd::from_micros(rendering))
    }

    /// A key's standard price as the latest plan had it (`None` for keys planned before the
    /// bill was kept).
    pub fn standard_price(&self, key: &RequestKey) -> Result<Option<Usd>> {
        Ok(self
            .conn
            .prepare_cached("SELECT standard_micros FROM standard_prices WHERE key = ?1")?
            .query_row([key.hex()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(Usd::from_micros))
    }

    /// Remembers each key's standard price, so that a render through the Batch lane knows
    /// what it saved. Call before sending; the latest plan's price wins.
    pub fn record_standard_prices(&mut self, prices: &[(RequestKey, Usd)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO standard_prices (key, standard_micros) VALUES (?1, ?2)",
            )?;
            for (key, standard) in prices {
                stmt.execute(params![key.hex(), standard.micros()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// What sending `planned` will cost: the requests that are not cached, not already in
    /// flight or done, and not refused before (the same choice `submit` makes), each key once.
    pub fn estimate(&self, planned: &[Planned]) -> Result<Estimate> {
        let mut estimate = Estimate::default();
        let mut seen = HashSet::new();
        for request in planned {
            if request.cached {
                estimate.cached += 1;
                continue;
            }
            if !seen.insert(request.key) {
                continue;
            }
            let sendable = match self.request(&request.key)? {
                None => true,
                Some(row) if row.status == RequestStatus::Harvested => true,
                Some(row) if row.status.is_in_flight_or_done() => false,
                Some(row) => row.status != RequestStatus::Failed || row.retryable,
            };
            if sendable {
                estimate.requests += 1;
                estimate.cost += request.cost;
            }
        }
        Ok(estimate)
    }
}
