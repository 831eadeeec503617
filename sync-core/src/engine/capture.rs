//! Capture: run a write transaction with a fresh session attached and store the changeset it
//! produced in the outbox, in the same transaction.
//!
//! Why a session per transaction: a long-lived session would also record changes applied from
//! the server (echo), and it reads an UPDATE's new values from the live row when the changeset
//! is generated, so a remote change to the same row would leak into the local changeset. A
//! session that lives exactly as long as one local transaction, and is read before COMMIT,
//! records that transaction and nothing else.

use crate::engine::changeset::Changeset;
use crate::engine::outbox;
use crate::engine::schema::{SchemaError, check_trackable, is_internal_table};
use crate::engine::tx::Tx;
use rusqlite::Connection;
use rusqlite::session::Session;
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

/// The result of a captured write.
#[derive(Debug)]
pub struct Captured<T> {
    /// What the closure returned.
    pub value: T,
    /// The outbox `seq` of the stored changeset; `None` when the write changed no tracked row.
    pub outbox_seq: Option<i64>,
    /// The captured changeset (empty when nothing tracked changed).
    pub changeset: Changeset,
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
    capture_with(conn, SchemaChanges::Refuse, f)
}

/// [`capture`], with the closure's schema changes treated as `schema_changes` says.
pub fn capture_with<T, E>(
    conn: &Connection,
    schema_changes: SchemaChanges,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<Captured<T>, CaptureError<E>> {
    if !conn.is_autocommit() {
        return Err(CaptureError::NestedTransaction);
    }
    let tx = Tx::begin(conn)?;
    let schema_before = schema_cookies(conn, schema_changes)?;
    let (value, bytes) = {
        let mut session = Session::new(conn)?;
        session.table_filter(Some(|table: &str| !is_internal_table(table)));
        session.attach::<&str>(None)?;
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
        let mut bytes = Vec::new();
        if !session.is_empty() {
            session.changeset_strm(&mut bytes)?;
        }
        (value, bytes)
    };
    let outbox_seq = if bytes.is_empty() {
        None
    } else {
        Some(outbox::push(conn, &bytes, now_ms())?)
    };
    tx.commit()?;
    Ok(Captured {
        value,
        outbox_seq,
        changeset: Changeset::from_bytes(bytes),
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
