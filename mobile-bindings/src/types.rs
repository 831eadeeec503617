//! Records and enums that cross the FFI boundary. Counts and sizes are `i64`/`i32` (Kotlin
//! would show `u64` as `ULong`); values are [`Value`] (see [`crate::value`]).

use crate::value::SqlValue;
use sync_client::Value;

/// How new `INTEGER PRIMARY KEY` values are chosen.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
#[uniffi::export(Debug)]
pub enum RowidMode {
    /// Random positive 63-bit ids.
    Random,
    /// Ranges leased from the server.
    Ranges {
        /// Ids per lease.
        lease_size: i64,
        /// Lease more when fewer remain.
        refill_below: i64,
    },
}

/// A table indexed for full-text search.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct FtsIndex {
    /// The table (it needs an `INTEGER PRIMARY KEY`).
    pub table: String,
    /// Its text columns.
    pub columns: Vec<String>,
}

/// How to open a database.
#[derive(Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct DatabaseConfig {
    /// Server base URL, e.g. `https://sync.example.com`; `None` = use stored settings or stay
    /// local-only.
    #[uniffi(default = None)]
    pub server_url: Option<String>,
    /// Device token.
    #[uniffi(default = None)]
    pub token: Option<String>,
    /// Database name on the server.
    #[uniffi(default = None)]
    pub database: Option<String>,
    /// Rowid strategy; `None` = [`RowidMode::Random`].
    #[uniffi(default = None)]
    pub rowids: Option<RowidMode>,
    /// Full-text indexes.
    #[uniffi(default = [])]
    pub fts: Vec<FtsIndex>,
    /// Sync in the background (interval, local writes, server events).
    #[uniffi(default = false)]
    pub background_sync: bool,
    /// Background sync interval in milliseconds.
    #[uniffi(default = 30000)]
    pub sync_interval_ms: i64,
    /// With server settings and an existing plain SQLite file at the path (an app's database
    /// from before it synced): keep its rows and make them its first pending transactions
    /// (`SyncClient::adopt`; the server database must have the same schema and no rows).
    #[uniffi(default = false)]
    pub adopt_existing: bool,
    /// The database's encryption key (a library built with the `encryption` feature): 64
    /// hexadecimal digits are a raw 256-bit key, anything else a passphrase. Every file of
    /// the database is then encrypted. Keep it in the platform's keystore, never beside the
    /// file; a key that does not fit is `SyncError.WrongKey`.
    #[uniffi(default = None)]
    pub encryption_key: Option<String>,
}

impl std::fmt::Debug for DatabaseConfig {
    /// Everything but the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("server_url", &self.server_url)
            .field("database", &self.database)
            .field("rowids", &self.rowids)
            .field("fts", &self.fts)
            .field("background_sync", &self.background_sync)
            .field("sync_interval_ms", &self.sync_interval_ms)
            .field("adopt_existing", &self.adopt_existing)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| ".."),
            )
            .finish_non_exhaustive()
    }
}

/// One statement of a batch.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct Statement {
    /// SQL.
    pub sql: String,
    /// Positional parameters (`?1`, `?2`, …).
    #[uniffi(default = [])]
    pub params: Vec<Value>,
}

/// Rows from `query`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// What `sync_now` did.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct SyncReport {
    /// Batches the server processed.
    pub pushed_batches: i64,
    /// Local transactions moved to the rejected queue (see `SyncDatabase::rejected`).
    pub rejected_transactions: i64,
    /// Log entries applied.
    pub pulled_entries: i64,
    /// Re-based on a snapshot.
    pub bootstrapped: bool,
    /// The schema version the local copy was upgraded to (pending transactions kept), if it
    /// was.
    pub upgraded_to: Option<i32>,
    /// Local conflicts recorded.
    pub new_conflicts: i64,
    /// Cursor afterwards.
    pub cursor: i64,
    /// Tables changed by remote changes.
    pub changed_tables: Vec<String>,
}

impl From<sync_client::SyncReport> for SyncReport {
    fn from(r: sync_client::SyncReport) -> Self {
        SyncReport {
            pushed_batches: r.pushed_batches as i64,
            rejected_transactions: r.rejected_transactions as i64,
            pulled_entries: r.pulled_entries as i64,
            bootstrapped: r.bootstrapped,
            upgraded_to: r.upgraded_to.map(|v| v as i32),
            new_conflicts: r.new_conflicts as i64,
            cursor: r.cursor,
            changed_tables: r.changed_tables,
        }
    }
}

