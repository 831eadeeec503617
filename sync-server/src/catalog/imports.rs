//! Catalog rows of a database being imported (`sync-server db import`).
//!
//! An import needs its database's id before the file can be put in place (the file is
//! `dbs/<id>.db`), but the database must not be usable before the file is there: the server
//! would create an empty file at first use. So the id is reserved first under a placeholder
//! name no client can address (names never start with '.'), committed (so the id is never
//! handed out again, `AUTOINCREMENT`), the file is renamed to its place, and only then does the
//! placeholder take the real name and the owner's grant, in one transaction. A killed import
//! leaves a placeholder row (and maybe its file), which the next import removes.

use super::{CatalogError, check_name, database_id, is_unique_violation, now_ms, user_id};
use rusqlite::{Connection, OptionalExtension, params};
use sync_core::engine::tx::Tx;

/// Placeholder names start with this (an invalid database name).
pub const PLACEHOLDER_PREFIX: &str = ".import-";

/// Checks that `name` is a valid, free database name and `owner` a user, without changing
/// anything (an import checks this before its long work).
pub fn check_import(conn: &Connection, name: &str, owner: &str) -> Result<(), CatalogError> {
    check_name("database", name)?;
    user_id(conn, owner)?;
    match database_id(conn, name) {
        Ok(_) => Err(CatalogError::Exists {
            what: "database",
            name: name.to_string(),
        }),
        Err(CatalogError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reserves a database id for an import under a placeholder name and returns it.
pub fn reserve_database_id(
    conn: &Connection,
    owner: &str,
    nonce: u64,
) -> Result<i64, CatalogError> {
    let tx = Tx::begin(conn)?;
    let owner_id = user_id(conn, owner)?;
    conn.execute(
        "INSERT INTO databases(name, owner_id, created_ms) VALUES (?1, ?2, ?3)",
        params![
            format!("{PLACEHOLDER_PREFIX}{nonce:016x}"),
            owner_id,
            now_ms()
        ],
    )?;
    let id = conn.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Gives the reserved database `id` its name and its owner's read-write grant: from here on
/// it is an ordinary database.
pub fn publish_reserved(conn: &Connection, id: i64, name: &str) -> Result<(), CatalogError> {
    check_name("database", name)?;
    let tx = Tx::begin(conn)?;
    conn.execute(
        "UPDATE databases SET name = ?1 WHERE id = ?2",
        params![name, id],
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
    conn.execute(
        "INSERT INTO grants(database_id, user_id, access)
         SELECT id, owner_id, 'read-write' FROM databases WHERE id = ?1",
        params![id],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes placeholder rows (of killed or failed imports) and returns their ids, so that
/// their files can go too. Call only while no other import runs.
pub fn remove_placeholders(conn: &Connection) -> Result<Vec<i64>, CatalogError> {
    let tx = Tx::begin(conn)?;
    let ids = conn
        .prepare("SELECT id FROM databases WHERE substr(name, 1, ?1) = ?2")?
        .query_map(
            params![PLACEHOLDER_PREFIX.len() as i64, PLACEHOLDER_PREFIX],
            |r| r.get::<_, i64>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut removed = Vec::new();
    for id in ids {
        let has_grants: Option<i64> = conn
            .query_row("SELECT 1 FROM grants WHERE database_id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        if has_grants.is_none() {
            conn.execute("DELETE FROM databases WHERE id = ?1", [id])?;
            removed.push(id);
        }
    }
    tx.commit()?;
    Ok(removed)
}
