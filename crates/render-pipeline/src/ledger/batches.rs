//! Batches: written as an *intent* before the API call that creates them, then kept as the
//! API describes them.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::row::ledger_row;

use super::{BatchMark, Ledger, LedgerError, RequestStatus, Result, unix_now};
use render_wire::api::Batch;
use render_wire::key::RequestKey;

ledger_row! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct BatchRow {
        pub row: i64,
        pub run_id: String,
        /// The provider's identity (older ledgers: the run's provider).
        pub provider: String as "COALESCE(provider, \
            (SELECT runs.provider FROM runs WHERE runs.id = batches.run_id), '')",
        pub part: u32,
        pub intent: String,
        pub intent_at: i64,
        pub input_file_id: Option<String>,
        pub batch_id: Option<String>,
        /// `intent` until the API confirms creation, then the API's batch status.
        pub status: String,
        pub request_count: u64,
        pub completed: u64,
        pub failed: u64,
        pub created_at: Option<i64>,
        pub expires_at: Option<i64>,
        pub completed_at: Option<i64>,
        pub output_file_id: Option<String>,
        pub error_file_id: Option<String>,
        pub results_read: bool,
        pub harvested: bool,
        pub error: Option<String>,
        /// The provider's clock minus this machine's, at the last poll (seconds).
        pub clock_offset: Option<i64>,
    }
}

impl BatchRow {
    /// When the provider deletes this batch's videos: 24 hours after it completed.
    pub fn outputs_expire_at(&self) -> Option<i64> {
        self.completed_at
            .map(|t| t + render_wire::api::OUTPUTS_LIFETIME_SECS)
    }
}

/// A batch as the API last described it, in the ledger's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchUpdate {
    pub status: String,
    pub completed: u64,
    pub failed: u64,
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub error: Option<String>,
}

/// The ledger's view of a batch the API described.
impl From<&Batch> for BatchUpdate {
    fn from(batch: &Batch) -> BatchUpdate {
        let counts = batch.request_counts.unwrap_or_default();
        let error = batch.errors.as_ref().and_then(|e| {
            let messages: Vec<String> = e
                .data
                .iter()
                .map(|item| {
                    let line = item.line.map(|l| format!("line {l}: ")).unwrap_or_default();
                    format!("{line}{}", item.message.clone().unwrap_or_default())
                })
                .collect();
            (!messages.is_empty()).then(|| messages.join("; "))
        });
        BatchUpdate {
            status: batch.status.as_str().to_string(),
            completed: counts.completed,
            failed: counts.failed,
            created_at: Some(batch.created_at),
            expires_at: batch.expires_at,
            completed_at: batch.completed_at,
            output_file_id: batch.output_file_id.clone(),
            error_file_id: batch.error_file_id.clone(),
            error,
        }
    }
}

