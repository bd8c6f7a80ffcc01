//! Runs: one invocation's shot lists, and the items (shot, take, key) each holds.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Ledger, LedgerError, RequestStatus, Result, parse_lane, parse_sha};
use crate::provider::Lane;
use render_wire::key::RequestKey;
use render_wire::money::Usd;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub created_at: i64,
    pub project: Option<String>,
    pub plan_hash: String,
    pub sources: Vec<String>,
    pub provider: String,
    pub out_dir: Option<String>,
    pub done: bool,
    /// Only some of the lists' shots were chosen (see [`crate::plan::Plan::partial`]).
    pub partial: bool,
    /// `render cancel` stopped it: harvested still, never continued.
    pub cancelled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunItem {
    pub shot_id: String,
    /// The provider's identity (`None` in ledgers from before providers: the run's).
    pub provider: Option<String>,
    pub lane: Lane,
    pub take: u32,
    pub takes: u32,
    pub key: RequestKey,
    pub cost: Usd,
    pub tags: Vec<String>,
}

/// Where a key was last used: its shot, take and project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub shot_id: String,
    pub take: u32,
    pub project: Option<String>,
}

impl Ledger {
    pub fn create_run(&mut self, run: &RunRow, items: &[RunItem]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (id, created_at, project, plan_hash, sources, provider, out_dir, done,
                               partial)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.id,
                run.created_at,
                run.project,
                run.plan_hash,
                serde_json::to_string(&run.sources).expect("strings serialize"),
                run.provider,
                run.out_dir,
                run.done,
                run.partial,
            ],
        )?;
        insert_run_items(&tx, &run.id, items)?;
        tx.commit()?;
        Ok(())
    }

    /// The newest unfinished run of the same plan: a rerun continues it instead of starting over.
    pub fn open_run_for_plan(&self, plan_hash: &str) -> Result<Option<RunRow>> {
        self.query_one(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE plan_hash = ?1 AND done = 0 AND cancelled = 0
                     ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ),
            [plan_hash],
            run_from_row,
        )
        .optional()?
        .transpose()
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>> {
        self.query_one(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [id],
            run_from_row,
        )
        .optional()?
        .transpose()
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC"
        ))?;
        let rows = stmt.query_map([], run_from_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn set_run_out_dir(&self, run_id: &str, out_dir: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET out_dir = ?2 WHERE id = ?1",
            params![run_id, out_dir],
        )?;
        Ok(())
    }

    pub fn set_run_cancelled(&self, run_id: &str) -> Result<()> {
        self.conn
            .execute("UPDATE runs SET cancelled = 1 WHERE id = ?1", [run_id])?;
        Ok(())
    }

    pub fn set_run_done(&self, run_id: &str, done: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET done = ?2 WHERE id = ?1",
            params![run_id, done],
        )?;
        Ok(())
    }

    /// How many distinct requests of these runs are still to be downloaded: sent and not yet
    /// settled, or waiting for a direct-lane slot (which the harvest itself fills). One query,
    /// so a harvest of a large night does not start with a question per request.
    pub fn videos_to_come(&self, run_ids: &[&str]) -> Result<u64> {
        let ids = serde_json::to_string(run_ids).expect("strings serialize");
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT COUNT(DISTINCT run_items.key) FROM run_items
                 JOIN requests ON requests.key = run_items.key
                 WHERE run_items.run_id IN (SELECT value FROM json_each(?1))
                   AND (requests.status IN {in_flight}
                        OR (requests.status = {pending} AND requests.lane = 'direct'))",
                in_flight = RequestStatus::sql_set(RequestStatus::IN_FLIGHT),
                pending = RequestStatus::Pending.sql(),
            ))?
            .query_row([ids], |r| r.get(0))?)
    }

    pub fn run_items(&self, run_id: &str) -> Result<Vec<RunItem>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT shot_id, take, takes, key, cost_micros, tags, provider, lane FROM run_items
             WHERE run_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ),
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        rows.map(|row| {
            let ((shot_id, take, takes, key, cost, tags), provider, lane) = row?;
            Ok(RunItem {
                shot_id,
                provider,
                lane: parse_lane(lane.as_deref())?,
                take,
                takes,
                key: parse_sha(&key)?,
                cost: Usd::from_micros(cost),
                tags: serde_json::from_str(&tags)
                    .map_err(|e| LedgerError::Corrupt(format!("tags: {e}")))?,
            })
        })
        .collect()
    }

    /// The newest run that holds `key`.
    pub fn newest_run_of(&self, key: &RequestKey) -> Result<Option<String>> {
        Ok(self
            .query_one(
                "SELECT run_id FROM run_items WHERE key = ?1 ORDER BY rowid DESC LIMIT 1",
                [key.hex()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Each key's shot, take and project in the newest run that holds it: what `cache ls`
    /// names an object by.
    pub fn newest_uses(&self) -> Result<HashMap<RequestKey, KeyUse>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_items.key, run_items.shot_id, run_items.take, runs.project
             FROM run_items JOIN runs ON runs.id = run_items.run_id
             ORDER BY runs.created_at, runs.rowid, run_items.rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                KeyUse {
                    shot_id: r.get(1)?,
                    take: r.get(2)?,
                    project: r.get(3)?,
                },
            ))
        })?;
        let mut uses = HashMap::new();
        for row in rows {
            let (key, used) = row?;
            uses.insert(parse_sha(&key)?, used);
        }
        Ok(uses)
    }
}

fn insert_run_items(tx: &Transaction<'_>, run_id: &str, items: &[RunItem]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO run_items (run_id, shot_id, take, takes, key, cost_micros, tags,
            provider, lane)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for item in items {
        stmt.execute(params![
            run_id,
            item.shot_id,
            item.take,
            item.takes,
            item.key.hex(),
            item.cost.micros(),
            serde_json::to_string(&item.tags).expect("strings serialize"),
            item.provider,
            item.lane.as_str(),
        ])?;
    }
    Ok(())
}

const RUN_COLUMNS: &str =
    "id, created_at, project, plan_hash, sources, provider, out_dir, done, partial, cancelled";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Result<RunRow>> {
    let sources: String = r.get(4)?;
    Ok(Ok(RunRow {
        id: r.get(0)?,
        created_at: r.get(1)?,
        project: r.get(2)?,
        plan_hash: r.get(3)?,
        sources: match serde_json::from_str(&sources) {
            Ok(s) => s,
            Err(e) => return Ok(Err(LedgerError::Corrupt(format!("run sources: {e}")))),
        },
        provider: r.get(5)?,
        out_dir: r.get(6)?,
        done: r.get(7)?,
        partial: r.get(8)?,
        cancelled: r.get(9)?,
    }))
}
