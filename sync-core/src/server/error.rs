//! [`ServerError`]: what the server-side steps fail with. Each variant maps to one wire code
//! ([`ServerError::to_body`]); the server's faults show no details on the wire.

use crate::engine::apply::ApplyError;
use crate::engine::decode::DecodeError;
use crate::engine::schema::SchemaError;
use crate::protocol::error::{ErrorBody, ErrorCode};

/// Errors of the server-side steps. Each maps to one wire code ([`ServerError::to_body`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The client's schema version is not the database's.
    #[error("schema version mismatch: the database is at version {server}, the client at {client}")]
    SchemaMismatch {
        /// The database's version.
        server: u32,
        /// The client's version.
        client: u32,
    },
    /// The body is not a valid changeset.
    #[error(transparent)]
    InvalidChangeset(#[from] DecodeError),
    /// The body is not a valid batch.
    #[error(transparent)]
    InvalidBatch(#[from] crate::protocol::batch::BatchError),
    /// The changeset does not fit the schema.
    #[error(transparent)]
    ChangesetSchema(#[from] SchemaError),
    /// `since` is older than the retained log.
    #[error(
        "cursor {since} is older than the retained log (oldest {oldest}); bootstrap from a snapshot"
    )]
    CursorTooOld {
        /// The requested cursor.
        since: i64,
        /// Oldest cursor that can still pull.
        oldest: i64,
    },
    /// `since` is beyond the head.
    #[error(
        "cursor {since} is ahead of the server's head {head}; the server was restored from an older backup, bootstrap from a snapshot"
    )]
    CursorAhead {
        /// The requested cursor.
        since: i64,
        /// The newest seq.
        head: i64,
    },
    /// The client's position is in another lineage of the database.
    #[error(
        "this database's history was rewound (restored, or imported over): the client's lineage {client} is not the server's {server}; bootstrap from a snapshot"
    )]
    LineageMismatch {
        /// The client's lineage.
        client: crate::protocol::lineage::Hex64,
        /// The server's.
        server: crate::protocol::lineage::Hex64,
    },
    /// The log entry at the client's seq is not the one it integrated.
    #[error(
        "the log entry at seq {seq} is not the one this client integrated (the server's log lost its tail and grew again); bootstrap from a snapshot"
    )]
    ChainMismatch {
        /// The client's seq.
        seq: i64,
    },
    /// The database file was replaced by a restore while this request waited for it.
    #[error("the database was restored while this request waited; retry")]
    Retired,
    /// The log has no entry `seq` (compacted, or never written).
    #[error("the log has no entry {seq} (compacted, or never written)")]
    NoSuchEntry {
        /// The seq asked for.
        seq: i64,
    },
    /// A request parameter is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The apply failed inside SQLite or a handler panicked.
    #[error("apply failed: {0}")]
    Apply(ApplyError),
    /// A value in the changeset has a type its column cannot hold (SQLite's
    /// `SQLITE_MISMATCH`: TEXT for an `INTEGER PRIMARY KEY`); nothing was changed.
    #[error("a value in the changeset does not fit its column: {0}")]
    TypeMismatch(String),
    /// Reading or writing a spooled body, effect or page failed.
    #[error("spool I/O failed: {0}")]
    Io(std::io::Error),
    /// Something that cannot happen with a sound database did (an unreadable stored answer,
    /// say): the server's fault, answered as `500 internal`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    /// An [`ServerError::Internal`] with `what` for the log.
    pub fn internal(what: impl std::fmt::Display) -> ServerError {
        ServerError::Internal(what.to_string())
    }

    /// Sorts an apply's failure into the client's fault (bad input: 4xx) or the server's.
    pub(crate) fn from_apply(e: ApplyError) -> ServerError {
        match e {
            ApplyError::Decode(e) => e.into(),
            ApplyError::Schema(e) => e.into(),
            ApplyError::Sqlite(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::TypeMismatch) =>
            {
                ServerError::TypeMismatch(e.to_string())
            }
            ApplyError::Sqlite(e) => e.into(),
            ApplyError::Io(e) => ServerError::Io(e),
            other => ServerError::Apply(other),
        }
    }
}

impl ServerError {
    /// The wire error. Internal failures show no details.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            ServerError::SchemaMismatch { server, client } => {
                ErrorBody::new(ErrorCode::SchemaMismatch, self.to_string())
                    .with("server_version", *server)
                    .with("client_version", *client)
            }
            ServerError::InvalidChangeset(e) => {
                ErrorBody::new(ErrorCode::InvalidChangeset, self.to_string())
                    .with("offset", e.offset)
            }
            ServerError::InvalidBatch(e) => {
                ErrorBody::new(ErrorCode::InvalidBatch, self.to_string()).with("offset", e.offset)
            }
            ServerError::ChangesetSchema(SchemaError::Sqlite(_)) => {
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
            ServerError::ChangesetSchema(SchemaError::InternalTable { table }) => {
                ErrorBody::new(ErrorCode::InternalTable, self.to_string())
                    .with("table", table.as_str())
            }
            ServerError::ChangesetSchema(_) => {
                ErrorBody::new(ErrorCode::ChangesetSchemaMismatch, self.to_string())
            }
            ServerError::CursorTooOld { oldest, .. } => {
                ErrorBody::new(ErrorCode::CursorTooOld, self.to_string())
                    .with("oldest_seq", *oldest)
            }
            ServerError::CursorAhead { head, .. } => {
                ErrorBody::new(ErrorCode::CursorAhead, self.to_string()).with("head_seq", *head)
            }
            ServerError::LineageMismatch { server, .. } => {
                ErrorBody::new(ErrorCode::LineageMismatch, self.to_string())
                    .with("lineage", server.to_string())
            }
            ServerError::ChainMismatch { seq } => {
                ErrorBody::new(ErrorCode::ChainMismatch, self.to_string()).with("seq", *seq)
            }
            ServerError::Retired => ErrorBody::new(ErrorCode::Unavailable, self.to_string()),
            ServerError::BadRequest(m) => ErrorBody::new(ErrorCode::BadRequest, m.clone()),
            ServerError::NoSuchEntry { seq } => {
                ErrorBody::new(ErrorCode::NotFound, self.to_string()).with("seq", *seq)
            }
            ServerError::TypeMismatch(_) => {
                ErrorBody::new(ErrorCode::TypeMismatch, self.to_string())
            }
            ServerError::Sqlite(_)
            | ServerError::Apply(_)
            | ServerError::Io(_)
            | ServerError::Internal(_) => ErrorBody::new(ErrorCode::Internal, "internal error"),
        }
    }
}
