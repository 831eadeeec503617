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
    /// The server's size limits (absent from servers older than uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// The sizes a server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The largest request body: a batch larger than this is uploaded in parts of at most
    /// this size ([`crate::protocol::upload`]).
    pub max_body_bytes: u64,
    /// The largest transaction (batch body) the server takes, uploaded or not: a client
    /// refuses to commit a larger write.
    pub max_transaction_bytes: u64,
}
