//! Direct-lane jobs: one `POST /v1/videos` each, recorded like batches — the intent (with a
//! random token) before the request is sent, the server's id once it answers.

use rusqlite::{OptionalExtension, params};

use super::row::ledger_row;
use super::{JobStatus, Ledger, LedgerError, RequestRow, RequestStatus, Result, unix_now};
use render_wire::key::RequestKey;

ledger_row! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct JobRow {
        pub row: i64,
        pub key: RequestKey,
        pub run_id: Option<String>,
        pub provider: String,
        pub intent: String,
        pub intent_at: i64,
        pub video_id: Option<String>,
        pub status: JobStatus,
        /// The server's last word on the job (`queued`, `in_progress`, …) and its progress.
        pub server_status: Option<String>,
        pub progress: Option<u32>,
        pub sent_at: Option<i64>,
        pub finished_at: Option<i64>,
    }
}

impl Ledger {
    /// Writes the intent to send `key` as a job, before anything is sent. Only a request
    /// nobody is rendering may get one: if another process took it meanwhile, nothing is
    /// written and nothing is sent twice.
    pub fn record_job_intent(
        &mut self,
        run_id: Option<&str>,
        provider: &str,
        key: &RequestKey,
        intent: &str,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let now = unix_now();
        tx.execute(
            "INSERT INTO jobs (key, run_id, provider, intent, intent_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.hex(), run_id, provider, intent, now],
        )?;
        let row = tx.last_insert_rowid();
        let claimed = tx.execute(
            &format!(
                "UPDATE requests SET status = {queued}, job_row = ?2, batch_row = NULL,
                 lane = 'direct', attempts = attempts + 1, error_code = NULL,
                 error_message = NULL, retryable = 0, video_id = NULL, updated_at = ?3
                 WHERE key = ?1 AND status NOT IN {taken}",
                queued = RequestStatus::Queued.sql(),
                taken = RequestStatus::sql_set(RequestStatus::IN_FLIGHT_OR_DONE),
            ),
            params![key.hex(), row, now],
        )?;
        if claimed != 1 {
            return Err(LedgerError::InFlight(key.hex()));
        }
        tx.commit()?;
        Ok(row)
    }

    /// The server took the job: its id is recorded and the request is in flight.
    pub fn record_job_sent(&mut self, row: i64, video_id: &str, server_status: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = unix_now();
        tx.execute(
            &format!(
                "UPDATE jobs SET video_id = ?2, status = {rendering}, server_status = ?3,
                 sent_at = ?4 WHERE row = ?1",
                rendering = JobStatus::Rendering.sql(),
            ),
            params![row, video_id, server_status, now],
        )?;
        tx.execute(
            &format!(
                "UPDATE requests SET status = {submitted}, updated_at = ?2
                 WHERE job_row = ?1 AND status = {queued}",
                submitted = RequestStatus::Submitted.sql(),
                queued = RequestStatus::Queued.sql(),
            ),
            params![row, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The job never reached the server (or the server refused it): its request goes back to
    /// pending, to be sent again.
    pub fn abandon_job(&mut self, row: i64, reason: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = unix_now();
        tx.execute(
            &format!(
                "UPDATE jobs SET status = {abandoned}, error = ?2, finished_at = ?3 WHERE row = ?1",
                abandoned = JobStatus::Abandoned.sql(),
            ),
            params![row, reason, now],
        )?;
        tx.execute(
            &format!(
                "UPDATE requests SET status = {pending}, job_row = NULL, updated_at = ?2
                 WHERE job_row = ?1 AND status IN {sent}",
                pending = RequestStatus::Pending.sql(),
                sent = RequestStatus::sql_set(RequestStatus::SENT),
            ),
            params![row, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// What the server last said about a job it knows.
    pub fn update_job(&self, row: i64, server_status: &str, progress: Option<u32>) -> Result<()> {
        self.conn.execute(
            "UPDATE jobs SET server_status = ?2, progress = ?3 WHERE row = ?1",
            params![row, server_status, progress],
        )?;
        Ok(())
    }

    /// Nothing more to poll: the job rendered (or failed, or was given up as gone).
    pub fn finish_job(&self, row: i64) -> Result<()> {
        self.conn.execute(
            &format!(
                "UPDATE jobs SET status = {finished}, finished_at = COALESCE(finished_at, ?2)
                 WHERE row = ?1 AND status = {rendering}",
                finished = JobStatus::Finished.sql(),
                rendering = JobStatus::Rendering.sql(),
            ),
            params![row, unix_now()],
        )?;
        Ok(())
    }

    pub fn job(&self, row: i64) -> Result<Option<JobRow>> {
        Ok(self.jobs_where("row = ?1", [row])?.into_iter().next())
    }

    /// Intents of `provider` whose POST is not confirmed: reconciled before anything is sent.
    pub fn unconfirmed_jobs(&self, provider: &str) -> Result<Vec<JobRow>> {
        self.jobs_where(
            &format!("provider = ?1 AND status = {}", JobStatus::Intent.sql()),
            [provider],
        )
    }

    /// Jobs of `provider` the server is rendering.
    pub fn rendering_jobs(&self, provider: &str) -> Result<Vec<JobRow>> {
        self.jobs_where(
            &format!("provider = ?1 AND status = {}", JobStatus::Rendering.sql()),
            [provider],
        )
    }

    /// Every job not finished, of every provider (for status and harvest selection).
    pub fn open_jobs(&self) -> Result<Vec<JobRow>> {
        self.jobs_where(
            &format!("status IN {}", JobStatus::sql_set(JobStatus::OPEN)),
            [],
        )
    }

    /// Every job ever sent for `key`, oldest first.
    pub fn jobs_of(&self, key: &RequestKey) -> Result<Vec<JobRow>> {
        self.jobs_where("key = ?1", [key.hex()])
    }

    /// Whether a video id is already some job's (a listed video found after a crash must not
    /// be adopted twice).
    pub fn video_has_job(&self, provider: &str, video_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM jobs WHERE provider = ?1 AND video_id = ?2")?
            .query_row(params![provider, video_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Direct-lane requests of `provider` waiting for a slot, among `keys`' (the runs being
    /// worked on), oldest first.
    pub fn waiting_direct(&self, provider: &str) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests WHERE provider = ?1 AND lane = 'direct' AND status = {}
             ORDER BY rowid",
            RequestRow::columns(),
            RequestStatus::Pending.sql(),
        ))?;
        let rows = stmt.query_map([provider], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    /// The requests a job renders (one, unless a ledger was edited by hand).
    pub fn job_requests(&self, row: i64) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM requests WHERE job_row = ?1",
            RequestRow::columns()
        ))?;
        let rows = stmt.query_map([row], RequestRow::read)?;
        rows.map(|r| r?).collect()
    }

    fn jobs_where<P: rusqlite::Params>(&self, condition: &str, params: P) -> Result<Vec<JobRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM jobs WHERE {condition} ORDER BY row",
            JobRow::columns()
        ))?;
        let rows = stmt.query_map(params, JobRow::read)?;
        rows.map(|r| r?).collect()
    }
}
