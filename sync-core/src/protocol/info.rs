//! `GET /v1/databases/{db}`: a database's metadata as the calling token sees it.

use crate::names::named_enum;
use serde::{Deserialize, Serialize};

named_enum! {
    /// What a token may do with a database.
    pub enum Access {
        /// Pull, snapshot, events, push, lease rowid ranges.
        ReadWrite = "read-write",
        /// Pull, snapshot, events.
        ReadOnly = "read-only",
    }
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
