//! The ledger's schema: its migrations, applied in order, and the one place that applies them.

use rusqlite::OptionalExtension;

use super::{Ledger, LedgerError, Result, spend};

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
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

impl Ledger {
    /// Brings the schema up to date. Foreign keys are off meanwhile (the caller turns them on
    /// again): the bundled SQLite has them on by default, and a migration that rebuilds a table
    /// (SQLite's way to change a constraint) drops the old one while other tables point at it,
    /// which they would refuse. What the rebuild kept is checked before it commits.
    pub(super) fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        // Outside the transaction: inside one, this pragma does nothing.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
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
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = dangling {
            return Err(LedgerError::Corrupt(format!(
                "a row of `{table}` points at nothing after the schema upgrade"
            )));
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BatchMark, JobStatus, RequestStatus};
    use crate::provider::Lane;

    /// The schema's own words for statuses (its defaults, and the sets a migration selects by)
    /// are the enums' words: the migrations are history and keep their literals, so this holds
    /// them to the one string form.
    #[test]
    fn the_schema_speaks_the_enums_words() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for migration in MIGRATIONS {
            conn.execute_batch(migration).unwrap();
        }
        let default = |table: &str, column: &str| -> Option<String> {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT dflt_value FROM pragma_table_info('{table}') WHERE name = ?1"
                ))
                .unwrap();
            stmt.query_row([column], |r| r.get(0)).unwrap()
        };
        assert_eq!(
            default("batches", "status").as_deref(),
            Some(BatchMark::Intent.sql())
        );
        assert_eq!(
            default("jobs", "status").as_deref(),
            Some(JobStatus::Intent.sql())
        );
        assert_eq!(default("requests", "status"), None);
        assert_eq!(
            default("requests", "lane"),
            Some(format!("'{}'", Lane::Batch.as_str()))
        );

        // `status IN (…)` in a migration (the bill's backfill) names request statuses only.
        let mut sets = 0;
        for migration in MIGRATIONS {
            for (at, _) in migration.match_indices("status IN (") {
                let rest = &migration[at + "status IN (".len()..];
                let list = &rest[..rest.find(')').unwrap()];
                for word in list.split(',') {
                    let word = word.trim().trim_matches('\'');
                    assert!(
                        word.parse::<RequestStatus>().is_ok(),
                        "`{word}` in a migration"
                    );
                }
                sets += 1;
            }
        }
        assert_eq!(sets, 1);
    }

    /// A ledger written by the first render (no providers, no lanes) reads as the newest one
    /// does: the columns added since are filled in or read with their defaults.
    /// Its requests point at its batches, which migration 3 rebuilds: with foreign keys on (the
    /// bundled SQLite's default) that upgrade used to fail with "FOREIGN KEY constraint failed".
    #[test]
    fn a_first_version_ledger_reads_after_migrating() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let key = "ab".repeat(32);
        let other = "cd".repeat(32);
        conn.execute_batch(&format!(
            "INSERT INTO runs (id, created_at, plan_hash, sources, provider)
                 VALUES ('r1', 10, 'h', '[\"shots.yaml\"]', 'openai');
             INSERT INTO run_items (run_id, shot_id, take, takes, key, cost_micros, tags)
                 VALUES ('r1', 's1', 1, 1, '{key}', 500000, '[\"rush\"]');
             INSERT INTO batches (run_id, part, intent, intent_at, batch_id, status, request_count)
                 VALUES ('r1', 1, 'i1', 11, 'batch_1', 'completed', 1);
             INSERT INTO requests (key, shot_id, model, size, seconds, prompt, cost_micros, status,
                     batch_row, video_id, updated_at)
                 VALUES ('{key}', 's1', 'sora-2', '1280x720', 4, 'p', 500000, 'completed', 1,
                     'video_1', 12);
             INSERT INTO requests (key, shot_id, model, size, seconds, prompt, cost_micros, status,
                     updated_at)
                 VALUES ('{other}', 's2', 'sora-2', '1280x720', 4, 'p', 500000, 'lost', 12);"
        ))
        .unwrap();
        let mut ledger = Ledger { conn };
        ledger.migrate().unwrap();

        let run = ledger.run("r1").unwrap().unwrap();
        assert_eq!(run.sources, ["shots.yaml"]);
        assert!(!run.partial && !run.cancelled);
        let items = ledger.run_items("r1").unwrap();
        assert_eq!(items[0].provider.as_deref(), Some("openai"));
        assert_eq!(items[0].lane, Lane::Batch);
        assert_eq!(items[0].tags, ["rush"]);
        let batch = ledger.batch(1).unwrap().unwrap();
        assert_eq!(batch.provider, "openai");
        let sent = &ledger.batch_requests(1).unwrap()[0];
        assert_eq!(
            (sent.status, sent.provider.as_str()),
            (RequestStatus::Completed, "openai")
        );
        assert_eq!((sent.take, sent.lane), (1, Lane::Batch));
        let unsent = ledger.request(&other.parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (unsent.status, unsent.provider.as_str()),
            (RequestStatus::Lost, "")
        );
        // The bill's backfill charged the render to its run.
        let spend = ledger.run_spend("r1").unwrap().unwrap();
        assert_eq!(spend.rendered, 1);
    }
}
