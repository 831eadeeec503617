//! Capture: run a write transaction with a fresh session attached and store the changeset it
//! produced in the outbox, in the same transaction.
//!
//! Why a session per transaction: a long-lived session would also record changes applied from
//! the server (echo), and it reads an UPDATE's new values from the live row when the changeset
//! is generated, so a remote change to the same row would leak into the local changeset. A
//! session that lives exactly as long as one local transaction, and is read before COMMIT,
//! records that transaction and nothing else.

use crate::engine::changeset::Changeset;
use crate::engine::ffi::session::Session;
use crate::engine::outbox;
use crate::engine::schema::{SchemaError, check_trackable, is_internal_table};
use crate::engine::spool::{self, Spool};
use crate::engine::tx::Tx;
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors from [`capture`]. `E` is the closure's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError<E> {
    /// The closure returned an error; the transaction was rolled back.
    #[error("the write was rolled back: {0}")]
    Write(E),
    /// `capture` was called while a transaction is already open on the connection; use
    /// [`crate::engine::savepoint()`] for nested writes.
    #[error("capture needs a connection with no open transaction (use savepoint() to nest)")]
    NestedTransaction,
    /// The closure ended the transaction itself (COMMIT/ROLLBACK); its writes may be outside
    /// the outbox. Never end the transaction inside a capture.
    #[error(
        "the write closure ended the transaction itself; use savepoint() instead of COMMIT/ROLLBACK"
    )]
    TransactionEnded,
    /// The closure changed the schema (CREATE/ALTER/DROP, TEMP objects included). Sessions do
    /// not record schema changes, so the change could never reach other devices; the schema
    /// is the server's (its migrations). The transaction was rolled back.
    #[error(
        "the write changed the database schema (CREATE/ALTER/DROP); schema changes come from \
         the server's migrations, not from captured writes — nothing was written"
    )]
    SchemaChanged,
    /// The closure changed the schema ([`SchemaChanges::AllowTrackable`]) and left a table a
    /// session cannot track; the transaction was rolled back.
    #[error("{0}; nothing was written")]
    Untrackable(SchemaError),
    /// The write's changeset is larger than [`CaptureOptions::max_bytes`]: it could never be
    /// synced, so it is refused when it commits rather than stranded later. The transaction
    /// was rolled back.
    #[error(
        "the write's changeset is {size} bytes, more than the {limit} bytes one transaction may \
         hold (the server's max_transaction_bytes); nothing was written — split it into smaller \
         transactions"
    )]
    TooLarge {
        /// The changeset's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The changeset could not be spooled to its scratch file (a full disk); the transaction
    /// was rolled back.
    #[error("could not spool the write's changeset: {0}")]
    Spool(std::io::Error),
    /// SQLite failed to begin, record or commit; the transaction was rolled back.
    #[error("could not record the write: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What [`capture_with`] does when the closure changes the schema of `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaChanges {
    /// Roll back with [`CaptureError::SchemaChanged`]: the database syncs, and a session
    /// records no DDL, so the change would exist on this device only.
    #[default]
    Refuse,
    /// Allow it (a database that does not sync creates its own tables, TEMP objects included)
    /// as long as every table stays trackable ([`check_trackable`]); otherwise roll back with
    /// [`CaptureError::Untrackable`].
    AllowTrackable,
}

/// How [`capture_with`] captures.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// What to do when the closure changes the schema.
    pub schema_changes: SchemaChanges,
    /// Refuse (roll back) a write whose changeset is larger ([`CaptureError::TooLarge`]).
    pub max_bytes: Option<u64>,
    /// Where a changeset larger than [`spool::DEFAULT_THRESHOLD`] waits, in an unlinked file,
    /// between the session and the outbox row (written through blob I/O): memory then holds
    /// no copy of it. `None` keeps it in memory.
    pub scratch: Option<PathBuf>,
}

