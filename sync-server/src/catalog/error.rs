//! [`CatalogError`]: messages meant for the operator at a terminal.

use super::CATALOG_VERSION;

/// Errors of catalog operations. Messages are meant for the operator at a terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The PostgreSQL store (`--store`) failed or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A user, device or database name breaks the naming rule.
    #[error(
        "invalid {what} name {name:?}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
    )]
    InvalidName {
        /// `user`, `device` or `database`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The name is taken.
    #[error("{what} {name:?} already exists")]
    Exists {
        /// `user`, `device` or `database`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No such user, device, database or token.
    #[error("no {what} {name:?}")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A device name belongs to another user (device names are unique across users because
    /// they are the origin recorded in every database's log).
    #[error("device {device:?} belongs to user {owner:?}, not {user:?}")]
    DeviceOwnedByOther {
        /// The device.
        device: String,
        /// Its user.
        owner: String,
        /// The user asked for.
        user: String,
    },
    /// A token prefix matches several active tokens.
    #[error("{prefix:?} matches {count} active tokens; give more characters")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many matched.
        count: usize,
    },
    /// The catalog was written by a newer server.
    #[error("catalog version {found} is newer than this server's ({CATALOG_VERSION})")]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// An admin command was pointed at a data directory that does not exist.
    #[error(
        "no data directory at {path} (check --data / SYNC_DATA; `sync-server serve` creates it on first start)"
    )]
    NoDataDir {
        /// The directory.
        path: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory's encryption key does not open the catalog (wrong, missing, or
    /// given for a plain directory), or this build has no encryption.
    #[error("cannot open the data directory's catalog: {0}")]
    Key(sync_core::engine::cipher::CipherError),
    /// SQLite failed.
    #[error("catalog database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
