//! The engine: everything that works on changesets and one database, with no protocol and no
//! network. The protocol and the server and client steps are built on it; nothing here uses
//! them.
//!
//! | module | its one job |
//! |---|---|
//! | [`value`] | owned SQLite values, with a stable JSON form; SQLite's ordering |
//! | [`decode`] | a pure-Rust reader of the changeset format: `inspect`, `validate` (in memory or streaming), summaries, byte offsets in errors |
//! | [`encode`] | the writer of the changeset format (the inverse of `decode`), for tools and tests |
//! | [`changeset`] | [`changeset::Changeset`]: owned bytes; `invert`, `concat` through SQLite's changegroup |
//! | [`cipher`] | encryption at rest: the key every connection gets first; a wrong key told from a damaged file |
//! | [`cipher_copy`] | copies between encrypted and plain databases (the backup API refuses to): a plain copy in memory, a file into another |
//! | [`checksum`] | an order-independent checksum of the app tables' content, followed through changesets |
//! | [`conflict`] | the vocabulary: conflict kinds SQLite reports, resolutions a handler answers |
//! | [`policy`] | conflict policies: parse, resolve one conflict, check preconditions against a schema |
//! | [`apply`] | apply with policies and an [`apply::ApplyReport`] of every conflict; capture the effect |
//! | [`capture`] | run a write transaction under a fresh session and store its changeset in the outbox atomically |
//! | [`outbox`] | the outbox table in the main database |
//! | [`migration`] | an app-schema migration script run under the checks both sides apply (nothing internal touched) |
//! | [`savepoint`](mod@savepoint) | nested transactional functions that compose |
//! | [`diff`](mod@diff) | the changeset that turns one database file into another |
//! | [`schema`] | which tables a session can track; whether a changeset fits a database; names as SQLite judges them |
//! | [`schema_match`] | whether two databases have the same app schema, and each difference |
//! | [`spool`] | bytes in memory while small, in an unlinked temporary file once large |
//! | [`blob`] | large values in and out of SQLite in pieces (incremental blob I/O) |
//! | [`tx`] | the one transaction guard: writes begin `IMMEDIATE` |
//! | [`ffi`] | the only `unsafe`: `sqlite3changeset_apply_v2` and the conflict accessors rusqlite lacks, SQLite's authorizer |

pub mod apply;
pub mod blob;
pub mod capture;
pub mod changeset;
pub mod checksum;
pub mod cipher;
pub mod cipher_copy;
pub mod conflict;
pub mod decode;
pub mod diff;
pub mod encode;
pub mod ffi;
pub mod migration;
pub mod outbox;
pub mod policy;
pub mod savepoint;
pub mod schema;
pub mod schema_match;
pub mod spool;
pub mod tx;
pub mod value;
