//! The settings store: `_sync_remote`, a small key/value table in the database itself, so that
//! a local copy remembers which server it syncs with (and its FTS configuration, and the
//! outcome of its last sync) and later opens need no configuration.
//!
//! | key | value |
//! |---|---|
//! | `url`, `token`, `database` | the remote ([`RemoteConfig`]); no `token` when a credentials provider gives it |
//! | `fts` | the full-text search tables, JSON (a list of [`FtsTable`]) |
//! | `last_sync_ms` | when the last sync succeeded |
//! | `last_error` | the last sync's error, cleared by a successful one |
//! | `server_max_body_bytes`, `server_max_transaction_bytes` | the server's size limits, as last learnt (`limits`) |

use crate::config::{FtsTable, RemoteConfig};
use crate::error::{Error, ErrorKind, Result};
use rusqlite::{Connection, OptionalExtension, params};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS _sync_remote (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;";

/// The key of the FTS configuration.
const FTS_KEY: &str = "fts";
/// The key of the last sync's success time.
pub(crate) const LAST_SYNC: &str = "last_sync_ms";
/// The key of the last sync's error.
pub(crate) const LAST_ERROR: &str = "last_error";

/// Creates the table if missing.
/// This copy's device id (see [`device_id`]).
const DEVICE_ID: &str = "device_id";

/// A new device id: 128 random bits in hex.
pub(crate) fn new_device_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// This copy's device id, made and stored on first use: what a request names its device with
/// when the token (a JWT without a device claim) does not.
pub(crate) fn device_id(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(id) = get(conn, DEVICE_ID)? {
        return Ok(id);
    }
    let id = new_device_id();
    set(conn, DEVICE_ID, Some(&id))?;
    Ok(id)
}

/// Stores `id` as this copy's device id.
pub(crate) fn store_device_id(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    set(conn, DEVICE_ID, Some(id))
}

pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TABLE)
}

/// One value, if set.
pub(crate) fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM _sync_remote WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Sets (`Some`) or removes (`None`) one value.
pub(crate) fn set(conn: &Connection, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
    match value {
        Some(v) => conn
            .prepare_cached("INSERT OR REPLACE INTO _sync_remote(key, value) VALUES (?1, ?2)")?
            .execute(params![key, v])?,
        None => conn
            .prepare_cached("DELETE FROM _sync_remote WHERE key = ?1")?
            .execute([key])?,
    };
    Ok(())
}

/// The stored remote, when its URL and database are (the token is empty when none is
/// stored: a credentials provider gives it).
pub(crate) fn remote(conn: &Connection) -> rusqlite::Result<Option<RemoteConfig>> {
    Ok(
        match (
            get(conn, "url")?,
            get(conn, "token")?,
            get(conn, "database")?,
        ) {
            (Some(url), token, Some(database)) => Some(RemoteConfig {
                url,
                token: token.unwrap_or_default(),
                database,
            }),
            _ => None,
        },
    )
}

/// Stores the remote; its token only with `with_token` (none is kept when a credentials
/// provider gives the token: a stored one is removed).
pub(crate) fn store_remote(
    conn: &Connection,
    remote: &RemoteConfig,
    with_token: bool,
) -> rusqlite::Result<()> {
    set(conn, "url", Some(&remote.url))?;
    set(conn, "token", with_token.then_some(remote.token.as_str()))?;
    set(conn, "database", Some(&remote.database))
}

/// The stored FTS tables (none when search was never configured).
pub(crate) fn fts(conn: &Connection) -> Result<Vec<FtsTable>> {
    match get(conn, FTS_KEY)? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the stored full-text search configuration is unreadable: {e}"),
            )
        }),
    }
}

/// Stores the FTS tables.
pub(crate) fn store_fts(conn: &Connection, tables: &[FtsTable]) -> rusqlite::Result<()> {
    let json = serde_json::to_string(tables).expect("FTS tables serialize");
    set(conn, FTS_KEY, Some(&json))
}
