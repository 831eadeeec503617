//! `GET /v1/databases/{db}/snapshot`: a consistent copy of the app tables as an SQLite file.
//! The headers say which seq and schema version it holds; so does a marker table inside it.

/// Header: the log seq a snapshot corresponds to.
pub const HEADER_SEQ: &str = "sync-seq";
/// Header of a snapshot's schema version ([`super::HEADER_SCHEMA_VERSION`]).
pub use super::HEADER_SCHEMA_VERSION;

/// Request header: the id of the caller's batch in flight, to be told where it stands in
/// the snapshot's history ([`HEADER_BATCH_SEQ`]).
pub use super::push::HEADER_BATCH_ID;
/// Answer header: the seq at which the batch named by [`HEADER_BATCH_ID`] was logged in this
/// database's history; absent when this history has no such batch of the caller's device.
pub const HEADER_BATCH_SEQ: &str = "sync-batch-seq";

/// Media type of a snapshot: an SQLite database file.
pub const MEDIA_TYPE: &str = "application/vnd.sqlite3";

/// Name of the table inside a snapshot file that records what it is: rows `('seq', N)` and
/// `('schema_version', N)`, the same values as the headers.
pub const META_TABLE: &str = "_sync_snapshot";
