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

use crate::engine::blob;
use crate::engine::changeset::Changeset;
use crate::engine::spool::Source;
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

/// Entries up to this size are read into memory with the outbox; larger ones stay in the
/// database and are read in pieces ([`read_at`], [`copy`]) — a transaction of any size never
/// has to fit in memory. ([`set_load_max`] changes it, for tests that want small
/// transactions to take the large path.)
pub const LOAD_MAX: u64 = 4 << 20;

thread_local! {
    static LOAD_LIMIT: std::cell::Cell<u64> = const { std::cell::Cell::new(LOAD_MAX) };
}

/// Sets the size above which entries are not read into memory, for outbox reads on the
/// calling thread (tests: the behaviour is the same either way, only the path differs).
#[doc(hidden)]
pub fn set_load_max(bytes: u64) {
    LOAD_LIMIT.with(|l| l.set(bytes));
}

fn load_max() -> i64 {
    LOAD_LIMIT.with(|l| l.get()).min(i64::MAX as u64) as i64
}

/// One pending transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox; never reused.
    pub seq: i64,
    /// The captured changeset — empty for a large entry (see [`OutboxEntry::is_large`]).
    pub changeset: Changeset,
    /// When it was captured (milliseconds since the Unix epoch).
    pub created_ms: i64,
    /// The changeset's size in bytes.
    pub len: u64,
    /// The changeset was too large to read into memory ([`LOAD_MAX`]).
    pub large: bool,
}

impl OutboxEntry {
    /// True when the changeset is larger than [`LOAD_MAX`] and was not read into memory.
    pub fn is_large(&self) -> bool {
        self.large
    }
}

const CELL: &str = "changeset";

/// The cell of entry `seq`'s changeset.
pub fn cell(seq: i64) -> blob::Cell<'static> {
    blob::Cell {
        table: TABLE,
        column: CELL,
        rowid: seq,
    }
}

/// Appends a changeset and returns its `seq`. Call inside the write transaction.
pub fn push(conn: &Connection, changeset: &[u8], created_ms: i64) -> rusqlite::Result<i64> {
    push_source(conn, Source::Bytes(changeset), created_ms)
}

/// [`push`] from a [`Source`]: a changeset in a file is written through blob I/O, never
/// held in memory.
pub fn push_source(
    conn: &Connection,
    changeset: Source<'_>,
    created_ms: i64,
) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _sync_outbox (seq, created_ms, changeset) VALUES (
             max(coalesce((SELECT max(seq) FROM _sync_outbox), 0),
                 (SELECT seq FROM _sync_outbox_floor WHERE id = 1)) + 1,
             ?2, ?1)",
    )?;
    match changeset.as_bytes() {
        Some(bytes) => stmt.execute(params![bytes, created_ms])?,
        None => stmt.execute(params![
            rusqlite::blob::ZeroBlob(zeroblob_len(changeset)?),
            created_ms
        ])?,
    };
    let seq = conn.last_insert_rowid();
    if changeset.as_bytes().is_none() {
        blob::fill(conn, cell(seq), changeset).map_err(to_sqlite)?;
    }
    Ok(seq)
}

fn zeroblob_len(source: Source<'_>) -> rusqlite::Result<u64> {
    if source.len() > i32::MAX as u64 {
        return Err(rusqlite::Error::ToSqlConversionFailure(
            format!(
                "a changeset of {} bytes is larger than SQLite's blobs",
                source.len()
            )
            .into(),
        ));
    }
    Ok(source.len())
}

fn to_sqlite(e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// All entries, oldest first.
pub fn entries(conn: &Connection) -> rusqlite::Result<Vec<OutboxEntry>> {
    entries_after(conn, i64::MIN, usize::MAX)
}

/// Up to `limit` entries with `seq > after`, oldest first. A large entry's changeset is not
/// read (see [`OutboxEntry::is_large`]).
pub fn entries_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, CASE WHEN length(changeset) <= ?3 THEN changeset END, created_ms,
                length(changeset)
         FROM _sync_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit, load_max()], row)?;
    rows.collect()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let changeset: Option<Vec<u8>> = r.get(1)?;
    Ok(OutboxEntry {
        seq: r.get(0)?,
        large: changeset.is_none(),
        changeset: Changeset::from_bytes(changeset.unwrap_or_default()),
        created_ms: r.get(2)?,
        len: r.get::<_, i64>(3)? as u64,
    })
}

/// Copies an entry's whole changeset to `out` (a spool, to apply or push a large one).
pub fn copy(conn: &Connection, seq: i64, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    blob::copy(conn, cell(seq), out)
}

/// A large entry's changeset copied out into a spool in `scratch` (in memory without one),
/// to be applied or inverted from there; `None` for an entry already in memory.
pub fn spool_large(
    conn: &Connection,
    entry: &OutboxEntry,
    scratch: Option<&std::path::Path>,
) -> std::io::Result<Option<crate::engine::spool::Spooled>> {
    if !entry.is_large() {
        return Ok(None);
    }
    let mut spool = match scratch {
        Some(dir) => crate::engine::spool::Spool::new(dir, crate::engine::spool::DEFAULT_THRESHOLD),
        None => crate::engine::spool::Spool::in_memory(),
    };
    copy(conn, entry.seq, &mut spool)?;
    Ok(Some(spool.finish()?))
}

/// Reads bytes `offset..offset + buf.len()` of an entry's changeset.
pub fn read_at(conn: &Connection, seq: i64, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    blob::read_at(conn, cell(seq), offset, buf)
}

/// One entry by `seq`.
pub fn get(conn: &Connection, seq: i64) -> rusqlite::Result<Option<OutboxEntry>> {
    conn.query_row(
        "SELECT seq, CASE WHEN length(changeset) <= ?2 THEN changeset END, created_ms,
                length(changeset)
         FROM _sync_outbox WHERE seq = ?1",
        params![seq, load_max()],
        row,
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
    replace_source(conn, seq, Source::Bytes(changeset.as_bytes()))
}

/// [`replace`] from a [`Source`] (a large effect, through blob I/O).
pub fn replace_source(conn: &Connection, seq: i64, changeset: Source<'_>) -> rusqlite::Result<()> {
    match changeset.as_bytes() {
        Some(bytes) => {
            conn.prepare_cached("UPDATE _sync_outbox SET changeset = ?2 WHERE seq = ?1")?
                .execute(params![seq, bytes])?;
        }
        None => {
            conn.prepare_cached("UPDATE _sync_outbox SET changeset = ?2 WHERE seq = ?1")?
                .execute(params![
                    seq,
                    rusqlite::blob::ZeroBlob(zeroblob_len(changeset)?)
                ])?;
            blob::fill(conn, cell(seq), changeset).map_err(to_sqlite)?;
        }
    }
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
