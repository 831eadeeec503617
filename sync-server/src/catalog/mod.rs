//! The catalog: `catalog.db` in the data directory holds users, devices, token hashes,
//! databases (name → internal id) and grants. The admin CLI writes it; the server reads it.
//!
//! Both may run at once: the catalog is in WAL mode with a busy timeout, admin commands are
//! short transactions that take the write lock up front (`BEGIN IMMEDIATE`, so they wait for
//! each other instead of failing to upgrade a read lock), and the server only reads (the auth module says how it notices a
//! change immediately). Database files are named by the internal id, never by a client string;
//! ids come from `AUTOINCREMENT`, so a dropped database's id is never reused for another one.
//!
//! | module | its job |
//! |---|---|
//! | this one | opening and installing the catalog; users; names |
//! | `databases` | databases (name → internal id) and grants |
//! | `tokens` | device tokens (stored hashed), and what a token may do with a database |
//! | `imports` | the rows of a database being imported: an id reserved first, named once its file is in place |
//! | `error` | [`CatalogError`] |

mod databases;
mod error;
mod imports;
#[cfg(test)]
mod tests;
mod tokens;

pub use databases::{
    DatabaseRow, create_database, database_ids, grant, list_databases, replace_database,
    replace_with_reserved, revoke_grant,
};
pub use error::CatalogError;
pub use imports::{
    PLACEHOLDER_PREFIX, check_import, publish_reserved, remove_placeholders, reserve_database_id,
};
pub use tokens::{
    Authorization, Grant, IssuedToken, TokenRow, TokenSelector, authorize, issue_token,
    list_tokens, revoke_tokens, token_hash,
};

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;
use sync_core::engine::cipher::{self, CipherError, EncryptionKey};
use sync_core::protocol::info::Access;

/// File name of the catalog inside the data directory.
pub const CATALOG_FILE: &str = "catalog.db";

/// Version of the catalog's own schema (`PRAGMA user_version`).
pub const CATALOG_VERSION: i64 = 1;

/// Every token starts with this, so that a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "sst_";

/// Characters of a token kept in the clear (prefix included) to name it in lists and revoke it.
const SHOWN_CHARS: usize = TOKEN_PREFIX.len() + 8;

/// Checks a user or device name: the same rule as database names
/// ([`sync_core::protocol::valid_database_name`]).
pub fn valid_name(name: &str) -> bool {
    sync_core::protocol::valid_database_name(name)
}

fn check_name(what: &'static str, name: &str) -> Result<(), CatalogError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CatalogError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens (creating if needed) the catalog in `data_dir`, in WAL mode, and installs or upgrades
/// its tables. Creates `data_dir` if it is missing: for `serve`, which owns the directory.
pub fn open(data_dir: &Path) -> Result<Connection, CatalogError> {
    open_keyed(data_dir, None)
}

/// [`open`] with the data directory's encryption key (`None`: plain).
pub fn open_keyed(
    data_dir: &Path,
    key: Option<&EncryptionKey>,
) -> Result<Connection, CatalogError> {
    std::fs::create_dir_all(data_dir).map_err(|source| CatalogError::Io {
        path: data_dir.display().to_string(),
        source,
    })?;
    open_in(data_dir, key)
}

/// [`open`] for the admin commands: a data directory that does not exist is an error, never
/// created (a mistyped `--data` must not make an empty catalog and report success).
pub fn open_existing(data_dir: &Path) -> Result<Connection, CatalogError> {
    open_existing_keyed(data_dir, None)
}

/// [`open_existing`] with the data directory's encryption key (`None`: plain).
pub fn open_existing_keyed(
    data_dir: &Path,
    key: Option<&EncryptionKey>,
) -> Result<Connection, CatalogError> {
    if !data_dir.is_dir() {
        return Err(CatalogError::NoDataDir {
            path: data_dir.display().to_string(),
        });
    }
    open_in(data_dir, key)
}

fn open_in(data_dir: &Path, key: Option<&EncryptionKey>) -> Result<Connection, CatalogError> {
    // A wrong or missing key is told apart from a damaged file here, before any pragma.
    let conn = cipher::open(
        &data_dir.join(CATALOG_FILE),
        rusqlite::OpenFlags::default(),
        key,
    )
    .map_err(|e| match e {
        CipherError::Sqlite(e) => CatalogError::Sqlite(e),
        e => CatalogError::Key(e),
    })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    install(&conn)?;
    Ok(conn)
}

fn install(conn: &Connection) -> Result<(), CatalogError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CATALOG_VERSION {
        return Err(CatalogError::TooNew { found: version });
    }
    if version == CATALOG_VERSION {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS users (
             id         INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL UNIQUE,
             created_ms INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS devices (
             id         INTEGER PRIMARY KEY,
             user_id    INTEGER NOT NULL REFERENCES users(id),
             name       TEXT    NOT NULL UNIQUE,
             created_ms INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS tokens (
             hash       BLOB    PRIMARY KEY,
             shown      TEXT    NOT NULL,
             device_id  INTEGER NOT NULL REFERENCES devices(id),
             created_ms INTEGER NOT NULL,
             revoked_ms INTEGER
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS tokens_shown ON tokens(shown);
         CREATE TABLE IF NOT EXISTS databases (
             id         INTEGER PRIMARY KEY AUTOINCREMENT,
             name       TEXT    NOT NULL UNIQUE,
             owner_id   INTEGER NOT NULL REFERENCES users(id),
             created_ms INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS grants (
             database_id INTEGER NOT NULL REFERENCES databases(id),
             user_id     INTEGER NOT NULL REFERENCES users(id),
             access      TEXT    NOT NULL CHECK (access IN ('read-write', 'read-only')),
             PRIMARY KEY (database_id, user_id)
         ) WITHOUT ROWID;
         PRAGMA user_version = 1;
         COMMIT;",
    )?;
    Ok(())
}

/// True when the catalog has no user yet (a fresh data directory).
pub fn is_empty(conn: &Connection) -> Result<bool, CatalogError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
    Ok(n == 0)
}

fn user_id(conn: &Connection, name: &str) -> Result<i64, CatalogError> {
    conn.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| CatalogError::NotFound {
            what: "user",
            name: name.to_string(),
        })
}

/// The internal id of database `name`.
pub fn database_id(conn: &Connection, name: &str) -> Result<i64, CatalogError> {
    conn.query_row("SELECT id FROM databases WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| CatalogError::NotFound {
        what: "database",
        name: name.to_string(),
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Creates a user.
pub fn add_user(conn: &Connection, name: &str) -> Result<i64, CatalogError> {
    check_name("user", name)?;
    conn.execute(
        "INSERT INTO users(name, created_ms) VALUES (?1, ?2)",
        params![name, now_ms()],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            CatalogError::Exists {
                what: "user",
                name: name.to_string(),
            }
        } else {
            e.into()
        }
    })?;
    Ok(conn.last_insert_rowid())
}

/// An `access` column (`read-write` or `read-only`; the table's CHECK allows nothing else, and
/// anything else is an error, never a default).
fn access_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Access> {
    row.get::<_, String>(idx)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}
