//! [`ClientError`]: what the client-side steps fail with.

use crate::engine::apply::{ApplyError, Conflict};
use crate::engine::changeset::ChangesetError;
use crate::engine::schema::SchemaError;

/// Errors of the client-side steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Local state no longer equals server state + pending: an undo or a pulled entry did not
    /// apply cleanly. This is a bug or an outside write; bootstrap from a snapshot to recover.
    #[error("local database diverged from the server during {step}: {} conflict(s), first: {}", conflicts.len(), conflicts.first().map(|c| format!("{} on {} {:?}", c.kind, c.table, c.pk)).unwrap_or_default())]
    Diverged {
        /// `undo` or `remote`.
        step: &'static str,
        /// The conflicts found.
        conflicts: Vec<Conflict>,
    },
    /// The synced state's content checksum is not the server's at the same seq: a row differs
    /// (changed behind the library's back, or a damaged file). Bootstrap to repair.
    #[error(
        "the synced state differs from the server's at seq {seq}: checksum {found}, the server's {expected}"
    )]
    ChecksumMismatch {
        /// The seq compared at.
        seq: i64,
        /// The server's checksum.
        expected: crate::engine::checksum::Checksum,
        /// The local one.
        found: crate::engine::checksum::Checksum,
    },
    /// Pulled entries do not continue from the cursor.
    #[error("pulled log entries start at seq {got} but the cursor is {cursor}")]
    Gap {
        /// The local cursor.
        cursor: i64,
        /// The first seq received.
        got: i64,
    },
    /// A pulled log entry is not something the server can have logged: its effect does not
    /// decode, or it writes one of the library's internal tables (`_sync_*`, `sqlite_*`, in
    /// any letter case). Nothing of it was applied; the server's log is damaged or hostile.
    #[error("pulled log entry {seq} is corrupt and was not applied: {what}")]
    CorruptEntry {
        /// The entry's seq.
        seq: i64,
        /// What is wrong with it.
        what: String,
    },
    /// A push answer for a batch that is not in flight.
    #[error("the push answer is for batch {batch_id}, which is not in flight")]
    UnknownBatch {
        /// The answered batch.
        batch_id: String,
    },
    /// A bootstrap was attempted while a pushed batch's fate is unknown; push it again first.
    #[error("batch {batch_id} was sent but not answered; push it again before bootstrapping")]
    InflightUnresolved {
        /// The batch.
        batch_id: String,
    },
    /// No rejected transaction has this id.
    #[error("there is no rejected transaction {id}")]
    NoSuchRejected {
        /// The id asked for.
        id: i64,
    },
    /// Redoing a rejected transaction over the current state would still be rejected; it
    /// stays in the queue and nothing changed.
    #[error("rejected transaction {id} still cannot be applied ({reason}); it stays in the queue")]
    StillRejected {
        /// Its id.
        id: i64,
        /// Why.
        reason: super::rejected::RejectedReason,
    },
    /// A write could not be recorded (a transaction was already open on the connection).
    #[error("could not record the write: {0}")]
    Capture(String),
    /// The local copy could not be upgraded to the server's schema version (a script failed
    /// or was refused, or the server's list of scripts is unusable); nothing changed.
    #[error("cannot upgrade the local copy from schema version {from}: {what}")]
    Upgrade {
        /// The local version.
        from: u32,
        /// What went wrong.
        what: String,
    },
    /// The snapshot file is not usable.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// The local schema does not match the snapshot's or a changeset's.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Changeset operation failed.
    #[error(transparent)]
    Changeset(#[from] ChangesetError),
    /// An apply failed in SQLite.
    #[error(transparent)]
    Apply(ApplyError),
    /// SQLite failed.
    #[error("local database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A scratch file (a large transaction or effect on its way) could not be written or
    /// read.
    #[error("scratch file I/O failed: {0}")]
    Io(std::io::Error),
}

impl From<ApplyError> for ClientError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Schema(s) => ClientError::Schema(s),
            ApplyError::Sqlite(s) => ClientError::Sqlite(s),
            other => ClientError::Apply(other),
        }
    }
}

impl From<crate::engine::checksum::ChecksumError> for ClientError {
    fn from(e: crate::engine::checksum::ChecksumError) -> Self {
        use crate::engine::checksum::ChecksumError as E;
        match e {
            E::Sqlite(s) => ClientError::Sqlite(s),
            E::Schema(s) => ClientError::Schema(s),
            E::Io(e) => ClientError::Io(e),
            // A change that does not describe the rows it was just applied to: the local
            // state is not what the protocol says it is.
            E::Decode(_) | E::Mismatch(_) => ClientError::Diverged {
                step: "checksum",
                conflicts: Vec::new(),
            },
        }
    }
}
