//! The sizes that bound a transaction: the server's request-body limit (a larger batch is
//! uploaded in parts of that size) and its per-transaction limit (a larger local write fails
//! at commit). Learnt from the server's info on the first sync and kept in the settings store,
//! so that an offline device knows them too.

use crate::settings;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use sync_core::protocol::info::Limits as ServerLimits;

/// The per-transaction limit until the server's is known (the server's default).
pub const DEFAULT_MAX_TRANSACTION_BYTES: u64 = 512 * 1024 * 1024;
/// The body limit until the server's is known (the server's default).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

const BODY_KEY: &str = "server_max_body_bytes";
const TRANSACTION_KEY: &str = "server_max_transaction_bytes";

/// The limits in force, shared by the writer and the sync.
#[derive(Debug)]
pub(crate) struct Limits {
    configured: Option<u64>,
    max_body: AtomicU64,
    max_transaction: AtomicU64,
    /// The server's limits were asked for by this process.
    learnt: AtomicBool,
}

impl Limits {
    /// The limits remembered in the database, with the app's own cap.
    pub(crate) fn load(conn: &Connection, configured: Option<u64>) -> rusqlite::Result<Limits> {
        let get = |key: &str, default: u64| -> rusqlite::Result<u64> {
            Ok(settings::get(conn, key)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(default))
        };
        Ok(Limits {
            configured,
            max_body: AtomicU64::new(get(BODY_KEY, DEFAULT_MAX_BODY_BYTES)?),
            max_transaction: AtomicU64::new(get(TRANSACTION_KEY, DEFAULT_MAX_TRANSACTION_BYTES)?),
            learnt: AtomicBool::new(false),
        })
    }

    /// The largest changeset a local write may produce.
    pub(crate) fn transaction(&self) -> u64 {
        let server = self.max_transaction.load(Ordering::Relaxed);
        self.configured.map_or(server, |c| c.min(server))
    }

    /// The server's request-body limit.
    pub(crate) fn body(&self) -> u64 {
        self.max_body.load(Ordering::Relaxed)
    }

    /// Whether this process has asked the server yet.
    pub(crate) fn learnt(&self) -> bool {
        self.learnt.load(Ordering::Relaxed)
    }

    /// Takes the server's limits (and remembers them in the database).
    pub(crate) fn learn(
        &self,
        conn: &Connection,
        server: Option<ServerLimits>,
    ) -> rusqlite::Result<()> {
        self.learnt.store(true, Ordering::Relaxed);
        let Some(l) = server else {
            return Ok(());
        };
        self.max_body.store(l.max_body_bytes, Ordering::Relaxed);
        self.max_transaction
            .store(l.max_transaction_bytes, Ordering::Relaxed);
        settings::set(conn, BODY_KEY, Some(&l.max_body_bytes.to_string()))?;
        settings::set(
            conn,
            TRANSACTION_KEY,
            Some(&l.max_transaction_bytes.to_string()),
        )
    }
}
