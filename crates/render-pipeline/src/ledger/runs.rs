//! Runs: one invocation's shot lists, and the items (shot, take, key) each holds.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::row::ledger_row;

use super::{Ledger, RequestStatus, Result, parse_sha};
use crate::provider::Lane;
use render_wire::key::RequestKey;
use render_wire::money::Usd;

ledger_row! {
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
}

ledger_row! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RunItem {
        pub shot_id: String,
        /// The provider's identity (`None` in ledgers from before providers: the run's).
        pub provider: Option<String>,
        pub lane: Lane,
        pub take: u32,
        pub takes: u32,
        pub key: RequestKey,
        pub cost: Usd = "cost_micros",
        pub tags: Vec<String>,
    }
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
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO runs ({}) VALUES ({})",
            RunRow::names(),
            RunRow::placeholders()
        ))?;
        run.execute(&mut insert, &[], &[])?;
        drop(insert);
        insert_run_items(&tx, &run.id, items)?;
        tx.commit()?;
        Ok(())
    }

    /// The newest unfinished run of the same plan: a rerun continues it instead of starting over.
    pub fn open_run_for_plan(&self, plan_hash: &str) -> Result<Option<RunRow>> {
        self.query_one(
            &format!(
                "SELECT {} FROM runs WHERE plan_hash = ?1 AND done = 0 AND cancelled = 0
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                RunRow::columns()
            ),
            [plan_hash],
            RunRow::read,
        )
        .optional()?
        .transpose()
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>> {
        self.query_one(
            &format!("SELECT {} FROM runs WHERE id = ?1", RunRow::columns()),
            [id],
            RunRow::read,
        )
        .optional()?
        .transpose()
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM runs ORDER BY created_at DESC, rowid DESC",
            RunRow::columns()
        ))?;
        let rows = stmt.query_map([], RunRow::read)?;
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
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM run_items WHERE run_id = ?1 ORDER BY rowid",
            RunItem::columns()
        ))?;
        let rows = stmt.query_map([run_id], RunItem::read)?;
        rows.map(|r| r?).collect()
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
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO run_items (run_id, {}) VALUES (?, {})",
        RunItem::names(),
        RunItem::placeholders()
    ))?;
    for item in items {
        item.execute(&mut stmt, &[&run_id], &[])?;
    }
    Ok(())
}