impl Ledger {
    /// Writes the intent to create a batch carrying `keys`, before anything is sent: a crash
    /// after this point is reconciled through the intent token in the batch's metadata.
    pub fn record_batch_intent(
        &mut self,
        run_id: &str,
        provider: &str,
        part: u32,
        intent: &str,
        keys: &[RequestKey],
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO batches (run_id, part, intent, intent_at, request_count, provider)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_id, part, intent, unix_now(), keys.len(), provider],
        )?;
        let row = tx.last_insert_rowid();
        {
            // Only a request nobody is rendering may join a batch: if another process queued
            // it meanwhile, nothing is written and nothing is sent twice.
            let mut stmt = tx.prepare_cached(&format!(
                "UPDATE requests SET status = {queued}, batch_row = ?2, attempts = attempts + 1,
                 error_code = NULL, error_message = NULL, retryable = 0, video_id = NULL,
                 updated_at = ?3
                 WHERE key = ?1 AND status NOT IN {in_flight}",
                queued = RequestStatus::Queued.sql(),
                in_flight = RequestStatus::sql_set(RequestStatus::IN_FLIGHT),
            ))?;
            let now = unix_now();
            for key in keys {
                if stmt.execute(params![key.hex(), row, now])? != 1 {
                    return Err(LedgerError::InFlight(key.hex()));
                }
            }
        }
        tx.commit()?;
        Ok(row)
    }

    /// The number of a run's next batch part (abandoned parts keep theirs).
    pub fn next_part(&self, run_id: &str) -> Result<u32> {
        Ok(self.query_one(
            "SELECT COALESCE(MAX(part), 0) + 1 FROM batches WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )?)
    }

    pub fn set_batch_input_file(&self, row: i64, file_id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE batches SET input_file_id = ?2 WHERE row = ?1",
            params![row, file_id],
        )?;
        Ok(())
    }

    /// The API confirmed the batch exists: its requests are now in flight.
    pub fn record_batch_created(
        &mut self,
        row: i64,
        batch_id: &str,
        update: &BatchUpdate,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        supersede_reused_batch_id(&tx, row, batch_id)?;
        tx.execute(
            "UPDATE batches SET batch_id = ?2 WHERE row = ?1",
            params![row, batch_id],
        )?;
        update_batch(&tx, row, update)?;
        tx.execute(
            &format!(
                "UPDATE requests SET status = {submitted}, updated_at = ?2
                 WHERE batch_row = ?1 AND status = {queued}",
                submitted = RequestStatus::Submitted.sql(),
                queued = RequestStatus::Queued.sql(),
            ),
            params![row, unix_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The batch never reached the provider and never will (e.g. its input was refused):
    /// its requests go back to pending so a rerun can send them.
    pub fn abandon_batch_intent(&mut self, row: i64, error: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!(
                "UPDATE batches SET status = {}, error = ?2, harvested = 1, results_read = 1
                 WHERE row = ?1",
                BatchMark::Abandoned.sql(),
            ),
            params![row, error],
        )?;
        tx.execute(
            &format!(
                "UPDATE requests SET status = {pending}, batch_row = NULL, updated_at = ?2
                 WHERE batch_row = ?1 AND status = {queued}",
                pending = RequestStatus::Pending.sql(),
                queued = RequestStatus::Queued.sql(),
            ),
            params![row, unix_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn update_batch(&self, row: i64, update: &BatchUpdate) -> Result<()> {
        update_batch(&self.conn, row, update)
    }

    pub fn batch(&self, row: i64) -> Result<Option<BatchRow>> {
        Ok(self.batches_where("row = ?1", [row])?.into_iter().next())
    }

    /// Batch intents whose creation is not confirmed yet.
    pub fn unconfirmed_batches(&self) -> Result<Vec<BatchRow>> {
        self.batches_where(
            &format!("batch_id IS NULL AND status = {}", BatchMark::Intent.sql()),
            [],
        )
    }

    pub fn batches_of_run(&self, run_id: &str) -> Result<Vec<BatchRow>> {
        self.batches_where(
            &format!("run_id = ?1 AND status != {}", BatchMark::Abandoned.sql()),
            [run_id],
        )
    }

    /// Created batches whose outputs are not all collected, nearest deadline first.
    pub fn unharvested_batches(&self) -> Result<Vec<BatchRow>> {
        self.batches_where("batch_id IS NOT NULL AND harvested = 0", [])
    }

    /// The provider answered 404 for a batch: counts the streak and returns it (answers in a
    /// row, seconds since the first).
    pub fn batch_missing(&self, row: i64, now: i64) -> Result<(u32, i64)> {
        self.missing_streak("batches", "row", &row, now)
    }

    /// How far the provider's clock is from this machine's, as the last poll found it.
    pub fn set_clock_offset(&self, row: i64, offset: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE batches SET clock_offset = ?2 WHERE row = ?1",
            params![row, offset],
        )?;
        Ok(())
    }

    /// The provider knows the batch after all: the streak is over.
    pub fn batch_seen(&self, row: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE batches SET missing_polls = 0, first_missing_at = NULL
             WHERE row = ?1 AND missing_polls > 0",
            [row],
        )?;
        Ok(())
    }

    pub fn set_results_read(&self, row: i64) -> Result<()> {
        self.conn
            .execute("UPDATE batches SET results_read = 1 WHERE row = ?1", [row])?;
        Ok(())
    }

    pub fn set_batch_harvested(&self, row: i64) -> Result<()> {
        self.conn
            .execute("UPDATE batches SET harvested = 1 WHERE row = ?1", [row])?;
        Ok(())
    }

    fn batches_where<P: rusqlite::Params>(
        &self,
        condition: &str,
        params: P,
    ) -> Result<Vec<BatchRow>> {
        use render_wire::api::OUTPUTS_LIFETIME_SECS;
        let columns = BatchRow::columns();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {columns} FROM batches WHERE {condition}
             ORDER BY COALESCE(completed_at + {OUTPUTS_LIFETIME_SECS}, expires_at, intent_at), row"
        ))?;
        let rows = stmt.query_map(params, BatchRow::read)?;
        rows.map(|r| r?).collect()
    }
}

/// A provider that answers a new batch with an id an earlier batch of ours had (a restarted
/// server counting from the start again) has forgotten the earlier one: it is set aside, its
/// unfinished requests lost and resubmittable, so the new batch is recorded instead of wedging
/// every rerun on a uniqueness error.
fn supersede_reused_batch_id(tx: &Transaction<'_>, row: i64, batch_id: &str) -> Result<()> {
    let earlier: Option<i64> = tx
        .query_row(
            "SELECT other.row FROM batches AS other, batches AS this
             WHERE this.row = ?1 AND other.row != ?1 AND other.batch_id = ?2
               AND other.provider IS this.provider",
            params![row, batch_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(earlier) = earlier else {
        return Ok(());
    };
    let reason = format!(
        "the provider gave batch id {batch_id} to a new batch: it no longer has the earlier one"
    );
    tx.execute(
        &format!(
            "UPDATE requests SET status = {lost}, error_code = 'lost', error_message = ?2,
             retryable = 1, updated_at = ?3
             WHERE batch_row = ?1 AND status IN {at_provider}",
            lost = RequestStatus::Lost.sql(),
            at_provider = RequestStatus::sql_set(RequestStatus::AT_PROVIDER),
        ),
        params![earlier, reason, unix_now()],
    )?;
    tx.execute(
        "UPDATE batches SET batch_id = batch_id || '#superseded-' || row, harvested = 1,
         results_read = 1, error = ?2 WHERE row = ?1",
        params![earlier, reason],
    )?;
    Ok(())
}

fn update_batch(conn: &Connection, row: i64, u: &BatchUpdate) -> Result<()> {
    conn.execute(
        "UPDATE batches SET status = ?2, completed = ?3, failed = ?4,
            created_at = COALESCE(?5, created_at), expires_at = COALESCE(?6, expires_at),
            completed_at = COALESCE(?7, completed_at),
            output_file_id = COALESCE(?8, output_file_id), error_file_id = COALESCE(?9, error_file_id),
            error = COALESCE(?10, error)
         WHERE row = ?1",
        params![
            row,
            u.status,
            u.completed,
            u.failed,
            u.created_at,
            u.expires_at,
            u.completed_at,
            u.output_file_id,
            u.error_file_id,
            u.error,
        ],
    )?;
    Ok(())
}
