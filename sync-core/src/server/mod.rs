//! The server's side of the protocol over one database connection, with no I/O beyond SQLite.
//! The HTTP server adds auth, storage and transport around these functions; the in-process
//! convergence tests drive them directly. One module per protocol family:
//!
//! | module | its job |
//! |---|---|
//! | [`push`] | apply a batch with policies, log its effect, record the answer — one transaction |
//! | [`pull`] | pages of the log, written to a sink in pieces; compaction |
//! | [`rewind`] | back to an earlier seq, forward along another copy of the history, the undo of one batch as a new entry |
//! | [`snapshot`] | a consistent copy of the app tables and its seq |
//! | [`rowid`] | leases of rowid ranges |
//! | [`conflicts`] | the conflicts met while applying, recorded and listed |
//! | [`lineage`] | the lineage id, the log's hash chain and the content checksum at each seq |
//! | [`migrations`] | where each schema migration was applied; the scripts a device behind asks for |
//! | [`error`] | [`ServerError`], each variant one wire code |
//!
//! This module installs the internal tables and reads and writes `_sync_meta`.
//!
//! Internal tables (never synced, dropped from snapshots):
//!
//! | table | holds |
//! |---|---|
//! | `_sync_log` | one row per processed batch: seq, origin device, batch id, status, effect |
//! | `_sync_batches` | idempotency: (device, batch id) → seq and the stored answer; never pruned |
//! | `_sync_conflicts` | every conflict met while applying pushes, with its resolution |
//! | `_sync_meta` | `schema_version`, `head_seq`, `oldest_seq`, `next_rowid`, `lineage`, `migrated_at_seq.N` |
//! | `_sync_chain` | per seq from `oldest_seq` to the head: the chain value and the content checksum |
//! | `_sync_leases` | rowid ranges granted to devices |
//! | `_sync_replica` | only on a node of sync-server's PostgreSQL store: the version of the store's history the file is a copy of |

pub mod conflicts;
pub mod error;
pub mod lineage;
pub mod migrations;
pub mod pull;
pub mod push;
pub mod rewind;
pub mod rowid;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use error::ServerError;

use rusqlite::{Connection, OptionalExtension, params};

/// Creates the internal tables if missing and records the schema version on first install.
/// Call once when a database is created or opened.
pub fn install(conn: &Connection, schema_version: u32) -> rusqlite::Result<()> {
    effect_last(conn)?;
    add_conflict_tx_column(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_log (
             seq      INTEGER PRIMARY KEY,
             device   TEXT    NOT NULL,
             batch_id TEXT    NOT NULL,
             status   INTEGER NOT NULL,
             at_ms    INTEGER NOT NULL,
             effect   BLOB    NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_batches (
             device   TEXT    NOT NULL,
             batch_id TEXT    NOT NULL,
             seq      INTEGER NOT NULL,
             response TEXT    NOT NULL,
             PRIMARY KEY (device, batch_id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_conflicts (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             seq      INTEGER NOT NULL,
             batch_id TEXT    NOT NULL,
             device   TEXT    NOT NULL,
             at_ms    INTEGER NOT NULL,
             record   TEXT    NOT NULL,
             tx       INTEGER
         );
         CREATE TABLE IF NOT EXISTS _sync_meta (
             key   TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_leases (
             id     INTEGER PRIMARY KEY,
             device TEXT    NOT NULL,
             start  INTEGER NOT NULL,
             end    INTEGER NOT NULL,
             at_ms  INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO _sync_meta(key, value) VALUES ('head_seq', 0), ('oldest_seq', 0);",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO _sync_meta(key, value) VALUES ('schema_version', ?1)",
        [schema_version],
    )?;
    lineage::install(conn)
}

/// The effect must be the last column of `_sync_log`: a large effect is inserted as a
/// `zeroblob` and written in pieces, and SQLite expands a zeroblob into memory whole (twice:
/// the value and the record) unless it is the record's last field. A log made with the effect
/// before `at_ms` (before version 0.2) is rewritten once, in one transaction.
fn effect_last(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_sync_log') ORDER BY cid")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() || columns.last().map(String::as_str) == Some("effect") {
        return Ok(());
    }
    let tx = crate::engine::tx::Tx::begin(conn)?;
    conn.execute_batch(
        "ALTER TABLE _sync_log RENAME TO _sync_log_old;
         CREATE TABLE _sync_log (
             seq      INTEGER PRIMARY KEY,
             device   TEXT    NOT NULL,
             batch_id TEXT    NOT NULL,
             status   INTEGER NOT NULL,
             at_ms    INTEGER NOT NULL,
             effect   BLOB    NOT NULL
         );
         INSERT INTO _sync_log(seq, device, batch_id, status, at_ms, effect)
             SELECT seq, device, batch_id, status, at_ms, effect FROM _sync_log_old;
         DROP TABLE _sync_log_old;",
    )?;
    tx.commit()
}

/// `_sync_conflicts.tx` (the transaction of the batch) came with per-transaction batches;
/// older databases get the column, empty for their records.
fn add_conflict_tx_column(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_sync_conflicts')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !columns.is_empty() && !columns.iter().any(|c| c == "tx") {
        conn.execute_batch("ALTER TABLE _sync_conflicts ADD COLUMN tx INTEGER")?;
    }
    Ok(())
}

pub(crate) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM _sync_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_meta(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Log positions: the newest seq and the oldest cursor that can still pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// Newest seq (0 when nothing was ever pushed).
    pub head_seq: i64,
    /// A cursor below this has lost entries to compaction.
    pub oldest_seq: i64,
}

/// Reads the log bounds.
pub fn bounds(conn: &Connection) -> rusqlite::Result<LogBounds> {
    Ok(LogBounds {
        head_seq: meta(conn, "head_seq")?,
        oldest_seq: meta(conn, "oldest_seq")?,
    })
}

/// The schema version recorded in the database.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    Ok(u32::try_from(meta(conn, "schema_version")?).unwrap_or(0))
}

/// Records a new schema version (after the operator's migrations ran).
pub fn set_schema_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    set_meta(conn, "schema_version", i64::from(version))
}
