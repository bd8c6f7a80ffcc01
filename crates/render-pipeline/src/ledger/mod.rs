//! The ledger: SQLite state that makes a night resumable and submission exactly-once.
//!
//! It records runs (one invocation's shot lists), requests (one per distinct cache key, shared by
//! every run that needs it), uploaded assets, batches (written as an *intent* before the API call
//! that creates them) and outputs (key → object in the cache). Every write that matters is one
//! transaction, so a crash leaves the ledger as it was before or after, never between.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::provider::Lane;
use render_wire::api::Batch;
use render_wire::key::{RequestKey, Sha256Hex};
use render_wire::money::Usd;

mod jobs;
pub use jobs::{JobRow, JobStatus};
mod spend;
pub use spend::{Estimate, Planned, RunSpend};

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    project     TEXT,
    plan_hash   TEXT NOT NULL,
    sources     TEXT NOT NULL,
    provider    TEXT NOT NULL,
    out_dir     TEXT,
    done        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_plan_hash ON runs(plan_hash);

CREATE TABLE run_items (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    shot_id     TEXT NOT NULL,
    take        INTEGER NOT NULL,
    takes       INTEGER NOT NULL,
    key         TEXT NOT NULL,
    cost_micros INTEGER NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, shot_id, take)
);
CREATE INDEX run_items_key ON run_items(key);

CREATE TABLE batches (
    row             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT NOT NULL REFERENCES runs(id),
    part            INTEGER NOT NULL,
    intent          TEXT NOT NULL UNIQUE,
    intent_at       INTEGER NOT NULL,
    input_file_id   TEXT,
    batch_id        TEXT UNIQUE,
    status          TEXT NOT NULL DEFAULT 'intent',
    request_count   INTEGER NOT NULL,
    completed       INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER,
    expires_at      INTEGER,
    completed_at    INTEGER,
    output_file_id  TEXT,
    error_file_id   TEXT,
    results_read    INTEGER NOT NULL DEFAULT 0,
    harvested       INTEGER NOT NULL DEFAULT 0,
    error           TEXT
);

CREATE TABLE requests (
    key             TEXT PRIMARY KEY,
    shot_id         TEXT NOT NULL,
    model           TEXT NOT NULL,
    size            TEXT NOT NULL,
    seconds         INTEGER NOT NULL,
    prompt          TEXT NOT NULL,
    reference_sha   TEXT,
    reference_path  TEXT,
    reference_mime  TEXT,
    cost_micros     INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    batch_row       INTEGER REFERENCES batches(row),
    video_id        TEXT,
    video_expires_at INTEGER,
    error_code      TEXT,
    error_message   TEXT,
    retryable       INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX requests_batch ON requests(batch_row);

CREATE TABLE assets (
    sha256       TEXT PRIMARY KEY,
    file_id      TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    uploaded_at  INTEGER NOT NULL,
    expires_at   INTEGER
);

CREATE TABLE outputs (
    key             TEXT PRIMARY KEY,
    video_sha       TEXT NOT NULL,
    video_bytes     INTEGER NOT NULL,
    thumbnail_sha   TEXT,
    video_id        TEXT,
    harvested_at    INTEGER NOT NULL
);
"#,
    r#"
-- Providers and lanes: every request, batch and run item knows who renders it and how it
-- travels; direct-lane jobs (one POST /v1/videos each) get a table like batches.
ALTER TABLE requests ADD COLUMN provider TEXT;
ALTER TABLE requests ADD COLUMN lane TEXT NOT NULL DEFAULT 'batch';
ALTER TABLE requests ADD COLUMN served_as TEXT;
ALTER TABLE requests ADD COLUMN job_row INTEGER;
-- Answers of "no such video" in a row, and when the first came: one 404 proves nothing.
ALTER TABLE requests ADD COLUMN missing_polls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN first_missing_at INTEGER;
ALTER TABLE batches ADD COLUMN provider TEXT;
ALTER TABLE batches ADD COLUMN missing_polls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN first_missing_at INTEGER;
ALTER TABLE run_items ADD COLUMN provider TEXT;
ALTER TABLE run_items ADD COLUMN lane TEXT;
UPDATE batches SET provider = (SELECT runs.provider FROM runs WHERE runs.id = batches.run_id);
UPDATE requests SET provider = (SELECT b.provider FROM batches b WHERE b.row = requests.batch_row);
UPDATE run_items SET provider = (SELECT runs.provider FROM runs WHERE runs.id = run_items.run_id),
    lane = 'batch';

CREATE TABLE jobs (
    row             INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL,
    run_id          TEXT,
    provider        TEXT NOT NULL,
    intent          TEXT NOT NULL UNIQUE,
    intent_at       INTEGER NOT NULL,
    video_id        TEXT,
    status          TEXT NOT NULL DEFAULT 'intent',
    server_status   TEXT,
    progress        INTEGER,
    sent_at         INTEGER,
    finished_at     INTEGER,
    error           TEXT
);
CREATE INDEX jobs_open ON jobs(provider, status);
CREATE INDEX requests_lane ON requests(provider, lane, status);
"#,
    r#"
-- Batch ids are the provider's: unique per provider, not across them (two servers may well both
-- call a batch `batch_1`). SQLite changes a constraint by rebuilding the table. Also kept: how
-- far the provider's clock was from this machine's at the last poll (`clock_offset`), so that
-- `render status` counts down by the provider's time without asking it.
CREATE TABLE batches_v3 (
    row             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT NOT NULL REFERENCES runs(id),
    part            INTEGER NOT NULL,
    intent          TEXT NOT NULL UNIQUE,
    intent_at       INTEGER NOT NULL,
    input_file_id   TEXT,
    batch_id        TEXT,
    status          TEXT NOT NULL DEFAULT 'intent',
    request_count   INTEGER NOT NULL,
    completed       INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER,
    expires_at      INTEGER,
    completed_at    INTEGER,
    output_file_id  TEXT,
    error_file_id   TEXT,
    results_read    INTEGER NOT NULL DEFAULT 0,
    harvested       INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    provider        TEXT,
    missing_polls   INTEGER NOT NULL DEFAULT 0,
    first_missing_at INTEGER,
    clock_offset    INTEGER,
    UNIQUE (provider, batch_id)
);
INSERT INTO batches_v3 (row, run_id, part, intent, intent_at, input_file_id, batch_id, status,
    request_count, completed, failed, created_at, expires_at, completed_at, output_file_id,
    error_file_id, results_read, harvested, error, provider, missing_polls, first_missing_at)
