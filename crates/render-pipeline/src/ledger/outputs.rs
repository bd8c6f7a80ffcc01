//! Outputs: which key's video is in the cache (and whether the studio's shared cache has it),
//! and the cache objects they keep alive.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::row::ledger_row;

use super::{Ledger, RequestStatus, Result, parse_sha, unix_now};
use render_wire::key::{RequestKey, Sha256Hex};

ledger_row! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct OutputRow {
        pub key: RequestKey,
        pub video_sha: Sha256Hex,
        pub video_bytes: u64,
        pub thumbnail_sha: Option<Sha256Hex>,
        pub video_id: Option<String>,
        pub harvested_at: i64,
    }
}

impl Ledger {
    /// Records that `key`'s video is in the cache. Call only after the object is durable.
    pub fn record_output(&mut self, output: &OutputRow) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            // A replaced output keeps whether the shared cache has it.
            let mut insert = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO outputs ({}, published)
                 VALUES ({}, COALESCE((SELECT published FROM outputs WHERE key = ?), 0))",
                OutputRow::names(),
                OutputRow::placeholders(),
            ))?;
            output.execute(&mut insert, &[], &[&output.key.hex()])?;
        }
        tx.execute(
            &format!(
                "UPDATE requests SET status = {}, error_code = NULL, error_message = NULL,
                 updated_at = ?2 WHERE key = ?1",
                RequestStatus::Harvested.sql(),
            ),
            params![output.key.hex(), unix_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn output(&self, key: &RequestKey) -> Result<Option<OutputRow>> {
        self.query_one(
            &format!(
                "SELECT {} FROM outputs WHERE key = ?1",
                OutputRow::columns()
            ),
            [key.hex()],
            OutputRow::read,
        )
        .optional()?
        .transpose()
    }

    /// At least as many as the outputs recorded, at once (the largest rowid; a replaced record
    /// takes a new one): what tells the cache probe whether reading them all is cheap.
    pub fn outputs_bound(&self) -> Result<u64> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT max(rowid) FROM outputs", [], |r| r.get(0))?;
        Ok(max.map_or(0, |n| n.max(0) as u64))
    }

    /// Every output's key and video object, and nothing else: what a plan's cache probe reads
    /// in one query (`outputs::CachedOutputs`).
    pub fn output_videos(&self) -> Result<Vec<(RequestKey, Sha256Hex)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, video_sha FROM outputs")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let sha = |i: usize| -> Result<Sha256Hex> {
                let text = row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?;
                parse_sha(text)
            };
            out.push((sha(0)?, sha(1)?));
        }
        Ok(out)
    }

    pub fn outputs(&self) -> Result<Vec<OutputRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {} FROM outputs", OutputRow::columns()))?;
        let rows = stmt.query_map([], OutputRow::read)?;
        rows.map(|r| r?).collect()
    }

    /// Drops the record of an output whose object has gone (e.g. removed by `cache gc`).
    pub fn forget_output(&self, key: &RequestKey) -> Result<()> {
        self.conn
            .execute("DELETE FROM outputs WHERE key = ?1", [key.hex()])?;
        Ok(())
    }

    /// Every cache object some output points at: what `cache gc` must keep.
    pub fn referenced_objects(&self) -> Result<HashSet<Sha256Hex>> {
        Ok(objects_of(self.outputs()?.iter()))
    }

    /// The cache objects of the outputs that the `keep_runs` newest runs use.
    pub fn objects_of_newest_runs(&self, keep_runs: usize) -> Result<HashSet<Sha256Hex>> {
        let mut keys = HashSet::new();
        for run in self.runs()?.into_iter().take(keep_runs) {
            keys.extend(self.run_items(&run.id)?.into_iter().map(|item| item.key));
        }
        let outputs = self.outputs()?;
        Ok(objects_of(outputs.iter().filter(|o| keys.contains(&o.key))))
    }

    /// Outputs among `keys` not yet in the shared cache.
    pub fn unpublished(&self, keys: &HashSet<RequestKey>) -> Result<Vec<OutputRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM outputs WHERE published = 0",
            OutputRow::columns()
        ))?;
        let rows = stmt.query_map([], OutputRow::read)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row??;
            if keys.contains(&row.key) {
                out.push(row);
            }
        }
        Ok(out)
    }

    pub fn set_published(&self, key: &RequestKey) -> Result<()> {
        self.conn.execute(
            "UPDATE outputs SET published = 1 WHERE key = ?1",
            [key.hex()],
        )?;
        Ok(())
    }
}

fn objects_of<'a>(outputs: impl Iterator<Item = &'a OutputRow>) -> HashSet<Sha256Hex> {
    let mut objects = HashSet::new();
    for output in outputs {
        objects.insert(output.video_sha);
        objects.extend(output.thumbnail_sha);
    }
    objects
}
