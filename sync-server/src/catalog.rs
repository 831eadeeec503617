//! The catalog: `catalog.db` in the data directory holds users, devices, token hashes,
//! databases (name → internal id) and grants. The admin CLI writes it; the server reads it.
//!
//! Both may run at once: the catalog is in WAL mode with a busy timeout, admin commands are
//! short transactions that take the write lock up front (`BEGIN IMMEDIATE`, so they wait for
//! each other instead of failing to upgrade a read lock), and the server only reads (see [`crate::auth`] for how it notices a
//! change immediately). Database files are named by the internal id, never by a client string;
//! ids come from `AUTOINCREMENT`, so a dropped database's id is never reused for another one.

use base64::Engine;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use sync_core::protocol::info::Access;

/// File name of the catalog inside the data directory.
pub const CATALOG_FILE: &str = "catalog.db";

/// Version of the catalog's own schema (`PRAGMA user_version`).
pub const CATALOG_VERSION: i64 = 1;

/// Every token starts with this, so that a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "sst_";

/// Characters of a token kept in the clear (prefix included) to name it in lists and revoke it.
const SHOWN_CHARS: usize = TOKEN_PREFIX.len() + 8;

/// Errors of catalog operations. Messages are meant for the operator at a terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A user, device or database name breaks the naming rule.
    #[error(
        "invalid {what} name {name:?}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
    )]
    InvalidName {
        /// `user`, `device` or `database`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The name is taken.
    #[error("{what} {name:?} already exists")]
    Exists {
        /// `user`, `device` or `database`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No such user, device, database or token.
    #[error("no {what} {name:?}")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A device name belongs to another user (device names are unique across users because
    /// they are the origin recorded in every database's log).
    #[error("device {device:?} belongs to user {owner:?}, not {user:?}")]
    DeviceOwnedByOther {
        /// The device.
        device: String,
        /// Its user.
        owner: String,
        /// The user asked for.
        user: String,
    },
    /// A token prefix matches several active tokens.
    #[error("{prefix:?} matches {count} active tokens; give more characters")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many matched.
        count: usize,
    },
    /// The catalog was written by a newer server.
    #[error("catalog version {found} is newer than this server's ({CATALOG_VERSION})")]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// An admin command was pointed at a data directory that does not exist.
    #[error(
        "no data directory at {path} (check --data / SYNC_DATA; `sync-server serve` creates it on first start)"
    )]
    NoDataDir {
        /// The directory.
        path: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("catalog database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

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
    std::fs::create_dir_all(data_dir).map_err(|source| CatalogError::Io {
        path: data_dir.display().to_string(),
        source,
    })?;
    open_in(data_dir)
}

/// [`open`] for the admin commands: a data directory that does not exist is an error, never
/// created (a mistyped `--data` must not make an empty catalog and report success).
pub fn open_existing(data_dir: &Path) -> Result<Connection, CatalogError> {
    if !data_dir.is_dir() {
        return Err(CatalogError::NoDataDir {
            path: data_dir.display().to_string(),
        });
    }
    open_in(data_dir)
}

fn open_in(data_dir: &Path) -> Result<Connection, CatalogError> {
    let conn = Connection::open(data_dir.join(CATALOG_FILE))?;
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

fn database_id(conn: &Connection, name: &str) -> Result<i64, CatalogError> {
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

/// Creates a database owned by `owner` (who gets a read-write grant) and returns its internal
/// id. The file itself is created by the server when the database is first used.
pub fn create_database(conn: &Connection, name: &str, owner: &str) -> Result<i64, CatalogError> {
    check_name("database", name)?;
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let owner_id = user_id(&tx, owner)?;
    tx.execute(
        "INSERT INTO databases(name, owner_id, created_ms) VALUES (?1, ?2, ?3)",
        params![name, owner_id, now_ms()],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            CatalogError::Exists {
                what: "database",
                name: name.to_string(),
            }
        } else {
            e.into()
        }
    })?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO grants(database_id, user_id, access) VALUES (?1, ?2, 'read-write')",
        params![id, owner_id],
    )?;
    tx.commit()?;
    Ok(id)
}

fn access_str(access: Access) -> &'static str {
    match access {
        Access::ReadWrite => "read-write",
        Access::ReadOnly => "read-only",
    }
}

fn parse_access(s: &str) -> Access {
    if s == "read-write" {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    }
}

/// Grants (or changes) `user`'s access to `database`.
pub fn grant(
    conn: &Connection,
    database: &str,
    user: &str,
    access: Access,
) -> Result<(), CatalogError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let db = database_id(&tx, database)?;
    let uid = user_id(&tx, user)?;
    tx.execute(
        "INSERT INTO grants(database_id, user_id, access) VALUES (?1, ?2, ?3)
         ON CONFLICT(database_id, user_id) DO UPDATE SET access = excluded.access",
        params![db, uid, access_str(access)],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes `user`'s grant on `database`; returns whether there was one.
pub fn revoke_grant(conn: &Connection, database: &str, user: &str) -> Result<bool, CatalogError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let db = database_id(&tx, database)?;
    let uid = user_id(&tx, user)?;
    let n = tx.execute(
        "DELETE FROM grants WHERE database_id = ?1 AND user_id = ?2",
        params![db, uid],
    )?;
    tx.commit()?;
    Ok(n > 0)
}