SELECT row, run_id, part, intent, intent_at, input_file_id, batch_id, status,
    request_count, completed, failed, created_at, expires_at, completed_at, output_file_id,
    error_file_id, results_read, harvested, error, provider, missing_polls, first_missing_at
FROM batches;
DROP TABLE batches;
ALTER TABLE batches_v3 RENAME TO batches;
-- Whether an output is in the studio's shared cache yet (published after it is stored here).
ALTER TABLE outputs ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- A run of only some of its lists' shots (`--only`, `--tag`) does not say the others are gone:
-- laying it out moves no earlier output aside.
ALTER TABLE runs ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
-- `render cancel`: a cancelled run is not continued by a rerun (which starts a new one), but is
-- still harvested, so what finished before the cancel is kept.
ALTER TABLE runs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
-- Which take of its shot a request is, so every message about it can say so.
ALTER TABLE requests ADD COLUMN take INTEGER NOT NULL DEFAULT 1;
UPDATE requests SET take = COALESCE(
    (SELECT run_items.take FROM run_items WHERE run_items.key = requests.key LIMIT 1), 1);
"#,
    // The bill: each render, charged to the run that sent it (see `spend.rs`).
    spend::MIGRATION,
];

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "ledger schema version {found} is newer than this render understands ({known}); upgrade render"
    )]
    TooNew { found: i64, known: i64 },
    #[error("ledger: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger holds a malformed value: {0}")]
    Corrupt(String),
    #[error("request {0} is already in flight (another render is submitting); nothing was sent")]
    InFlight(String),
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// Where a request stands. Stored as text so the ledger reads well in `sqlite3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Known but not in any batch yet.
    Pending,
    /// In a batch whose creation is intended but not yet confirmed.
    Queued,
    /// In a created batch.
    Submitted,
    /// Rendered; the video is waiting to be downloaded.
    Completed,
    /// The video is in the cache.
    Harvested,
    /// The provider answered with an error (kept with the request).
    Failed,
    /// Never rendered or expired before download: resubmittable.
    Lost,
    /// Claimed in the shared cache by another machine of the studio: waited for, not sent.
    Elsewhere,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Queued => "queued",
            RequestStatus::Submitted => "submitted",
            RequestStatus::Completed => "completed",
            RequestStatus::Harvested => "harvested",
            RequestStatus::Failed => "failed",
            RequestStatus::Lost => "lost",
            RequestStatus::Elsewhere => "elsewhere",
        }
    }

    fn parse(text: &str) -> Result<RequestStatus> {
        Ok(match text {
            "pending" => RequestStatus::Pending,
            "queued" => RequestStatus::Queued,
            "submitted" => RequestStatus::Submitted,
            "completed" => RequestStatus::Completed,
            "harvested" => RequestStatus::Harvested,
            "failed" => RequestStatus::Failed,
            "lost" => RequestStatus::Lost,
            "elsewhere" => RequestStatus::Elsewhere,
            other => return Err(LedgerError::Corrupt(format!("request status `{other}`"))),
        })
    }

    /// Somebody is already rendering (or has rendered) this request: do not submit it again.
    pub fn is_in_flight_or_done(self) -> bool {
        matches!(
            self,
            RequestStatus::Queued
                | RequestStatus::Submitted
                | RequestStatus::Completed
                | RequestStatus::Harvested
                | RequestStatus::Elsewhere
        )
    }
}

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
    pub cost: Usd,
    /// Who renders it (empty for rows from before providers, which were batch rows).
    pub provider: String,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRow {
    pub sha256: Sha256Hex,
    pub file_id: String,
    pub bytes: u64,
    pub uploaded_at: i64,
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRow {
    pub row: i64,
    pub run_id: String,
    /// The provider's identity (older ledgers: the run's provider).
    pub provider: String,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRow {
    pub key: RequestKey,
    pub video_sha: Sha256Hex,
    pub video_bytes: u64,
    pub thumbnail_sha: Option<Sha256Hex>,
    pub video_id: Option<String>,
    pub harvested_at: i64,
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

pub struct Ledger {
    conn: Connection,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Ledger> {
        let open_err = |source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(open_err)?;
        // WAL lets `render status` read while a harvest writes; FULL sync makes every committed
        // transaction survive power loss, which is the point of a ledger.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        let mut ledger = Ledger { conn };
        // Foreign keys are checked once the schema is current: a migration that rebuilds a
        // table (SQLite's way to change a constraint) drops the old one first.
        ledger.migrate()?;
        ledger
            .conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        Ok(ledger)
    }

    /// A second, read-only connection to a ledger another connection of this process keeps
    /// current: no migration, no pragma that writes, so it never holds the write lock and a
    /// night writing through the first connection never waits for it (or, upgrading a read to a
    /// write mid-transaction, fails on it with "database is locked").
    pub fn open_reader(path: &Path) -> Result<Ledger> {
        let open_err = |source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(open_err)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version != known {
            return Err(LedgerError::Corrupt(format!(
                "schema version {version}, where this render reads {known}"
            )));
        }
        Ok(Ledger { conn })
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(LedgerError::TooNew {
                found: version,
                known,
            });
        }
        if version == known {
            // Nothing to do, and nothing written: a commit here would make another connection's
            // open read snapshot stale, failing its next write with "database is locked".
            return Ok(());
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.execute_batch(migration)?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    /// One row by a cached statement: submit asks the same few questions once per request.
    fn query_one<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }

    // ------------------------------------------------------------ runs

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
            .prepare_cached(
                "SELECT COUNT(DISTINCT run_items.key) FROM run_items
             JOIN requests ON requests.key = run_items.key
             WHERE run_items.run_id IN (SELECT value FROM json_each(?1))
               AND (requests.status IN ('queued', 'submitted', 'completed', 'elsewhere')
                    OR (requests.status = 'pending' AND requests.lane = 'direct'))",
            )?
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
    pub fn newest_uses(&self) -> Result<std::collections::HashMap<RequestKey, KeyUse>> {
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
        let mut uses = std::collections::HashMap::new();
        for row in rows {
            let (key, used) = row?;
            uses.insert(parse_sha(&key)?, used);
        }
        Ok(uses)
    }

    // ------------------------------------------------------------ requests

    /// Records requests not seen before; a known key keeps its row (and its history).
    pub fn insert_requests(&mut self, rows: &[RequestRow]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO requests (key, shot_id, model, size, seconds, prompt,
                    reference_sha, reference_path, reference_mime, cost_micros, status, attempts,
                    updated_at, provider, lane, served_as, take)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?14, ?15, ?16)",
            )?;
            // A known request nobody is rendering takes tonight's lane and price (a shot
            // marked rush since, or a lost batch request sent direct).
            let mut relane = tx.prepare_cached(
                "UPDATE requests SET lane = ?2, cost_micros = ?3, provider = ?4, served_as = ?5
                 WHERE key = ?1 AND status IN ('pending', 'lost', 'failed')",
            )?;
            let now = unix_now();
            for r in rows {
                relane.execute(params![
                    r.key.hex(),
                    r.lane.as_str(),
                    r.cost.micros(),
                    r.provider,
                    r.served_as
                ])?;
                stmt.execute(params![
                    r.key.hex(),
                    r.shot_id,
                    r.model,
                    r.size,
                    r.seconds,
                    r.prompt,
                    r.reference_sha.map(|s| s.hex()),
                    r.reference_path,
                    r.reference_mime,
                    r.cost.micros(),
                    RequestStatus::Pending.as_str(),
                    now,
                    r.provider,
                    r.lane.as_str(),
                    r.served_as,
                    r.take,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn request(&self, key: &RequestKey) -> Result<Option<RequestRow>> {
        self.query_one(
            &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE key = ?1"),
            [key.hex()],
            request_from_row,
        )
        .optional()?
        .transpose()
    }

    /// The status and retryability of every request that is not pending, in one query: what
    /// choosing a large plan's requests needs of each, instead of a query per request.
    pub fn request_states(&self) -> Result<render_wire::key::KeyMap<(RequestStatus, bool)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, status, retryable FROM requests WHERE status <> 'pending'",
        )?;
        let mut rows = stmt.query([])?;
        let mut states = render_wire::key::KeyMap::default();
        while let Some(row) = rows.next()? {
            let text = |i: usize| -> Result<&str> {
                Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
            };
            let key = parse_sha(text(0)?)?;
            let status = RequestStatus::parse(text(1)?)?;
            states.insert(key, (status, row.get::<_, bool>(2)?));
        }
        Ok(states)
    }

    pub fn batch_requests(&self, batch_row: i64) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE batch_row = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([batch_row], request_from_row)?;
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
            "UPDATE requests SET status = 'elsewhere', updated_at = ?2
             WHERE key = ?1 AND status IN ('pending', 'lost', 'failed')",
            params![key.hex(), unix_now()],
        )?;
        Ok(())
    }

    /// Requests another machine of the studio renders, waited for here.
    pub fn elsewhere(&self) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE status = 'elsewhere' ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([], request_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// The claim came back to this machine: the request is to be sent again.
    pub fn set_pending(&self, key: &RequestKey) -> Result<()> {
        self.conn.execute(
            "UPDATE requests SET status = 'pending', updated_at = ?2
             WHERE key = ?1 AND status = 'elsewhere'",
            params![key.hex(), unix_now()],
        )?;
        Ok(())
    }

    /// Outputs among `keys` not yet in the shared cache.
    pub fn unpublished(&self, keys: &HashSet<RequestKey>) -> Result<Vec<OutputRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, video_sha, video_bytes, thumbnail_sha, video_id, harvested_at
             FROM outputs WHERE published = 0",
        )?;
        let rows = stmt.query_map([], output_from_row)?;
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

    /// Puts requests that nobody is rendering in line for the direct lane of `provider`.
    pub fn queue_direct(&mut self, provider: &str, keys: &[RequestKey]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE requests SET status = 'pending', lane = 'direct', provider = ?2,
                 batch_row = NULL, job_row = NULL, updated_at = ?3
                 WHERE key = ?1 AND status IN ('pending', 'lost', 'failed', 'harvested')",
            )?;
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
        let now = unix_now();
        let not_harvested = "key = ?1 AND status != 'harvested'";
        match result {
            RequestResult::Completed {
                video_id,
                expires_at,
            } => self.conn.execute(
                &format!(
                    "UPDATE requests SET status = 'completed', video_id = ?2, video_expires_at = ?3,
                     error_code = NULL, error_message = NULL, updated_at = ?4
                     WHERE {not_harvested}"
                ),
                params![key.hex(), video_id, expires_at, now],
            )?,
            RequestResult::Failed {
                code,
                message,
                retryable,
            } => self.conn.execute(
                &format!(
                    "UPDATE requests SET status = 'failed', error_code = ?2, error_message = ?3,
                     retryable = ?4, updated_at = ?5 WHERE {not_harvested}"
                ),
                params![key.hex(), code, message, retryable, now],
            )?,
            RequestResult::Lost { reason } => self.conn.execute(
                &format!(
                    "UPDATE requests SET status = 'lost', error_code = 'lost', error_message = ?2,
                     retryable = 1, updated_at = ?3 WHERE {not_harvested}"
                ),
                params![key.hex(), reason, now],
            )?,
        };
        Ok(())
    }

    // ------------------------------------------------------------ assets

    pub fn asset(&self, sha256: &Sha256Hex) -> Result<Option<AssetRow>> {
        self.query_one(
            "SELECT sha256, file_id, bytes, uploaded_at, expires_at FROM assets WHERE sha256 = ?1",
            [sha256.hex()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?
        .map(|(sha, file_id, bytes, uploaded_at, expires_at)| {
            Ok(AssetRow {
                sha256: parse_sha(&sha)?,
                file_id,
                bytes,
                uploaded_at,
                expires_at,
            })
        })
        .transpose()
    }

    pub fn record_asset(&self, asset: &AssetRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO assets (sha256, file_id, bytes, uploaded_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                asset.sha256.hex(),
                asset.file_id,
                asset.bytes,
                asset.uploaded_at,
                asset.expires_at
            ],
        )?;
        Ok(())
    }

    // ------------------------------------------------------------ batches

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
            let mut stmt = tx.prepare_cached(
                "UPDATE requests SET status = 'queued', batch_row = ?2, attempts = attempts + 1,
                 error_code = NULL, error_message = NULL, retryable = 0, video_id = NULL,
                 updated_at = ?3
                 WHERE key = ?1 AND status NOT IN ('queued', 'submitted', 'completed', 'elsewhere')",
            )?;
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
            "UPDATE requests SET status = 'submitted', updated_at = ?2
             WHERE batch_row = ?1 AND status = 'queued'",
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
            "UPDATE batches SET status = 'abandoned', error = ?2, harvested = 1, results_read = 1
             WHERE row = ?1",
            params![row, error],
        )?;
        tx.execute(
            "UPDATE requests SET status = 'pending', batch_row = NULL, updated_at = ?2
             WHERE batch_row = ?1 AND status = 'queued'",
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
        self.batches_where("batch_id IS NULL AND status = 'intent'", [])
    }

    pub fn batches_of_run(&self, run_id: &str) -> Result<Vec<BatchRow>> {
        self.batches_where("run_id = ?1 AND status != 'abandoned'", [run_id])
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

    /// One more "not found" for the row of `table` whose `column` is `id`: the streak's length
    /// and how long since it began. Both tables keep `missing_polls` and `first_missing_at`.
    fn missing_streak(
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

    /// Completed direct-lane requests of `provider` whose videos are not downloaded yet.
    pub fn completed_direct(&self, provider: &str) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests
             WHERE provider = ?1 AND lane = 'direct' AND status = 'completed' ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([provider], request_from_row)?;
        rows.map(|r| r?).collect()
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
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE {condition}
             ORDER BY COALESCE(completed_at + {OUTPUTS_LIFETIME_SECS}, expires_at, intent_at), row"
        ))?;
        let rows = stmt.query_map(params, batch_from_row)?;
        rows.map(|r| r.map_err(LedgerError::from)).collect()
    }

    // ------------------------------------------------------------ outputs

    /// Records that `key`'s video is in the cache. Call only after the object is durable.
    pub fn record_output(&mut self, output: &OutputRow) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO outputs (key, video_sha, video_bytes, thumbnail_sha, video_id,
                harvested_at, published)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                COALESCE((SELECT published FROM outputs WHERE key = ?1), 0))",
            params![
                output.key.hex(),
                output.video_sha.hex(),
                output.video_bytes,
                output.thumbnail_sha.map(|s| s.hex()),
                output.video_id,
                output.harvested_at,
            ],
        )?;
        tx.execute(
            "UPDATE requests SET status = 'harvested', error_code = NULL, error_message = NULL,
             updated_at = ?2 WHERE key = ?1",
            params![output.key.hex(), unix_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn output(&self, key: &RequestKey) -> Result<Option<OutputRow>> {
        self.query_one(
            "SELECT key, video_sha, video_bytes, thumbnail_sha, video_id, harvested_at
                 FROM outputs WHERE key = ?1",
            [key.hex()],
            output_from_row,
        )
        .optional()?
        .transpose()
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
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, video_sha, video_bytes, thumbnail_sha, video_id, harvested_at FROM outputs",
        )?;
        let rows = stmt.query_map([], output_from_row)?;
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
}

fn objects_of<'a>(outputs: impl Iterator<Item = &'a OutputRow>) -> HashSet<Sha256Hex> {
    let mut objects = HashSet::new();
    for output in outputs {
        objects.insert(output.video_sha);
        objects.extend(output.thumbnail_sha);
    }
    objects
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
        "UPDATE requests SET status = 'lost', error_code = 'lost', error_message = ?2,
         retryable = 1, updated_at = ?3
         WHERE batch_row = ?1 AND status IN ('submitted', 'completed')",
        params![earlier, reason, unix_now()],
    )?;
    tx.execute(
        "UPDATE batches SET batch_id = batch_id || '#superseded-' || row, harvested = 1,
         results_read = 1, error = ?2 WHERE row = ?1",
        params![earlier, reason],
    )?;
    Ok(())
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

