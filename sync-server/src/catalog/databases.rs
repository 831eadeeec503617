//! Databases (name → internal id, which names the file) and grants (which user may read or
//! write which database).

use super::{
    CatalogError, access_column, check_name, database_id, is_unique_violation, now_ms, user_id,
};
use rusqlite::{Connection, params};
use sync_core::engine::tx::Tx;
use sync_core::protocol::info::Access;

/// Creates a database owned by `owner` (who gets a read-write grant) and returns its internal
/// id. The file itself is created by the server when the database is first used.
pub fn create_database(conn: &Connection, name: &str, owner: &str) -> Result<i64, CatalogError> {
    check_name("database", name)?;
    let tx = Tx::begin(conn)?;
    let owner_id = user_id(conn, owner)?;
    conn.execute(
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
    let id = conn.last_insert_rowid();
    conn.execute(
        "INSERT INTO grants(database_id, user_id, access) VALUES (?1, ?2, 'read-write')",
        params![id, owner_id],
    )?;
    tx.commit()?;
    Ok(id)
}

/// Grants (or changes) `user`'s access to `database`.
pub fn grant(
    conn: &Connection,
    database: &str,
    user: &str,
    access: Access,
) -> Result<(), CatalogError> {
    let tx = Tx::begin(conn)?;
    let db = database_id(conn, database)?;
    let uid = user_id(conn, user)?;
    conn.execute(
        "INSERT INTO grants(database_id, user_id, access) VALUES (?1, ?2, ?3)
         ON CONFLICT(database_id, user_id) DO UPDATE SET access = excluded.access",
        params![db, uid, access.as_str()],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes `user`'s grant on `database`; returns whether there was one.
pub fn revoke_grant(conn: &Connection, database: &str, user: &str) -> Result<bool, CatalogError> {
    let tx = Tx::begin(conn)?;
    let db = database_id(conn, database)?;
    let uid = user_id(conn, user)?;
    let n = conn.execute(
        "DELETE FROM grants WHERE database_id = ?1 AND user_id = ?2",
        params![db, uid],
    )?;
    tx.commit()?;
    Ok(n > 0)
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
                Ok((r.get::<_, String>(0)?, access_column(r, 1)?))
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(rows)
}

/// The id of every database, for maintenance.
pub fn database_ids(conn: &Connection) -> Result<Vec<(i64, String)>, CatalogError> {
    let mut stmt = conn.prepare("SELECT id, name FROM databases ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Gives database `name` a new id — and so a new file, `dbs/{new id}.db` — keeping its name,
/// owner and grants, in one catalog transaction. `place(new_id)` puts the new file in place
/// while the catalog is locked (the id is only known then); if it fails, nothing changes.
/// Returns `(old id, new id)`. The server serves the new file from its next request on (its
/// lookups go through the catalog, whose cache empties on any change).
pub fn replace_database<E: From<CatalogError>>(
    conn: &Connection,
    name: &str,
    place: impl FnOnce(i64) -> Result<(), E>,
) -> Result<(i64, i64), E> {
    let tx = Tx::begin(conn).map_err(CatalogError::from)?;
    let old = super::database_id(conn, name)?;
    let (owner_id, created_ms): (i64, i64) = conn
        .query_row(
            "SELECT owner_id, created_ms FROM databases WHERE id = ?1",
            [old],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(CatalogError::from)?;
    let grants: Vec<(i64, String)> = conn
        .prepare("SELECT user_id, access FROM grants WHERE database_id = ?1")
        .and_then(|mut s| {
            s.query_map([old], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(CatalogError::from)?;
    let next: i64 = conn
        .query_row(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'databases'), 0), \
             (SELECT coalesce(max(id), 0) FROM databases)) + 1",
            [],
            |r| r.get(0),
        )
        .map_err(CatalogError::from)?;
    place(next)?;
    let swap = || -> rusqlite::Result<()> {
        conn.execute("DELETE FROM grants WHERE database_id = ?1", [old])?;
        conn.execute("DELETE FROM databases WHERE id = ?1", [old])?;
        conn.execute(
            "INSERT INTO databases(id, name, owner_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![next, name, owner_id, created_ms],
        )?;
        for (user_id, access) in &grants {
            conn.execute(
                "INSERT INTO grants(database_id, user_id, access) VALUES (?1, ?2, ?3)",
                params![next, user_id, access],
            )?;
        }
        Ok(())
    };
    swap().map_err(CatalogError::from)?;
    tx.commit().map_err(CatalogError::from)?;
    Ok((old, next))
}

/// Gives database `name` the id `reserved` (from [`super::reserve_database_id`], whose file
/// is already in place), keeping its name, owner, creation time and grants, in one
/// transaction; the old id's row and grants go. Returns the old id. For a restore with a
/// PostgreSQL store, where the new file must be in the store before any node can see its id.
pub fn replace_with_reserved(
    conn: &Connection,
    name: &str,
    reserved: i64,
) -> Result<i64, CatalogError> {
    let tx = Tx::begin(conn)?;
    let old = super::database_id(conn, name)?;
    conn.execute(
        "INSERT INTO grants(database_id, user_id, access)
         SELECT ?2, user_id, access FROM grants WHERE database_id = ?1",
        params![old, reserved],
    )?;
    let (owner_id, created_ms): (i64, i64) = conn.query_row(
        "SELECT owner_id, created_ms FROM databases WHERE id = ?1",
        [old],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    conn.execute("DELETE FROM grants WHERE database_id = ?1", [old])?;
    conn.execute("DELETE FROM databases WHERE id = ?1", [old])?;
    conn.execute(
        "UPDATE databases SET name = ?1, owner_id = ?2, created_ms = ?3 WHERE id = ?4",
        params![name, owner_id, created_ms, reserved],
    )?;
    tx.commit()?;
    Ok(old)
}
