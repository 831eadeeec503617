//! # mobile-bindings
//!
//! The uniffi facade that iOS and Android apps (and Python) use: a small, stable surface over
//! [`sync_client::SyncClient`]. Values cross the boundary as uniffi records and enums, never
//! as JSON strings; errors are one small enum mapped in one place; no panic crosses the FFI.
//!
//! | module | its one job |
//! |---|---|
//! | [`database`] | [`SyncDatabase`]: open, execute, query, sync, status, search, ids, listener, close |
//! | [`credentials`] | [`CredentialsProvider`]: the app's own tokens (a foreign callback), `open_with_credentials` |
//! | [`rejected`] | the rejected queue: list, show, redo, discard |
//! | [`types`] | the records and enums that cross the boundary |
//! | [`error`] | [`SyncError`] and the one mapping from the client's errors |

pub mod credentials;
pub mod database;
pub mod error;
pub mod rejected;
pub mod types;

pub use credentials::{CredentialsError, CredentialsProvider};
pub use database::{ChangeListener, SyncDatabase};
pub use error::SyncError;
pub use types::*;

uniffi::setup_scaffolding!("session_sync");