/// A freshly issued token. The secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token (`sst_` + 43 characters: 256 random bits, base64url).
    pub token: String,
    /// The first characters, kept in the catalog to list and revoke the token.
    pub shown: String,
}

/// The SHA-256 of a token: what the catalog stores and looks up.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a new token for `user`'s device `device`, creating the device if needed.
pub fn issue_token(
    conn: &Connection,
    user: &str,
    device: &str,
) -> Result<IssuedToken, CatalogError> {
    check_name("device", device)?;
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let uid = user_id(&tx, user)?;
    let existing: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT d.id, d.user_id, u.name FROM devices d JOIN users u ON u.id = d.user_id
             WHERE d.name = ?1",
            [device],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let device_id = match existing {
        Some((id, owner, _)) if owner == uid => id,
        Some((_, _, owner)) => {
            return Err(CatalogError::DeviceOwnedByOther {
                device: device.to_string(),
                owner,
                user: user.to_string(),
            });
        }
        None => {
            tx.execute(
                "INSERT INTO devices(user_id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![uid, device, now_ms()],
            )?;
            tx.last_insert_rowid()
        }
    };
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let shown = token[..SHOWN_CHARS].to_string();
    tx.execute(
        "INSERT INTO tokens(hash, shown, device_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash(&token).as_slice(), shown, device_id, now_ms()],
    )?;
    tx.commit()?;
    Ok(IssuedToken { token, shown })
}

/// Which tokens to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// A whole token, or the start of one (at least the shown part, `sst_` + 8 characters,
    /// or any shorter start that matches exactly one active token).
    TokenOrPrefix(String),
    /// Every active token of a device.
    Device(String),
}

/// Revokes tokens; returns how many were active and are now revoked. Revocation takes effect
/// on the running server's next request (it checks the catalog's change counter per request).
pub fn revoke_tokens(conn: &Connection, selector: &TokenSelector) -> Result<usize, CatalogError> {
    let now = now_ms();
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let n = match selector {
        TokenSelector::Device(device) => {
            let id: i64 = tx
                .query_row("SELECT id FROM devices WHERE name = ?1", [device], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| CatalogError::NotFound {
                    what: "device",
                    name: device.clone(),
                })?;
            tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
                params![now, id],
            )?
        }
        TokenSelector::TokenOrPrefix(t) => {
            let by_hash = tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE hash = ?2 AND revoked_ms IS NULL",
                params![now, token_hash(t).as_slice()],
            )?;
            if by_hash > 0 {
                by_hash
            } else {
                // Only the shown part is stored in the clear: match on it.
                let start: String = t.chars().take(SHOWN_CHARS).collect();
                let pattern = format!("{}%", start.replace('%', "").replace('_', "\\_"));
                let hashes: Vec<Vec<u8>> = tx
                    .prepare(
                        "SELECT hash FROM tokens WHERE shown LIKE ?1 ESCAPE '\\' AND revoked_ms IS NULL",
                    )?
                    .query_map([pattern], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                match hashes.len() {
                    0 => {
                        return Err(CatalogError::NotFound {
                            what: "active token",
                            name: t.clone(),
                        });
                    }
                    1 => tx.execute(
                        "UPDATE tokens SET revoked_ms = ?1 WHERE hash = ?2",
                        params![now, hashes[0]],
                    )?,
                    count => {
                        return Err(CatalogError::Ambiguous {
                            prefix: t.clone(),
                            count,
                        });
                    }
                }
            }
        }
    };
    tx.commit()?;
    Ok(n)
}

/// A database as `db list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatabaseRow {
    /// Its name.
    pub name: String,
    /// Internal id: the file is `dbs/<id>.db`.
    pub id: i64,
    /// Owning user.
    pub owner: String,
    /// `(user, access)` for every grant.
    pub grants: Vec<(String, Access)>,
}

