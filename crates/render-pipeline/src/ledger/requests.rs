//! Requests: one per distinct cache key, shared by every run that needs it, and what the
//! provider said about each.

use rusqlite::{OptionalExtension, params};

use super::row::ledger_row;

use super::{Ledger, RequestStatus, Result, parse_sha, unix_now};
use crate::provider::Lane;
use render_wire::key::{RequestKey, Sha256Hex};
use render_wire::money::Usd;

ledger_row! {
    /// Everything needed to (re)send a request without the shot list.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestRow {
        pub key: RequestKey,
        pub shot_id: String,
        /// Which take of the shot (1 for the first).
        pub take: u32,
        pub model: String,
        pub size: String,
        pub seconds: u32,
        pub prompt: String,
        pub reference_sha: Option<Sha256Hex>,
        pub reference_path: Option<String>,
        pub reference_mime: Option<String>,
        pub cost: Usd = "cost_micros",
        /// Who renders it (empty for rows from before providers, which were batch rows).
        pub provider: String as "COALESCE(provider, '')",
        pub lane: Lane,
        /// The `model` string sent, when it differs from `model`.
        pub served_as: Option<String>,
        pub status: RequestStatus,
        pub attempts: u32,
        pub batch_row: Option<i64>,
        /// The direct-lane job rendering it.
        pub job_row: Option<i64>,
        pub video_id: Option<String>,
        pub video_expires_at: Option<i64>,
        pub error_code: Option<String>,
        pub error_message: Option<String>,
        pub retryable: bool,
    }
}

impl RequestRow {
    /// The request as it is first recorded: pending, never attempted, in no batch or job, with
    /// no video and no error.
    fn fresh(&self) -> RequestRow {
        RequestRow {
            status: RequestStatus::Pending,
            attempts: 0,
            batch_row: None,
            job_row: None,
            video_id: None,
            video_expires_at: None,
            error_code: None,
            error_message: None,
            retryable: false,
            ..self.clone()
        }
    }
}

/// What a batch's output or error file said about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestResult {
    Completed {
        video_id: String,
        expires_at: Option<i64>,
    },
    Failed {
        code: Option<String>,
        message: String,
        retryable: bool,
    },
    Lost {
        reason: String,
    },
}

