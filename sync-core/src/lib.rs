//! # sync-core
//!
//! The changeset engine of session-sync: everything that works on SQLite changesets, with no
//! network and no async runtime. The server and the client add transport around it.
//!
//! | module | its one job |
//! |---|---|
//! | [`value`] | owned SQLite values, with a stable JSON form |
//! | [`decode`] | a pure-Rust reader of the changeset format: `inspect`, `validate`, summaries, byte offsets in errors |
//! | [`encode`] | the writer of the changeset format (the inverse of `decode`), for tools and tests |
//! | [`changeset`] | [`Changeset`]: owned bytes; `invert`, `concat` through SQLite's changegroup |
//! | [`apply`] | apply with conflict [`Policy`]s and an [`ApplyReport`] of every conflict |
//! | [`capture`] | run a write transaction under a fresh session and store its changeset in the outbox atomically |
//! | [`outbox`] | the outbox table in the main database |
//! | [`savepoint`](mod@savepoint) | nested transactional functions that compose |
//! | [`diff`](mod@diff) | the changeset that turns one database file into another |
//! | [`spool`] | bytes in memory while small, in an unlinked temporary file once large; read as a [`spool::Source`] |
//! | [`schema`] | which tables a session can track; whether a changeset fits a database |
//! | [`ffi`] | the only `unsafe`: `sqlite3changeset_apply_v2` and conflict accessors rusqlite lacks |

#![warn(missing_docs)]

pub mod apply;
pub mod capture;
pub mod changeset;
pub mod client;
pub mod decode;
pub mod diff;
pub mod encode;
pub mod ffi;
pub mod outbox;
pub mod protocol;
pub mod savepoint;
pub mod schema;
pub mod server;
pub mod spool;
mod tx;
pub mod value;

pub use apply::{
    ApplyError, ApplyOptions, ApplyReport, Conflict, ConflictKind, Policy, PolicySet, Resolution,
    apply, apply_cached, apply_captured,
};
pub use capture::{CaptureError, Captured, SchemaChanges, capture, capture_with};
pub use changeset::{Changeset, ChangesetError};
pub use decode::{Change, DecodeError, DecodeErrorKind, Op, Summary};
pub use diff::{DiffError, DiffOutput, diff};
pub use savepoint::savepoint;
pub use schema::SchemaError;
pub use value::Value;
