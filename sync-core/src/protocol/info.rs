//! `GET /v1/databases/{db}` (metadata), `GET /v1/databases/{db}/events` (server-sent events
//! telling clients the log advanced) and the snapshot's headers.

use serde::{Deserialize, Serialize};

/// What a token may do with a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Pull, snapshot, events, push, lease rowid ranges.
    ReadWrite,
    /// Pull, snapshot, events.
    ReadOnly,
}

/// Metadata of a database, as seen by the calling token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Protocol version.
    pub v: u32,
    /// The database's name.
    pub database: String,
    /// Schema version (number of migrations applied).
    pub schema_version: u32,
    /// Newest log seq (0 when the log is empty).
    pub head_seq: i64,
    /// Oldest seq a client may pull *after*: a cursor below this must bootstrap.
    pub oldest_seq: i64,
    /// The caller's access.
    pub access: Access,
    /// The caller's device name (the origin its pushes are logged under).
    pub device: String,
}

/// SSE event name sent on `/events` whenever the head advances (and once on connect).
pub const HEAD_EVENT: &str = "head";

/// Data of a [`HEAD_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadEvent {
    /// Protocol version.
    pub v: u32,
    /// The newest seq.
    pub head_seq: i64,
}

/// Name of the table inside a snapshot file that records what it is: rows `('seq', N)` and
/// `('schema_version', N)`. The snapshot's `Sync-Seq` and `Sync-Schema-Version` headers carry
/// the same values.
pub const SNAPSHOT_META_TABLE: &str = "_sync_snapshot";