/// A change inside a kept local transaction that could not be kept when it was re-applied
/// over a newer server state. (A whole transaction that could not be kept is in
/// `SyncStatus::rejected`.)
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct ConflictInfo {
    /// Record id; ids only grow (see `SyncDatabase::clear_conflicts`).
    pub id: i64,
    /// `row_deleted_remotely` or `constraint` (`foreign_key` and `batch_rejected` only in
    /// records made before the rejected queue existed).
    pub kind: String,
    /// The table (empty when a whole batch was dropped).
    pub table: String,
    /// Key of the row.
    pub pk: Vec<Value>,
    /// Explanation.
    pub detail: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// A conflict the server met while applying one of this device's own pushed batches, and
/// how its policy resolved it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct ServerConflictInfo {
    /// Record id; ids only grow.
    pub id: i64,
    /// `DATA`, `NOTFOUND`, `CONFLICT`, `CONSTRAINT` or `FOREIGN_KEY`.
    pub kind: String,
    /// `replace` (this device's change won), `omit` (the server's row was kept) or `abort`
    /// (the batch was rejected; see the local conflicts for the dropped changes).
    pub resolution: String,
    /// The table (empty for `FOREIGN_KEY`).
    pub table: String,
    /// Key of the row.
    pub pk: Vec<Value>,
    /// The server's row the change met, when the server reported it.
    pub current: Option<Vec<Value>>,
    /// The pushed batch and its log seq on the server.
    pub batch_id: String,
    /// Log seq of the batch.
    pub seq: i64,
    /// When the answer was received (ms since the Unix epoch).
    pub at_ms: i64,
}

/// Where the database stands.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct SyncStatus {
    /// Last log seq applied.
    pub cursor: i64,
    /// Local changesets waiting to be pushed.
    pub pending_changesets: i64,
    /// Their size in bytes.
    pub pending_bytes: i64,
    /// Last successful sync (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// Local changes that could not be kept.
    pub conflicts: Vec<ConflictInfo>,
    /// What the server's policies did with this device's changes where they met others.
    pub server_conflicts: Vec<ServerConflictInfo>,
    /// Local transactions that could not be kept, whole: redo or discard each.
    pub rejected: Vec<RejectedInfo>,
    /// Rows waiting to be indexed for search.
    pub fts_lag: i64,
    /// Leased ids left (ranges only).
    pub rowids_remaining: Option<i64>,
    /// Times the synced state was found to differ from the server's and was re-based on a
    /// snapshot (pending transactions kept).
    pub repairs: i64,
    /// The synced state's content checksum at the cursor (64 hex digits), when known.
    pub checksum: Option<String>,
}

/// What `verify()` found: the local synced state against the server's at the same seq.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct Verification {
    /// The seq compared at (the local cursor).
    pub seq: i64,
    /// The local synced state's checksum, recomputed from the tables.
    pub local: String,
    /// The server's checksum at `seq`.
    pub server: String,
    /// Same history and same content.
    pub equal: bool,
    /// What differs, for people (empty when equal).
    pub difference: String,
}

impl From<sync_client::Verification> for Verification {
    fn from(v: sync_client::Verification) -> Self {
        Verification {
            seq: v.seq,
            local: v.local,
            server: v.server,
            equal: v.equal,
            difference: v.difference,
        }
    }
}

/// A local transaction that was rejected (by the server, or when re-applied over a newer
/// server state) and is kept until it is redone or discarded.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct RejectedInfo {
    /// Queue id (for `rejected_transaction`, `redo_rejected`, `discard_rejected`).
    pub id: i64,
    /// `policy` (a table with the reject policy had a conflict) or `foreign_key` (a row it
    /// refers to is gone).
    pub reason: String,
    /// `server` or `rebase`.
    pub by: String,
    /// Explanation.
    pub detail: String,
    /// When it was written (ms since the Unix epoch).
    pub created_ms: i64,
    /// When it was rejected.
    pub rejected_ms: i64,
    /// Row changes in it.
    pub changes: i64,
    /// The row that blocked it, when known: the last conflict met.
    pub blocking: Option<BlockingRow>,
}

/// The row that blocked a rejected transaction.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct BlockingRow {
    /// `DATA`, `NOTFOUND`, `CONFLICT`, `CONSTRAINT` or `FOREIGN_KEY`.
    pub kind: String,
    /// The table (empty for `FOREIGN_KEY`).
    pub table: String,
    /// Key of the row (empty for `FOREIGN_KEY`).
    pub pk: Vec<Value>,
    /// The row as it was, when reported.
    pub current: Option<Vec<Value>>,
}

/// One change of a rejected transaction.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct ChangeInfo {
    /// The table.
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// Key of the row.
    pub pk: Vec<Value>,
    /// The new values (INSERT, UPDATE: `None` for a column an UPDATE left alone). Tagged
    /// values here, so that a column set to NULL (`SqlValue.Null`) differs from one left alone.
    pub new: Option<Vec<Option<SqlValue>>>,
}

/// A named value.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct NamedValue {
    /// Column name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct SearchResult {
    /// Table.
    pub table: String,
    /// Row id.
    pub id: i64,
    /// FTS5 rank (lower is better).
    pub rank: f64,
    /// The indexed columns.
    pub columns: Vec<NamedValue>,
}
