//! [`CliError`]: everything that makes `sync-cli` exit with status 2 — or 3, for a write that
//! was made and kept while the sync after it failed ([`CliError::SyncAfterWrite`]).
//!
//! Each message names the file it concerns. Errors from sync-core already carry their cause in
//! their message (`invalid changeset at byte 17: …`), so `main` prints only the top-level
//! message, never the source chain (which would repeat it).

use std::io;
use std::path::PathBuf;
use sync_core::engine::apply::ApplyError;
use sync_core::engine::changeset::ChangesetError;
use sync_core::engine::decode::DecodeError;
use sync_core::engine::diff::DiffError;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading an input file (or standard input) failed.
    #[error("cannot read {what}: {source}")]
    Read {
        /// The file, or `standard input`.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing an output file (or standard output) failed. A broken pipe ends up here too;
    /// `main` exits quietly for it.
    #[error("cannot write {what}: {source}")]
    Write {
        /// The file, or `standard output`.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An input is not a valid changeset.
    #[error("{what}: {source}")]
    Decode {
        /// The file, or `standard input`.
        what: String,
        /// Where and why decoding failed (the message includes the byte offset).
        #[source]
        source: DecodeError,
    },
    /// `invert` or `concat` failed.
    #[error("{what}: {source}")]
    Changeset {
        /// The input(s) concerned.
        what: String,
        /// Why.
        #[source]
        source: ChangesetError,
    },
    /// `diff` failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// A database given to `apply` or `inspect --db` cannot be opened.
    #[error("cannot open database {}: {source}", path.display())]
    OpenDatabase {
        /// The path as given.
        path: PathBuf,
        /// Why (a missing file is reported here: databases are never created).
        #[source]
        source: rusqlite::Error,
    },
    /// `apply` did not complete; the database is unchanged.
    #[error("{}: {source}", path.display())]
    Apply {
        /// The target database.
        path: PathBuf,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// The client library failed on a local database (client commands).
    #[error("{}: {source}", path.display())]
    Client {
        /// The local database.
        path: PathBuf,
        /// Why; its kind says what to do (network: retry later; auth: new token; …). Boxed:
        /// the library's error is large and this enum travels on every `Result`.
        #[source]
        source: Box<sync_client::Error>,
    },
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// `exec --sync`: the write committed (it is pending, kept for the next sync) and then the
    /// sync failed. Exit status 3, so a script can tell it from "nothing was written".
    #[error("the write was kept and is pending; the sync after it failed: {0}")]
    SyncAfterWrite(Box<CliError>),
}

impl CliError {
    /// True when the error is a write to a pipe whose reader has gone away
    /// (`sync-cli inspect big.cs | head`): not a failure worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Write { source, .. } => source.kind() == io::ErrorKind::BrokenPipe,
            CliError::SyncAfterWrite(inner) => inner.is_broken_pipe(),
            _ => false,
        }
    }

    /// The exit status: 3 for a write kept while its sync failed, else 2.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::SyncAfterWrite(_) => 3,
            _ => 2,
        }
    }
}
