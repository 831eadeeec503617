//! [`Status`]: where a local copy stands — what is pending, where its cursor is, what went
//! wrong last, the conflicts it has not shown yet and the transactions it could not keep.

use crate::error::Result;
use crate::settings;
use rusqlite::Connection;
use sync_core::client::conflicts::{
    LocalConflict, ServerConflict, local_conflicts, server_conflicts,
};
use sync_core::client::rejected::{self, Rejected};
use sync_core::client::state;

/// What `status()` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Last log seq integrated.
    pub cursor: i64,
    /// Schema version of the local database.
    pub schema_version: u32,
    /// Local transactions waiting to be pushed (one outbox entry each).
    pub pending_changesets: u64,
    /// Their total size in bytes.
    pub pending_bytes: u64,
    /// The batch sent and not yet settled, if any.
    pub inflight_batch: Option<String>,
    /// When the last sync succeeded (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// The last sync error, cleared by a successful sync.
    pub last_error: Option<String>,
    /// Changes inside kept pending transactions that could not be kept when they were
    /// re-applied over a newer server state (most recent last).
    pub local_conflicts: Vec<LocalConflict>,
    /// Transactions that could not be kept, whole: rejected by the server or by a rebase,
    /// waiting to be redone or discarded (oldest first).
    pub rejected: Vec<Rejected>,
    /// Conflicts the server reported for this device's own pushed batches, with the server's
    /// resolution (most recent last): a change of ours that lost, or a rowid collision.
    pub server_conflicts: Vec<ServerConflict>,
    /// Rows waiting to be indexed for search.
    pub fts_lag: u64,
    /// Leased rowids left (range strategy only).
    pub rowids_remaining: Option<i64>,
    /// The server this database syncs with, if configured.
    pub server: Option<String>,
    /// The database name on the server.
    pub database: Option<String>,
    /// Times the synced state was found to differ from the server's (a content checksum that
    /// did not match, a change that did not apply) and was repaired from a snapshot, pending
    /// transactions kept.
    pub repairs: u64,
    /// The content checksum of the synced state at the cursor (64 hex digits), when known.
    pub checksum: Option<String>,
}

/// Reads everything `status()` reports from the database (what only the client knows — the
/// FTS lag, leased rowids, the remote — is filled in by the caller).
pub(crate) fn read(conn: &Connection) -> Result<Status> {
    let (pending_changesets, pending_bytes) = sync_core::engine::outbox::stats(conn)?;
    Ok(Status {
        cursor: state::cursor(conn)?,
        schema_version: state::schema_version(conn)?,
        pending_changesets,
        pending_bytes,
        inflight_batch: state::inflight(conn)?.map(|f| f.batch_id),
        last_sync_ms: settings::get(conn, settings::LAST_SYNC)?.and_then(|v| v.parse().ok()),
        last_error: settings::get(conn, settings::LAST_ERROR)?,
        local_conflicts: local_conflicts(conn, 0)?,
        rejected: rejected::list(conn)?,
        server_conflicts: server_conflicts(conn)?,
        fts_lag: 0,
        rowids_remaining: None,
        server: None,
        database: None,
        repairs: state::repairs(conn)?.max(0) as u64,
        checksum: state::synced(conn)?.sum.map(|s| s.to_string()),
    })
}