/// The result of a captured write.
#[derive(Debug)]
pub struct Captured<T> {
    /// What the closure returned.
    pub value: T,
    /// The outbox `seq` of the stored changeset; `None` when the write changed no tracked row.
    pub outbox_seq: Option<i64>,
    /// The captured changeset when it stayed in memory (always without a scratch directory);
    /// empty when nothing tracked changed — or when it went to a scratch file: read it from
    /// the outbox then.
    pub changeset: Changeset,
    /// The changeset's size in bytes.
    pub len: u64,
}

/// Runs `f` in a write transaction (`BEGIN IMMEDIATE`) with a session attached to every table
/// of `main` (internal `_sync_*` and `sqlite_*` tables excluded). If `f` succeeds, the
/// session's changeset is appended to the outbox and the transaction commits: the rows and the
/// changeset are durable together or not at all. If `f` fails or panics, everything is rolled
/// back. The outbox table must exist ([`outbox::install`]). A closure that changes the schema
/// — of `main`, or TEMP objects, which would outlive the write on this connection — is rolled
/// back with [`CaptureError::SchemaChanged`] (see [`capture_with`] for local-only databases).
pub fn capture<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<Captured<T>, CaptureError<E>> {
    capture_with(conn, &CaptureOptions::default(), f)
}

/// [`capture`] under `options`: how schema changes are treated, a size limit, a scratch
/// directory for large changesets.
pub fn capture_with<T, E>(
    conn: &Connection,
    options: &CaptureOptions,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<Captured<T>, CaptureError<E>> {
    let schema_changes = options.schema_changes;
    if !conn.is_autocommit() {
        return Err(CaptureError::NestedTransaction);
    }
    let tx = Tx::begin(conn)?;
    let schema_before = schema_cookies(conn, schema_changes)?;
    let (value, bytes) = {
        let mut session = Session::new(conn)?;
        session.table_filter(Some(|table: &str| !is_internal_table(table)));
        session.attach(None)?;
        let value = f(conn).map_err(CaptureError::Write)?;
        if conn.is_autocommit() {
            drop(session);
            tx.forget();
            return Err(CaptureError::TransactionEnded);
        }
        if schema_cookies(conn, schema_changes)? != schema_before {
            match schema_changes {
                SchemaChanges::Refuse => return Err(CaptureError::SchemaChanged),
                SchemaChanges::AllowTrackable => {
                    check_trackable(conn).map_err(CaptureError::Untrackable)?
                }
            }
        }
        let mut spool = match &options.scratch {
            Some(dir) => Spool::new(dir, spool::DEFAULT_THRESHOLD),
            None => Spool::in_memory(),
        };
        if !session.is_empty() {
            session.changeset_strm(&mut spool)?;
        }
        (value, spool.finish().map_err(CaptureError::Spool)?)
    };
    let len = bytes.len();
    if let Some(limit) = options.max_bytes
        && len > limit
    {
        return Err(CaptureError::TooLarge { size: len, limit });
    }
    let outbox_seq = if bytes.is_empty() {
        None
    } else {
        Some(outbox::push_source(conn, bytes.source(), now_ms())?)
    };
    tx.commit()?;
    let changeset = match bytes.as_bytes() {
        // In memory: hand over the bytes themselves (no copy).
        Some(_) => Changeset::from_bytes(bytes.into_bytes().unwrap_or_default()),
        None => Changeset::default(),
    };
    Ok(Captured {
        value,
        outbox_seq,
        changeset,
        len,
    })
}

/// The schema cookies SQLite bumps on every schema change: of `main`, and — when schema
/// changes are refused — of `temp`, because a TEMP trigger made in a write would stay on the
/// writer connection and fire, uncaptured, during later remote applies.
fn schema_cookies(conn: &Connection, mode: SchemaChanges) -> rusqlite::Result<(i64, i64)> {
    let main = conn
        .prepare_cached("PRAGMA main.schema_version")?
        .query_row([], |r| r.get(0))?;
    let temp = match mode {
        SchemaChanges::Refuse => conn
            .prepare_cached("PRAGMA temp.schema_version")?
            .query_row([], |r| r.get(0))?,
        SchemaChanges::AllowTrackable => 0,
    };
    Ok((main, temp))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
