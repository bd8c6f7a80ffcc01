//! The ledger: SQLite state that makes a night resumable and submission exactly-once.
//!
//! It records runs (one invocation's shot lists), requests (one per distinct cache key, shared by
//! every run that needs it), uploaded assets, batches (written as an *intent* before the API call
//! that creates them) and outputs (key → object in the cache). Every write that matters is one
//! transaction, so a crash leaves the ledger as it was before or after, never between.
//!
//! One file per table (or pair of tables): `runs`, `requests`, `batches`, `jobs`, `assets`,
//! `outputs`, and `spend` (the bill); `schema` holds the migrations, `status` the request
//! statuses and the SQL sets made from them.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Row};

use crate::provider::Lane;
use render_wire::key::Sha256Hex;

mod assets;
mod batches;
mod jobs;
mod outputs;
mod requests;
mod row;
mod runs;
mod schema;
mod spend;
mod status;

pub use assets::AssetRow;
pub use batches::{BatchRow, BatchUpdate};
pub use jobs::JobRow;
pub use outputs::OutputRow;
pub use requests::{RequestResult, RequestRow};
pub use runs::{KeyUse, RunItem, RunRow};
pub use spend::{Estimate, Planned, RunSpend};
pub use status::{BatchMark, JobStatus, RequestStatus};

use schema::MIGRATIONS;

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

    /// One row by a cached statement: submit asks the same few questions once per request.
    fn query_one<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }
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
