//! The client's side of the protocol over its writer connection, with no I/O beyond SQLite.
//! The client library adds the writer thread and HTTP around these functions, pumping
//! [`cycle`] over its transport; the in-process convergence tests pump the same cycle against
//! the server side.
//!
//! | module | its job |
//! |---|---|
//! | [`cycle`] | one sync, as a sans-IO state machine: what to send next, what an answer means |
//! | [`push`] | batching the outbox for a push, settling a push answer |
//! | [`integrate`] | pulled log entries: undo pending → apply remote → redo pending, one transaction |
//! | [`adopt`] | a local file's existing rows recorded as its first pending transactions, parents first |
//! | [`bootstrap`] | a new local copy from a snapshot; re-basing an existing one on a snapshot |
//! | [`redo`] | re-applying a pending transaction over a newer base, storing its captured effect |
//! | [`upgrade`] | a newer app schema applied in place: undo pending, run the server's migration scripts, rewrite and redo pending — one transaction |
//! | [`reshape`] | a pending transaction captured under an older schema, rewritten by column name for the newer one |
//! | [`rejected`] | the rejected queue: transactions that could not be kept, to list, show, redo or discard |
//! | [`conflicts`] | the one home of conflicts: local ones (kept changes that could not be) and those the server reported for this device's batches |
//! | [`report`] | what integrating or bootstrapping did, rows touched included |
//! | [`state`] | the cursor, the schema version and the batch in flight |
//! | [`error`] | [`ClientError`] |
//!
//! Local state = server state at the cursor + the pending changesets of the outbox. Every
//! function here keeps that equation true, which is what makes the inverse of the pending
//! changesets an exact undo. The subtle part is the redo: a pending changeset re-applied over a
//! newer base may meet conflicts, so its effect is no longer its stored bytes; the effect is
//! captured with a session and stored in its place.
//!
//! Internal tables (in the main database, never synced):
//!
//! | table | holds |
//! |---|---|
//! | `_sync_outbox` | pending changesets ([`crate::engine::outbox`]) |
//! | `_sync_client` | `cursor`, `schema_version` (raised by [`upgrade`]) |
//! | `_sync_inflight` | the batch being pushed: id, last outbox seq in it, the server's answer |
//! | `_sync_rejected` | rejected transactions, with their changesets, reasons and blocking rows |
//! | `_sync_local_conflicts` | pending changes that could not be kept, with their changesets |
//! | `_sync_server_conflicts` | conflicts the server reported for this device's batches |
//!
//! Calls must be serialised per database (one sync at a time); local writes may interleave.

pub mod adopt;
pub mod bootstrap;
pub mod conflicts;
pub mod cycle;
pub mod error;
pub mod integrate;
pub mod push;
pub mod redo;
pub mod rejected;
pub mod report;
pub mod reshape;
pub mod state;
pub mod upgrade;

pub use error::ClientError;

use crate::engine::outbox;
use rusqlite::Connection;

/// Creates the outbox and the client's tables if missing. Idempotent.
pub fn install(conn: &Connection) -> rusqlite::Result<()> {
    outbox::install(conn)?;
    conflicts::install(conn)?;
    rejected::install(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_client (
             key   TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_inflight (
             id           INTEGER PRIMARY KEY CHECK (id = 1),
             batch_id     TEXT    NOT NULL,
             through_seq  INTEGER NOT NULL,
             acked_seq    INTEGER,
             acked_status TEXT,
             answer       TEXT
         );
         INSERT OR IGNORE INTO _sync_client(key, value) VALUES ('cursor', 0), ('schema_version', 0);",
    )?;
    // Databases made before answers were kept whole.
    let has_answer: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('_sync_inflight') WHERE name = 'answer'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_answer {
        conn.execute_batch("ALTER TABLE _sync_inflight ADD COLUMN answer TEXT")?;
    }
    Ok(())
}
