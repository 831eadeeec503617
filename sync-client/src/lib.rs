//! # sync-client
//!
//! The offline-first client: a local SQLite database that syncs with a session-sync server.
//! Desktop apps link this crate; mobile apps reach it through `mobile-bindings`.
//!
//! | module | its one job |
//! |---|---|
//! | [`client`] | [`SyncClient`]: open/init, `write`, `read`, `new_id`, `sync_now`, `status`, `search` |
//! | [`config`] | [`ClientConfig`], remote settings, rowid strategy, FTS tables, durability |
//! | [`error`] | [`Error`] with an actionable [`ErrorKind`] |
//! | [`engine`] | one sync cycle: push, pull + rebase, bootstrap, retries |
//! | [`transport`] | the [`Transport`] boundary and its HTTP implementation |
//! | `writer` | the writer thread: the only read-write connection |
//! | `lock` | one writer per database file: an OS lock held while the client is open |
//! | `readers` | the pool of read-only connections |
//! | `rowid` | random ids or server-leased ranges; the `sync_id()` SQL function |
//! | [`server_conflicts`] | conflicts the server reported for this device's own batches |
//! | `fts` | full-text index in a separate, never-synced database |
//! | `background` | the sync loop, server events and the indexer |
//! | `src/bin/sync-cli/` | `sync-cli`: changeset tools and a client at the terminal (`docs/cli.md`) |

#![warn(missing_docs)]

mod background;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
mod fts;
mod lock;
mod readers;
mod rowid;
pub mod server_conflicts;
pub mod transport;
mod writer;

pub use client::{ChangeListener, Status, SyncClient};
pub use config::{ClientConfig, Durability, FtsTable, RemoteConfig, RowidStrategy};
pub use engine::SyncReport;
pub use error::{Error, ErrorKind, Result};
pub use fts::SearchHit;
pub use server_conflicts::ServerConflict;
/// Nested transactional steps inside [`SyncClient::write`]: `savepoint(conn, |conn| …)` keeps
/// its writes on `Ok` and undoes only them on `Err` (re-exported from sync-core).
pub use sync_core::savepoint;
pub use transport::{EventStream, HttpTransport, Transport};
