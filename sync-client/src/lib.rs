//! # sync-client
//!
//! The offline-first client: a local SQLite database that syncs with a session-sync server.
//! Desktop apps link this crate; mobile apps reach it through `mobile-bindings`. An app needs
//! no other session-sync crate: every type the API hands out is re-exported here, and so is
//! `rusqlite` (the connection `write` and `read` give).
//!
//! | module | its one job |
//! |---|---|
//! | `client` | [`SyncClient`], the façade: `write`, `read`, `new_id`, `sync_now`, `status`, `search`, `close` |
//! | `open` | `SyncClient::init` (a new copy from a snapshot) and `SyncClient::open` |
//! | `adopt` | `SyncClient::adopt`: an existing file with data becomes a synced copy, its rows pending |
//! | [`probe`] | what a file is (plain SQLite or a synced copy), found out without changing it |
//! | `engine` | the pump: sync-core's sync cycle over the transport, with retries; what a sync tells when it ends |
//! | `background` | the sync loop, server events and the indexer — threads that never hold the client |
//! | `signal` | a wake-up flag with a timeout, for the background threads |
//! | `settings` | the settings store in the database: the remote, FTS tables, the last sync's outcome |
//! | `limits` | the server's size limits: part size for uploads, the per-transaction limit checked at commit |
//! | `watch` | a watched query: the tables it reads (found by SQLite), how its [`Rows`] are read |
//! | `live` | [`SyncStatus`]: a sync's phase and progress, what is pending; where the engine tells it |
//! | `notify` | the notifier thread: re-runs watched queries after commits, delivers status ([`Subscription`]) |
//! | `nonblocking` | feature `async`: `open_async`, `write_async`, `read_async`, `sync_now_async`…, watch and status as streams |
//! | `status` | [`Status`]: what is pending, the cursor, the last error, conflicts, rejected transactions |
//! | `rejected` | the rejected queue: `rejected`, `rejected_transaction`, `redo_rejected`, `discard_rejected` |
//! | [`config`] | [`ClientConfig`], remote settings, rowid strategy, FTS tables, durability |
//! | [`credentials`] | [`Credentials`]: a provider of bearer tokens, asked at first use and after a 401 |
//! | [`error`] | [`Error`] with an actionable [`ErrorKind`] |
//! | `http_answer` | the server's HTTP answers: failures, error envelopes, JSON bodies → [`Error`] |
//! | [`transport`] | the [`Transport`] boundary and its HTTP implementation |
//! | `writer` | the writer thread: the only read-write connection |
//! | `lock` | one writer per database file: an OS lock held while the client is open |
//! | `readers` | the pool of read-only connections |
//! | `read_only` | [`ReadOnlyClient`]: reads, status and search with no writer lock (another process may hold it) |
//! | `rowid` | random ids or server-leased ranges; the `sync_id()` SQL function |
//! | `fts` | full-text index in a separate, never-synced database |
//! | `snapshot_store` | a downloaded snapshot to disk: as it comes, or encrypted with the database's key |

#![warn(missing_docs)]

mod adopt;
mod background;
mod client;
pub mod config;
pub mod credentials;
mod engine;
pub mod error;
mod fts;
mod http_answer;
mod limits;
mod live;
mod lock;
#[cfg(feature = "async")]
mod nonblocking;
mod notify;
mod open;
pub mod probe;
mod read_only;
mod readers;
mod rejected;
mod rowid;
mod settings;
mod signal;
mod snapshot_store;
mod status;
pub mod transport;
mod verify;
mod watch;
mod writer;

/// docs/client.md, whose Rust blocks `cargo test` compiles as doctests (so the guide keeps
/// up with the API). Not part of the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/client.md")]
pub struct ClientGuide;

pub use adopt::ADOPT_TRANSACTION_BYTES;
pub use client::SyncClient;
pub use config::{ClientConfig, Durability, FtsTable, RemoteConfig, RowidStrategy};
pub use credentials::Credentials;
pub use engine::{ChangeListener, SyncReport};
pub use error::{Error, ErrorKind, Result};
pub use fts::SearchHit;
pub use live::{Progress, ProgressUnit, SyncPhase, SyncStatus};
#[cfg(feature = "async")]
pub use nonblocking::Latest;
pub use notify::Subscription;
pub use probe::{FileKind, file_kind};
pub use read_only::ReadOnlyClient;
pub use rejected::{Redone, Rejected, RejectedBy, RejectedReason};
pub use status::Status;
pub use transport::{EventStream, HttpTransport, Transport};
pub use verify::Verification;
pub use watch::Rows;

/// The SQLite binding the connections of [`SyncClient::write`] and [`SyncClient::read`] are.
pub use rusqlite;
/// The conflicts [`Status`] lists.
pub use sync_core::client::conflicts::{LocalConflict, LocalConflictKind, ServerConflict};
/// The key of an encrypted database ([`ClientConfig::encryption_key`]).
pub use sync_core::engine::cipher::EncryptionKey;
pub use sync_core::engine::conflict::{ConflictKind, Resolution};
/// What a conflict the server met is made of.
pub use sync_core::engine::decode::Op;
/// Nested transactional steps inside [`SyncClient::write`]: `savepoint(conn, |conn| …)` keeps
/// its writes on `Ok` and undoes only them on `Err`.
pub use sync_core::engine::savepoint::savepoint;
pub use sync_core::engine::value::Value;
pub use sync_core::protocol::conflicts::Conflict;
