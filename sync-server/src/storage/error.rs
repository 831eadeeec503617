//! [`StorageError`]: opening or using database files.

use crate::migrations::MigrationError;
use std::path::PathBuf;
use sync_core::server::ServerError;

/// Errors opening or using database files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite failed on a database file.
    #[error("database {id}: {source}")]
    Sqlite {
        /// Internal id.
        id: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory's key does not open the database file (wrong, missing, or given
    /// for a plain file).
    #[error("database {id}: {source}")]
    Key {
        /// Internal id.
        id: i64,
        /// Why.
        #[source]
        source: sync_core::engine::cipher::CipherError,
    },
    /// The database could not be brought to the current schema.
    #[error("database {id}: {source}")]
    Migration {
        /// Internal id.
        id: i64,
        /// Why.
        #[source]
        source: MigrationError,
    },
    /// A snapshot could not be written.
    #[error("database {id}: snapshot failed: {source}")]
    Snapshot {
        /// Internal id.
        id: i64,
        /// Why.
        #[source]
        source: ServerError,
    },
    /// The PostgreSQL store (`--store`) failed or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