/// Every database with its grants, by name.
pub fn list_databases(conn: &Connection) -> Result<Vec<DatabaseRow>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT d.name, d.id, u.name FROM databases d JOIN users u ON u.id = d.owner_id ORDER BY d.name",
    )?;
    let mut rows: Vec<DatabaseRow> = stmt
        .query_map([], |r| {
            Ok(DatabaseRow {
                name: r.get(0)?,
                id: r.get(1)?,
                owner: r.get(2)?,
                grants: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut grants = conn.prepare(
        "SELECT u.name, g.access FROM grants g JOIN users u ON u.id = g.user_id
         WHERE g.database_id = ?1 ORDER BY u.name",
    )?;
    for row in &mut rows {
        row.grants = grants
            .query_map([row.id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_access(&r.get::<_, String>(1)?),
                ))
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(rows)
}

/// A token as `token list` shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    /// The first characters of the token.
    pub shown: String,
    /// Its user.
    pub user: String,
    /// Its device.
    pub device: String,
    /// When it was issued (ms since the epoch).
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// Every token, newest first.
pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT t.shown, u.name, d.name, t.created_ms, t.revoked_ms FROM tokens t
         JOIN devices d ON d.id = t.device_id JOIN users u ON u.id = d.user_id
         ORDER BY t.created_ms DESC, t.shown",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                shown: r.get(0)?,
                user: r.get(1)?,
                device: r.get(2)?,
                created_ms: r.get(3)?,
                revoked_ms: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// What a token may do with one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The database's internal id (its file name).
    pub database_id: i64,
    /// Read-write or read-only.
    pub access: Access,
    /// The token's device: the origin its pushes are logged under.
    pub device: String,
}

/// The answer to "may this token use this database?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Unknown or revoked token.
    BadToken,
    /// A valid token whose user has no grant on the database, or no such database (the two
    /// are not told apart, so names do not leak).
    NoGrant,
    /// Allowed.
    Granted(Grant),
}

/// Looks up a token (by hash) and its user's grant on `database`.
pub fn authorize(
    conn: &Connection,
    hash: &[u8; 32],
    database: &str,
) -> Result<Authorization, CatalogError> {
    let row: Option<(String, Option<i64>, Option<String>)> = conn
        .prepare_cached(
            "SELECT d.name, db.id, g.access
             FROM tokens t
             JOIN devices d ON d.id = t.device_id
             LEFT JOIN databases db ON db.name = ?2
             LEFT JOIN grants g ON g.database_id = db.id AND g.user_id = d.user_id
             WHERE t.hash = ?1 AND t.revoked_ms IS NULL",
        )?
        .query_row(params![hash.as_slice(), database], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => Authorization::BadToken,
        Some((device, Some(database_id), Some(access))) => Authorization::Granted(Grant {
            database_id,
            access: parse_access(&access),
            device,
        }),
        Some(_) => Authorization::NoGrant,
    })
}

/// The id of every database, for maintenance.
pub fn database_ids(conn: &Connection) -> Result<Vec<(i64, String)>, CatalogError> {
    let mut stmt = conn.prepare("SELECT id, name FROM databases ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_databases_grants_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path()).unwrap();
        assert!(is_empty(&c).unwrap());
        add_user(&c, "alice").unwrap();
        add_user(&c, "bob").unwrap();
        assert!(matches!(
            add_user(&c, "alice"),
            Err(CatalogError::Exists { .. })
        ));
        assert!(matches!(
            add_user(&c, "../x"),
            Err(CatalogError::InvalidName { .. })
        ));
        let id = create_database(&c, "notes", "alice").unwrap();
        let t = issue_token(&c, "alice", "laptop").unwrap();
        assert!(t.token.starts_with(TOKEN_PREFIX) && t.token.len() == 47);
        let h = token_hash(&t.token);
        assert_eq!(
            authorize(&c, &h, "notes").unwrap(),
            Authorization::Granted(Grant {
                database_id: id,
                access: Access::ReadWrite,
                device: "laptop".into()
            })
        );
        assert_eq!(authorize(&c, &h, "other").unwrap(), Authorization::NoGrant);
        let b = issue_token(&c, "bob", "phone").unwrap();
        let hb = token_hash(&b.token);
        assert_eq!(authorize(&c, &hb, "notes").unwrap(), Authorization::NoGrant);
        grant(&c, "notes", "bob", Access::ReadOnly).unwrap();
        assert!(matches!(
            authorize(&c, &hb, "notes").unwrap(),
            Authorization::Granted(Grant {
                access: Access::ReadOnly,
                ..
            })
        ));
        assert!(matches!(
            issue_token(&c, "bob", "laptop"),
            Err(CatalogError::DeviceOwnedByOther { .. })
        ));
        assert_eq!(
            revoke_tokens(&c, &TokenSelector::TokenOrPrefix(t.shown.clone())).unwrap(),
            1
        );
        assert_eq!(authorize(&c, &h, "notes").unwrap(), Authorization::BadToken);
        assert_eq!(
            revoke_tokens(&c, &TokenSelector::Device("phone".into())).unwrap(),
            1
        );
        assert_eq!(
            authorize(&c, &hb, "notes").unwrap(),
            Authorization::BadToken
        );
        let listed = list_databases(&c).unwrap();
        assert_eq!(listed[0].grants.len(), 2);
        assert_eq!(list_tokens(&c).unwrap().len(), 2);
    }

    #[test]
    fn ambiguous_prefixes_revoke_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path()).unwrap();
        add_user(&c, "u").unwrap();
        issue_token(&c, "u", "d1").unwrap();
        issue_token(&c, "u", "d2").unwrap();
        assert!(matches!(
            revoke_tokens(&c, &TokenSelector::TokenOrPrefix("sst_".into())),
            Err(CatalogError::Ambiguous { count: 2, .. })
        ));
        assert!(
            list_tokens(&c)
                .unwrap()
                .iter()
                .all(|t| t.revoked_ms.is_none())
        );
    }
}
