//! `GET /v1/databases/{db}/snapshot`: a consistent copy of the app tables as an SQLite file.
//! The headers say which seq and schema version it holds; so does a marker table inside it.

/// Header: the log seq a snapshot corresponds to.
pub const HEADER_SEQ: &str = "sync-seq";
/// Header of a snapshot's schema version ([`super::HEADER_SCHEMA_VERSION`]).
pub use super::HEADER_SCHEMA_VERSION;

/// Media type of a snapshot: an SQLite database file.
pub const MEDIA_TYPE: &str = "application/vnd.sqlite3";

/// Name of the table inside a snapshot file that records what it is: rows `('seq', N)` and
/// `('schema_version', N)`, the same values as the headers.
pub const META_TABLE: &str = "_sync_snapshot";
