//! The outbox: captured local changesets waiting to be pushed, kept in the *main* database so
//! that a write and its changeset commit in one transaction (DESIGN invariant 1). One entry
//! per local transaction, for as long as the transaction is pending: a rebase replaces an
//! entry's changeset with its new effect (possibly empty) but never merges or drops entries;
//! only the server's answer settles one (applied: removed; rejected: moved to the rejected
//! queue).
//!
//! Entries are ordered by `seq`, which is never reused, even after the outbox empties, so an
//! entry's identity is stable for the life of the database (a batch in flight refers to its
//! entries by seq). Not with AUTOINCREMENT, which writes `sqlite_sequence` in every capture
//! transaction: a new seq is one past the larger of the newest entry and a *floor* that
//! records the largest seq ever removed — written only when entries are removed, at sync time.

use crate::engine::changeset::Changeset;
use rusqlite::{Connection, OptionalExtension, params};

/// Name of the outbox table.
pub const TABLE: &str = "_sync_outbox";

/// Creates the outbox table if it is missing. Idempotent.
pub fn install(conn: &Connection) -> rusqlite::Result<()> {
    changeset_last(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_outbox (
             seq        INTEGER PRIMARY KEY,
             created_ms INTEGER NOT NULL,
             changeset  BLOB    NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_outbox_floor (
             id  INTEGER PRIMARY KEY CHECK (id = 1),
             seq INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO _sync_outbox_floor (id, seq) VALUES (1, 0);",
    )
}

/// The changeset is the outbox's last column, so that a large one can be written as a
/// zeroblob and filled in pieces (SQLite expands a zeroblob that is not a record's last field).
/// An outbox made with the changeset first is rewritten once, in one transaction.
fn changeset_last(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_sync_outbox') ORDER BY cid")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() || columns.last().map(String::as_str) == Some("changeset") {
        return Ok(());
    }
    let tx = crate::engine::tx::Tx::begin(conn)?;
    conn.execute_batch(
        "ALTER TABLE _sync_outbox RENAME TO _sync_outbox_old;
         CREATE TABLE _sync_outbox (
             seq        INTEGER PRIMARY KEY,
             created_ms INTEGER NOT NULL,
             changeset  BLOB    NOT NULL
         );
         INSERT INTO _sync_outbox(seq, created_ms, changeset)
             SELECT seq, created_ms, changeset FROM _sync_outbox_old;
         DROP TABLE _sync_outbox_old;",
    )?;
    tx.commit()
}

/// One pending changeset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox; never reused.
    pub seq: i64,
    /// The captured changeset.
    pub changeset: Changeset,
    /// When it was captured (milliseconds since the Unix epoch).
    pub created_ms: i64,
}

/// Appends a changeset and returns its `seq`. Call inside the write transaction.
pub fn push(conn: &Connection, changeset: &[u8], created_ms: i64) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _sync_outbox (seq, created_ms, changeset) VALUES (
             max(coalesce((SELECT max(seq) FROM _sync_outbox), 0),
                 (SELECT seq FROM _sync_outbox_floor WHERE id = 1)) + 1,
             ?2, ?1)",
    )?;
    stmt.execute(params![changeset, created_ms])?;
    Ok(conn.last_insert_rowid())
}

/// All entries, oldest first.
pub fn entries(conn: &Connection) -> rusqlite::Result<Vec<OutboxEntry>> {
    entries_after(conn, i64::MIN, usize::MAX)
}

/// Up to `limit` entries with `seq > after`, oldest first.
pub fn entries_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, changeset, created_ms FROM _sync_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok(OutboxEntry {
            seq: r.get(0)?,
            changeset: Changeset::from_bytes(r.get(1)?),
            created_ms: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// One entry by `seq`.
pub fn get(conn: &Connection, seq: i64) -> rusqlite::Result<Option<OutboxEntry>> {
    conn.query_row(
        "SELECT seq, changeset, created_ms FROM _sync_outbox WHERE seq = ?1",
        [seq],
        |r| {
            Ok(OutboxEntry {
                seq: r.get(0)?,
                changeset: Changeset::from_bytes(r.get(1)?),
                created_ms: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Number of entries and their total size in bytes.
pub fn stats(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT count(*), coalesce(sum(length(changeset)), 0) FROM _sync_outbox",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// Replaces an entry's changeset (after a rebase changed its effect). The entry stays even
/// when its new effect is empty: it is still a transaction the server has to settle.
pub fn replace(conn: &Connection, seq: i64, changeset: &Changeset) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE _sync_outbox SET changeset = ?2 WHERE seq = ?1")?
        .execute(params![seq, changeset.as_bytes()])?;
    Ok(())
}

/// Removes one entry (settled: applied by the server, or moved to the rejected queue).
pub fn remove(conn: &Connection, seq: i64) -> rusqlite::Result<bool> {
    raise_floor(conn, seq)?;
    Ok(conn
        .prepare_cached("DELETE FROM _sync_outbox WHERE seq = ?1")?
        .execute([seq])?
        > 0)
}

/// Removes every entry with `seq <= through` (acknowledged by the server).
pub fn remove_through(conn: &Connection, through: i64) -> rusqlite::Result<usize> {
    let newest_removed: Option<i64> = conn.query_row(
        "SELECT max(seq) FROM _sync_outbox WHERE seq <= ?1",
        [through],
        |r| r.get(0),
    )?;
    if let Some(seq) = newest_removed {
        raise_floor(conn, seq)?;
    }
    conn.execute("DELETE FROM _sync_outbox WHERE seq <= ?1", [through])
}

/// Records that seqs up to `seq` were used, so they are never handed out again.
fn raise_floor(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE _sync_outbox_floor SET seq = max(seq, ?1) WHERE id = 1")?
        .execute([seq])?;
    Ok(())
}
