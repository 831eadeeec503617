//! # mobile-bindings
//!
//! The uniffi facade that iOS and Android apps (and Python) use: a small, stable surface over
//! [`sync_client::SyncClient`]. Parameters and rows are the foreign language's own values
//! ([`value`]); errors are one enum with a variant per kind, mapped in one place; no panic
//! crosses the FFI; every call that may wait has an awaitable twin.
//!
//! | module | its one job |
//! |---|---|
//! | [`database`] | [`SyncDatabase`]: open, execute, query, sync, status, search, ids, listener, close |
//! | [`credentials`] | [`CredentialsProvider`]: the app's own tokens (a foreign callback), `open_with_credentials` |
//! | [`transaction`] | `transaction(body)`: reads and writes in one local transaction |
//! | [`asynchronous`] | the `*_async` twins of the calls that may wait |
//! | [`rejected`] | the rejected queue: list, show, redo, discard |
//! | [`types`] | the records and enums that cross the boundary |
//! | [`value`] | SQL values as native values ([`Value`](sync_client::Value) over [`SqlValue`]) |
//! | [`watch`] | watched queries and the live status as callback interfaces ([`Subscription`](watch::Subscription)) |
//! | [`error`] | [`SyncError`] and the one mapping from the client's errors |
//! | `call` | how every call runs: panic guard, the in-body check, calls off the caller's thread |
//! | `sql` | running the app's statements and queries on a lent connection |

pub mod asynchronous;
mod call;
pub mod credentials;
pub mod database;
pub mod error;
pub mod rejected;
mod sql;
pub mod transaction;
pub mod types;
pub mod value;
pub mod watch;

pub use credentials::{CredentialsError, CredentialsProvider};
pub use database::{ChangeListener, SyncDatabase};
pub use error::SyncError;
pub use transaction::{Transaction, TransactionBody};
pub use types::*;
pub use value::SqlValue;
pub use watch::{LiveStatus, QueryWatcher, StatusWatcher, Subscription};

uniffi::setup_scaffolding!("session_sync");