impl Ledger {
    /// Records requests not seen before; a known key keeps its row (and its history).
    pub fn insert_requests(&mut self, rows: &[RequestRow]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO requests ({}, updated_at) VALUES ({}, ?)",
                RequestRow::names(),
                RequestRow::placeholders(),
            ))?;
            // A known request nobody is rendering takes tonight's lane and price (a shot
            // marked rush since, or a lost batch request sent direct).
            let mut relane = tx.prepare_cached(&format!(
                "UPDATE requests SET lane = ?2, cost_micros = ?3, provider = ?4, served_as = ?5
                 WHERE key = ?1 AND status IN {}",
                RequestStatus::sql_set(RequestStatus::UNCLAIMED),
            ))?;
            let now = unix_now();
            for r in rows {
                relane.execute(params![
                    r.key.hex(),
                    r.lane.as_str(),
                    r.cost.micros(),
                    r.provider,
                    r.served_as
                ])?;
                r.fresh().execute(&mut stmt, &[], &[&now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn request(&self, key: &RequestKey) -> Result<Option<RequestRow>> {
        self.query_one(
            &format!(
                "SELECT {} FROM requests WHERE key = ?1",
                RequestRow::columns()
            ),
            [key.hex()],
            RequestRow::read,
        )
        .optional()?
        .transpose()
    }

    /// The status and retryability of every request that is not pending, in one query: what
    /// choosing a large plan's requests needs of each, instead of a query per request.
    pub fn request_states(&self) -> Result<render_wire::key::KeyMap<(RequestStatus, bool)>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT key, status, retryable FROM requests WHERE status <> {}",
            RequestStatus::Pending.sql(),
        ))?;
        let mut rows = stmt.query([])?;
        let mut states = render_wire::key::KeyMap::default();
        while let Some(row) = rows.next()? {
            let text = |i: usize| -> Result<&str> {
                Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
            };
            let key = parse_sha(text(0)?)?;
            let status: RequestStatus = text(1)?.parse()?;
            states.insert(key, (status, row.get::<_, bool>(2)?));
        }
        Ok(states)
    }

    /// The requests a run holds, in one query (not one per item: `render status` asks this of
    /// every run in the ledger).
    pub fn requests_of_run(&self, run_id: &str) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests WHERE key IN (SELECT key FROM run_items WHERE run_id = ?1)",
            RequestRow::columns()
        ))?;
        let rows = stmt.query_map([run_id], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    pub fn batch_requests(&self, batch_row: i64) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests WHERE batch_row = ?1 ORDER BY rowid",
            RequestRow::columns()
        ))?;
        let rows = stmt.query_map([batch_row], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    /// The provider answered "no such video" about a request it should have: counts the
    /// streak and returns it (answers in a row, seconds since the first).
    pub fn request_missing(&self, key: &RequestKey, now: i64) -> Result<(u32, i64)> {
        self.missing_streak("requests", "key", &key.hex(), now)
    }

    /// The provider knows the request's video after all: the streak is over.
    pub fn request_seen(&self, key: &RequestKey) -> Result<()> {
        self.conn.execute(
            "UPDATE requests SET missing_polls = 0, first_missing_at = NULL
             WHERE key = ?1 AND missing_polls > 0",
            [key.hex()],
        )?;
        Ok(())
    }

    /// Another machine of the studio claimed this request: it is waited for, not sent.
    pub fn set_elsewhere(&self, key: &RequestKey) -> Result<()> {
        self.conn.execute(
            &format!(
                "UPDATE requests SET status = {elsewhere}, updated_at = ?2
                 WHERE key = ?1 AND status IN {unclaimed}",
                elsewhere = RequestStatus::Elsewhere.sql(),
                unclaimed = RequestStatus::sql_set(RequestStatus::UNCLAIMED),
            ),
            params![key.hex(), unix_now()],
        )?;
        Ok(())
    }

    /// Requests another machine of the studio renders, waited for here.
    pub fn elsewhere(&self) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests WHERE status = {} ORDER BY rowid",
            RequestRow::columns(),
            RequestStatus::Elsewhere.sql(),
        ))?;
        let rows = stmt.query_map([], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    /// The claim came back to this machine: the request is to be sent again.
    pub fn set_pending(&self, key: &RequestKey) -> Result<()> {
        self.conn.execute(
            &format!(
                "UPDATE requests SET status = {pending}, updated_at = ?2
                 WHERE key = ?1 AND status = {elsewhere}",
                pending = RequestStatus::Pending.sql(),
                elsewhere = RequestStatus::Elsewhere.sql(),
            ),
            params![key.hex(), unix_now()],
        )?;
        Ok(())
    }

    /// Puts requests that nobody is rendering in line for the direct lane of `provider`.
    pub fn queue_direct(&mut self, provider: &str, keys: &[RequestKey]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "UPDATE requests SET status = {pending}, lane = 'direct', provider = ?2,
                 batch_row = NULL, job_row = NULL, updated_at = ?3
                 WHERE key = ?1 AND status IN {sendable}",
                pending = RequestStatus::Pending.sql(),
                sendable = RequestStatus::sql_set(RequestStatus::SENDABLE),
            ))?;
            let now = unix_now();
            for key in keys {
                stmt.execute(params![key.hex(), provider, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records what the provider said about a request. Idempotent: reading the same output
    /// file twice changes nothing, and a harvested request is never demoted.
    pub fn record_result(&self, key: &RequestKey, result: &RequestResult) -> Result<()> {
        record_result_in(&self.conn, key, result)
    }

    /// [`Ledger::record_result`] for many requests, in order, in one transaction: a batch's
    /// output file costs the ledger one sync per call, not one per line.
    pub fn record_results(&mut self, results: &[(RequestKey, RequestResult)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (key, result) in results {
            record_result_in(&tx, key, result)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Completed direct-lane requests of `provider` whose videos are not downloaded yet.
    pub fn completed_direct(&self, provider: &str) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests
             WHERE provider = ?1 AND lane = 'direct' AND status = {} ORDER BY rowid",
            RequestRow::columns(),
            RequestStatus::Completed.sql(),
        ))?;
        let rows = stmt.query_map([provider], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    /// One more "not found" for the row of `table` whose `column` is `id`: the streak's length
    /// and how long since it began. Both tables keep `missing_polls` and `first_missing_at`.
    pub(super) fn missing_streak(
        &self,
        table: &str,
        column: &str,
        id: &dyn rusqlite::ToSql,
        now: i64,
    ) -> Result<(u32, i64)> {
        self.conn.execute(
            &format!(
                "UPDATE {table} SET missing_polls = missing_polls + 1,
                 first_missing_at = COALESCE(first_missing_at, ?2) WHERE {column} = ?1"
            ),
            params![id, now],
        )?;
        let (polls, first): (u32, Option<i64>) = self.conn.query_row(
            &format!("SELECT missing_polls, first_missing_at FROM {table} WHERE {column} = ?1"),
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((polls, now - first.unwrap_or(now)))
    }
}

fn record_result_in(
    conn: &rusqlite::Connection,
    key: &RequestKey,
    result: &RequestResult,
) -> Result<()> {
    let now = unix_now();
    let not_harvested = format!("key = ?1 AND status != {}", RequestStatus::Harvested.sql());
    // Cached statements: an output file's thousands of lines are parsed by SQLite once.
    let update = |set: &str| {
        conn.prepare_cached(&format!("UPDATE requests SET {set} WHERE {not_harvested}"))
    };
    match result {
        RequestResult::Completed {
            video_id,
            expires_at,
        } => update(&format!(
            "status = {}, video_id = ?2, video_expires_at = ?3, error_code = NULL, \
             error_message = NULL, updated_at = ?4",
            RequestStatus::Completed.sql()
        ))?
        .execute(params![key.hex(), video_id, expires_at, now])?,
        RequestResult::Failed {
            code,
            message,
            retryable,
        } => update(&format!(
            "status = {}, error_code = ?2, error_message = ?3, retryable = ?4, updated_at = ?5",
            RequestStatus::Failed.sql()
        ))?
        .execute(params![key.hex(), code, message, retryable, now])?,
        RequestResult::Lost { reason } => update(&format!(
            "status = {}, error_code = 'lost', error_message = ?2, retryable = 1, updated_at = ?3",
            RequestStatus::Lost.sql()
        ))?
        .execute(params![key.hex(), reason, now])?,
    };
    Ok(())
}
