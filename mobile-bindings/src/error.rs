//! The public error: one variant per [`sync_client::ErrorKind`] (so an app can catch each case
//! by its type) plus the two only the bindings can meet, mapped from the client's rich errors
//! in exactly one function ([`From<sync_client::Error>`]).

use sync_client::ErrorKind;

/// What went wrong, by what the app should do about it. Each variant carries the message
/// (`reason`), which names this API's own calls.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The server is unreachable, busy or failing; retry later. Local work continues offline.
    #[error("network: {reason}")]
    Network {
        /// Details.
        reason: String,
    },
    /// The token is missing, unknown, expired or revoked: get a new one.
    #[error("auth: {reason}")]
    Auth {
        /// Details.
        reason: String,
    },
    /// The token's grant on this database is read-only: local writes stay pending and
    /// cannot be pushed.
    #[error("read-only: {reason}")]
    ReadOnly {
        /// Details.
        reason: String,
    },
    /// The database does not exist on the server, or this token has no grant on it; or a
    /// rejected transaction asked for by id does not exist.
    #[error("not found: {reason}")]
    NotFound {
        /// Details.
        reason: String,
    },
    /// The local schema version is not the server's and the local copy could not be
    /// upgraded in place (a sync upgrades it automatically; a migration script failed here,
    /// or the server does not serve its scripts).
    #[error("schema mismatch: {reason}")]
    SchemaMismatch {
        /// Details.
        reason: String,
    },
    /// The local database cannot be synced as it is: a table without a primary key, a
    /// virtual table in the main database, or a change the server found malformed. (A
    /// schema change through `execute` in a database that syncs is `InvalidSql`: the schema
    /// comes from the server's migrations.)
    #[error("schema: {reason}")]
    Schema {
        /// Details.
        reason: String,
    },
    /// A rejected transaction would still be rejected if redone now (it stays in
    /// `rejected()`).
    #[error("rejected: {reason}")]
    Rejected {
        /// Details.
        reason: String,
    },
    /// The SQL failed: syntax, constraint, wrong parameters, or a write through `query`.
    #[error("invalid SQL: {reason}")]
    InvalidSql {
        /// Details.
        reason: String,
    },
    /// The local database is damaged, or inconsistent with the server in a way a sync could
    /// not repair.
    #[error("corruption: {reason}")]
    Corruption {
        /// Details.
        reason: String,
    },
    /// No leased ids are left; sync to lease more.
    #[error("rowids exhausted: {reason}")]
    RowidsExhausted {
        /// Details.
        reason: String,
    },
    /// One transaction changed more than one transaction may hold; nothing was written. Split
    /// it into smaller ones.
    #[error("too large: {reason}")]
    TooLarge {
        /// Details.
        reason: String,
    },
    /// The configuration is invalid (missing server settings, bad URL, unknown FTS table).
    #[error("configuration: {reason}")]
    Config {
        /// Details.
        reason: String,
    },
    /// A file could not be read or written (permissions, a full disk, a missing directory).
    #[error("I/O: {reason}")]
    Io {
        /// Details.
        reason: String,
    },
    /// The database was closed (`shutdown()`).
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
    /// A call this API cannot serve where it was made: the transaction object of
    /// `transaction()` used after its body returned, or a `SyncDatabase` call made from inside
    /// a transaction body (use the transaction object there).
    #[error("invalid use: {reason}")]
    InvalidUse {
        /// Details.
        reason: String,
    },
    /// The app's own callback (a transaction body) failed with an exception that is not a
    /// `SyncError`; the transaction was rolled back.
    #[error("callback failed: {reason}")]
    Callback {
        /// The exception, as the foreign language printed it.
        reason: String,
    },
    /// A bug, an unexpected server answer, or a panic.
    #[error("internal: {reason}")]
    Internal {
        /// Details.
        reason: String,
    },
}

/// Hints in the client's messages that name its Rust API, and what they say here instead.
const HINTS: &[(&str, &str)] = &[
    (
        "write through write()",
        "write through execute(), execute_batch() or transaction()",
    ),
    (
        "(status lists them; redo or discard each)",
        "(rejected() lists them; redo_rejected() or discard_rejected() each)",
    ),
    ("the next sync or `upgrade`", "the next sync or upgrade()"),
];

/// The client's message with its hints in this API's words.
fn in_binding_terms(message: String) -> String {
    HINTS.iter().fold(message, |m, (rust, binding)| {
        if m.contains(rust) {
            m.replace(rust, binding)
        } else {
            m
        }
    })
}

impl From<sync_client::Error> for SyncError {
    fn from(e: sync_client::Error) -> Self {
        let reason = in_binding_terms(e.to_string());
        match e.kind() {
            ErrorKind::Network => SyncError::Network { reason },
            ErrorKind::Auth => SyncError::Auth { reason },
            ErrorKind::ReadOnly => SyncError::ReadOnly { reason },
            ErrorKind::NotFound => SyncError::NotFound { reason },
            ErrorKind::SchemaMismatch => SyncError::SchemaMismatch { reason },
            ErrorKind::Schema => SyncError::Schema { reason },
            ErrorKind::Rejected => SyncError::Rejected { reason },
            ErrorKind::InvalidSql => SyncError::InvalidSql { reason },
            ErrorKind::Corruption => SyncError::Corruption { reason },
            ErrorKind::RowidsExhausted => SyncError::RowidsExhausted { reason },
            ErrorKind::TooLarge => SyncError::TooLarge { reason },
            ErrorKind::Config => SyncError::Config { reason },
            ErrorKind::Io => SyncError::Io { reason },
            ErrorKind::Closed => SyncError::Closed,
            ErrorKind::InUse => SyncError::InUse { reason },
            ErrorKind::WrongKey => SyncError::WrongKey { reason },
            ErrorKind::Internal => SyncError::Internal { reason },
            // A kind added to the client later: still an error, never a panic.
            _ => SyncError::Internal { reason },
        }
    }
}

impl From<sync_client::rusqlite::Error> for SyncError {
    fn from(e: sync_client::rusqlite::Error) -> Self {
        SyncError::from(sync_client::Error::from(e))
    }
}

/// A foreign callback that threw something other than a `SyncError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for SyncError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SyncError::Callback { reason: e.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_kind_has_its_own_variant() {
        let kinds = [
            ErrorKind::Network,
            ErrorKind::Auth,
            ErrorKind::ReadOnly,
            ErrorKind::NotFound,
            ErrorKind::SchemaMismatch,
            ErrorKind::Schema,
            ErrorKind::Rejected,
            ErrorKind::InvalidSql,
            ErrorKind::Corruption,
            ErrorKind::RowidsExhausted,
            ErrorKind::TooLarge,
            ErrorKind::Config,
            ErrorKind::Io,
            ErrorKind::Closed,
            ErrorKind::InUse,
            ErrorKind::Internal,
        ];
        let names: std::collections::HashSet<String> = kinds
            .iter()
            .map(|k| {
                let e = SyncError::from(sync_client::Error::new(*k, "x"));
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names.len(), kinds.len(), "{names:?}");
    }

    #[test]
    fn hints_name_the_bindings_calls() {
        let e = sync_client::Error::new(
            ErrorKind::InvalidSql,
            "attempt to write a readonly database: reads use read-only connections; write \
             through write()",
        );
        let SyncError::InvalidSql { reason } = SyncError::from(e) else {
            panic!("not InvalidSql");
        };
        assert!(reason.contains("execute()"), "{reason}");
        assert!(!reason.contains("write()"), "{reason}");
    }
}