const REQUEST_COLUMNS: &str = "key, shot_id, model, size, seconds, prompt, reference_sha,
    reference_path, reference_mime, cost_micros, status, attempts, batch_row, video_id,
    video_expires_at, error_code, error_message, retryable, provider, lane, served_as, job_row,
    take";

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<Result<RequestRow>> {
    let key: String = r.get(0)?;
    let reference_sha: Option<String> = r.get(6)?;
    let status: String = r.get(10)?;
    let build = || -> Result<RequestRow> {
        Ok(RequestRow {
            key: parse_sha(&key)?,
            shot_id: r.get(1)?,
            model: r.get(2)?,
            size: r.get(3)?,
            seconds: r.get(4)?,
            prompt: r.get(5)?,
            reference_sha: reference_sha.as_deref().map(parse_sha).transpose()?,
            reference_path: r.get(7)?,
            reference_mime: r.get(8)?,
            cost: Usd::from_micros(r.get(9)?),
            status: RequestStatus::parse(&status)?,
            attempts: r.get(11)?,
            batch_row: r.get(12)?,
            video_id: r.get(13)?,
            video_expires_at: r.get(14)?,
            error_code: r.get(15)?,
            error_message: r.get(16)?,
            retryable: r.get(17)?,
            provider: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
            lane: parse_lane(r.get::<_, Option<String>>(19)?.as_deref())?,
            served_as: r.get(20)?,
            job_row: r.get(21)?,
            take: r.get(22)?,
        })
    };
    Ok(build())
}

