//! [`StoreError`]: what can go wrong talking to the PostgreSQL store or replaying from it.

/// An error of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL could not be reached, or a statement failed (connection lost, timeout, a
    /// restart in progress). Nothing was acknowledged: the request can be retried.
    #[error("PostgreSQL store unavailable: {0}")]
    Unavailable(String),
    /// A write kept losing the race for the next version to writers on other nodes.
    #[error("file {file}: still behind other nodes after {attempts} attempts")]
    Contended {
        /// The replicated file (0: the catalog, else a database id).
        file: i64,
        /// Attempts made.
        attempts: u32,
    },
    /// The local copy could not follow the store (SQLite failed, or a frame did not apply).
    #[error("file {file}: local copy: {source}")]
    Local {
        /// The replicated file.
        file: i64,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The store holds something this node cannot use (a newer schema, a gap in a history).
    #[error("PostgreSQL store: {0}")]
    Invalid(String),
    /// A file under the data directory (an image being staged).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn pg(e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}
