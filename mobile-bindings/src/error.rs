//! The public error: a few actionable variants, mapped from the client's rich errors in
//! exactly one function ([`From<sync_client::Error>`]).

use sync_client::ErrorKind;

/// What went wrong, by what the app should do about it.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The server is unreachable or failed; retry later. Local work continues offline.
    #[error("network: {reason}")]
    Network {
        /// Details.
        reason: String,
    },
    /// The token is missing, unknown or revoked, or may not write.
    #[error("auth: {reason}")]
    Auth {
        /// Details.
        reason: String,
    },
    /// The database does not exist on the server, or this token has no grant on it.
    #[error("not found: {reason}")]
    NotFound {
        /// Details.
        reason: String,
    },
    /// The local schema version is not the server's and the local copy could not be
    /// upgraded in place (a sync upgrades it automatically; a migration script failed here),
    /// or the local schema cannot be synced (a table without a primary key).
    #[error("schema mismatch: {reason}")]
    SchemaMismatch {
        /// Details.
        reason: String,
    },
    /// A rejected transaction would still be rejected if redone now (it stays in
    /// `status().rejected`).
    #[error("conflict: {reason}")]
    Conflict {
        /// Details.
        reason: String,
    },
    /// The SQL failed: syntax, constraint, wrong parameters, or a write through `query`.
    #[error("invalid SQL: {reason}")]
    InvalidSql {
        /// Details.
        reason: String,
    },
    /// No leased ids are left; sync to lease more.
    #[error("rowids exhausted: {reason}")]
    RowidsExhausted {
        /// Details.
        reason: String,
    },
    /// The configuration is invalid (missing server settings, bad URL, unknown FTS table).
    #[error("configuration: {reason}")]
    Config {
        /// Details.
        reason: String,
    },
    /// The database was closed.
    #[error("closed")]
    Closed,
    /// The database file is already open (another `SyncDatabase`, here or in another
    /// process); a file has one writer. Shut the other one down first.
    #[error("in use: {reason}")]
    InUse {
        /// Details.
        reason: String,
    },
    /// The encryption key does not open the database: a wrong key, none for an encrypted
    /// file, one for a plain file, or a library built without encryption. Nothing changed.
    #[error("wrong key: {reason}")]
    WrongKey {
        /// Details.
        reason: String,
    },
    /// Anything else: a bug, local corruption, an unexpected server answer, a panic.
    #[error("internal: {reason}")]
    Internal {
        /// Details.
        reason: String,
    },
}

impl From<sync_client::Error> for SyncError {
    fn from(e: sync_client::Error) -> Self {
        let reason = e.to_string();
        match e.kind() {
            ErrorKind::Network => SyncError::Network { reason },
            ErrorKind::Auth | ErrorKind::ReadOnly => SyncError::Auth { reason },
            ErrorKind::NotFound => SyncError::NotFound { reason },
            ErrorKind::SchemaMismatch | ErrorKind::Schema => SyncError::SchemaMismatch { reason },
            ErrorKind::Rejected => SyncError::Conflict { reason },
            ErrorKind::InvalidSql => SyncError::InvalidSql { reason },
            ErrorKind::RowidsExhausted => SyncError::RowidsExhausted { reason },
            ErrorKind::Config => SyncError::Config { reason },
            ErrorKind::Closed => SyncError::Closed,
            ErrorKind::InUse => SyncError::InUse { reason },
            ErrorKind::WrongKey => SyncError::WrongKey { reason },
            _ => SyncError::Internal { reason },
        }
    }
}

impl From<sync_client::rusqlite::Error> for SyncError {
    fn from(e: sync_client::rusqlite::Error) -> Self {
        SyncError::from(sync_client::Error::from(e))
    }
}