const BATCH_COLUMNS: &str = "row, run_id, part, intent, intent_at, input_file_id, batch_id, status,
    request_count, completed, failed, created_at, expires_at, completed_at, output_file_id,
    error_file_id, results_read, harvested, error,
    COALESCE(provider, (SELECT runs.provider FROM runs WHERE runs.id = batches.run_id), ''),
    clock_offset";

fn batch_from_row(r: &Row<'_>) -> rusqlite::Result<BatchRow> {
    Ok(BatchRow {
        row: r.get(0)?,
        run_id: r.get(1)?,
        part: r.get(2)?,
        intent: r.get(3)?,
        intent_at: r.get(4)?,
        input_file_id: r.get(5)?,
        batch_id: r.get(6)?,
        status: r.get(7)?,
        request_count: r.get(8)?,
        completed: r.get(9)?,
        failed: r.get(10)?,
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        completed_at: r.get(13)?,
        output_file_id: r.get(14)?,
        error_file_id: r.get(15)?,
        results_read: r.get(16)?,
        harvested: r.get(17)?,
        error: r.get(18)?,
        provider: r.get(19)?,
        clock_offset: r.get(20)?,
    })
}

fn output_from_row(r: &Row<'_>) -> rusqlite::Result<Result<OutputRow>> {
    let key: String = r.get(0)?;
    let video: String = r.get(1)?;
    let thumb: Option<String> = r.get(3)?;
    let build = || -> Result<OutputRow> {
        Ok(OutputRow {
            key: parse_sha(&key)?,
            video_sha: parse_sha(&video)?,
            video_bytes: r.get(2)?,
            thumbnail_sha: thumb.as_deref().map(parse_sha).transpose()?,
            video_id: r.get(4)?,
            harvested_at: r.get(5)?,
        })
    };
    Ok(build())
}

/// A stored lane; rows from before lanes were all Batch.
fn parse_lane(text: Option<&str>) -> Result<Lane> {
    match text {
        None => Ok(Lane::Batch),
        Some(text) => {
            Lane::parse(text).ok_or_else(|| LedgerError::Corrupt(format!("lane `{text}`")))
        }
    }
}

fn parse_sha(text: &str) -> Result<Sha256Hex> {
    if let Some(sha) = Sha256Hex::from_lower_hex(text.as_bytes()) {
        return Ok(sha);
    }
    text.parse()
        .map_err(|e| LedgerError::Corrupt(format!("{e}")))
}

/// Seconds since the Unix epoch, by this machine's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
