//! Running an app-schema migration script under the checks both sides apply: the server when
//! it migrates its databases at startup, a client when it upgrades its local copy with the
//! scripts the server serves. A script may change the app's tables freely; it may not touch
//! anything internal, judged by SQLite's authorizer on every action of every statement (so
//! names are judged after parsing, in any letter case, quoted or qualified):
//!
//! - no access at all to a `_sync_*` table, and no write to a `sqlite_*` one (tables, indexes,
//!   triggers and views with those names may not be created, altered or dropped either);
//! - no temp objects, no `ATTACH`/`DETACH`, no transaction control (the caller's transaction
//!   holds the whole upgrade), no pragma that rewrites the schema or the file's settings, no
//!   `load_extension`;
//! - no trigger whose body names a `_sync_*` table (it would write one later, outside any
//!   check).
//!
//! Accesses from the library's own temp triggers (the client's search-index triggers, named
//! `_sync_*`) are allowed: they fire when the script changes an indexed table, and keep the
//! index right.

use crate::engine::ffi::authorizer::{Action, Authorizer};
use crate::engine::schema::{INTERNAL_PREFIX, is_internal_table, is_library_table};
use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::{Connection, ffi};

/// Why a script did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The script tried something migrations may not do; nothing it did is kept (the caller
    /// rolls back).
    #[error(
        "a migration may not {action} (session-sync's internal tables and settings are off limits)"
    )]
    Refused {
        /// What it tried, e.g. `insert into _sync_outbox`.
        action: String,
    },
    /// The SQL failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// Pragmas a migration may not run (they rewrite the schema behind SQLite's back or change
/// how the file is kept).
const REFUSED_PRAGMAS: [&str; 8] = [
    "writable_schema",
    "schema_version",
    "journal_mode",
    "locking_mode",
    "query_only",
    "trusted_schema",
    "key",
    "rekey",
];

/// Runs `sql` (one or more statements) on `conn` under the checks of the module docs, inside
/// the caller's transaction. On an error the caller must roll back: statements before the
/// refused one have run.
pub fn run_script(conn: &Connection, sql: &str) -> Result<(), ScriptError> {
    run_script_with(conn, sql, |_| Ok::<_, ScriptError>(()))
}

/// [`run_script`], calling `after` once after each statement (a client follows the schema
/// statement by statement to rewrite its pending transactions: `ALTER TABLE … DROP COLUMN`
/// then `ADD COLUMN` in one script is not a rename). `after` runs under the same checks.
pub fn run_script_with<E: From<ScriptError>>(
    conn: &Connection,
    sql: &str,
    mut after: impl FnMut(&Connection) -> Result<(), E>,
) -> Result<(), E> {
    let guard = Authorizer::install(conn, allowed);
    let result = (|| -> Result<(), E> {
        let mut batch = rusqlite::Batch::new(conn, sql);
        while let Some(mut stmt) = batch.next().map_err(ScriptError::from)? {
            let mut rows = stmt.raw_query();
            while rows.next().map_err(ScriptError::from)?.is_some() {}
            drop(rows);
            drop(stmt);
            after(conn)?;
        }
        Ok(())
    })();
    let refused = guard.refused().map(str::to_string);
    drop(guard);
    if let Some(action) = refused {
        return Err(ScriptError::Refused { action }.into());
    }
    result?;
    Ok(check_triggers(conn)?)
}

fn allowed(a: &Action<'_>) -> bool {
    if a.inside.is_some_and(is_library_table) {
        // The library's own temp triggers, fired by the script's changes.
        return true;
    }
    let internal = |n: Option<&str>| n.is_some_and(is_internal_table);
    // SQLite asks about its own schema tables for every CREATE, ALTER and DROP (ALTER rewrites
    // temp triggers too); it refuses direct writes to them by itself (unless
    // `writable_schema`, refused here).
    let schema_table = |n: Option<&str>| {
        n.is_some_and(|n| {
            [
                "sqlite_master",
                "sqlite_schema",
                "sqlite_temp_master",
                "sqlite_temp_schema",
            ]
            .iter()
            .any(|s| n.eq_ignore_ascii_case(s))
        })
    };
    let library = |n: Option<&str>| n.is_some_and(is_library_table);
    match a.code {
        ffi::SQLITE_READ => !library(a.arg1),
        ffi::SQLITE_SELECT | ffi::SQLITE_RECURSIVE => true,
        ffi::SQLITE_FUNCTION => a
            .arg2
            .is_none_or(|f| !f.eq_ignore_ascii_case("load_extension")),
        ffi::SQLITE_PRAGMA => a.arg1.is_none_or(|p| {
            !REFUSED_PRAGMAS
                .iter()
                .any(|refused| p.eq_ignore_ascii_case(refused))
        }),
        ffi::SQLITE_INSERT | ffi::SQLITE_UPDATE | ffi::SQLITE_DELETE => {
            !internal(a.arg1) || schema_table(a.arg1)
        }
        ffi::SQLITE_CREATE_TABLE
        | ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_CREATE_VIEW
        | ffi::SQLITE_DROP_VIEW
        | ffi::SQLITE_CREATE_VTABLE
        | ffi::SQLITE_DROP_VTABLE
        | ffi::SQLITE_ANALYZE
        | ffi::SQLITE_REINDEX => !internal(a.arg1),
        ffi::SQLITE_CREATE_INDEX
        | ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_CREATE_TRIGGER
        | ffi::SQLITE_DROP_TRIGGER => {
            // SQLite names the indexes of UNIQUE constraints `sqlite_autoindex_*` itself (and
            // refuses that prefix in a name the SQL gives).
            !library(a.arg1) && !internal(a.arg2)
        }
        ffi::SQLITE_ALTER_TABLE => !internal(a.arg2),
        // Temp objects, attached files, transaction control: never.
        _ => false,
    }
}

/// A trigger that names an internal table in its body would write it later, when it fires
/// outside any check.
fn check_triggers(conn: &Connection) -> Result<(), ScriptError> {
    let mut stmt = conn.prepare(
        "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'trigger' ORDER BY name",
    )?;
    let triggers = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    match triggers
        .into_iter()
        .find(|(_, sql)| sql.to_ascii_lowercase().contains(INTERNAL_PREFIX))
    {
        Some((name, _)) => Err(ScriptError::Refused {
            action: format!(
                "create trigger {name}, whose body names a table internal to session-sync"
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT);
             CREATE TABLE _sync_outbox(seq INTEGER PRIMARY KEY, changeset BLOB);
             INSERT INTO notes VALUES (1, 'a');
             INSERT INTO _sync_outbox VALUES (1, x'00');",
        )
        .unwrap();
        conn
    }

    fn dump(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name")
            .unwrap();
        let mut out: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM _sync_outbox", [], |r| r.get(0))
            .unwrap();
        out.push(format!("outbox rows {rows}"));
        out
    }

    #[test]
    fn app_schema_changes_run() {
        let conn = db();
        conn.execute_batch("BEGIN").unwrap();
        run_script(
            &conn,
            "ALTER TABLE notes ADD COLUMN color TEXT DEFAULT 'red';
             CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
             CREATE INDEX tags_name ON tags(name);
             ALTER TABLE notes ADD COLUMN dropped TEXT;
             ALTER TABLE notes DROP COLUMN dropped;
             ALTER TABLE tags RENAME COLUMN name TO label;
             UPDATE notes SET color = 'blue' WHERE id = 1;
             INSERT INTO tags SELECT id, title FROM notes;
             CREATE TRIGGER notes_touch AFTER UPDATE ON notes BEGIN UPDATE tags SET name = new.title WHERE id = new.id; END;
             CREATE VIEW v AS SELECT * FROM notes;
             PRAGMA foreign_keys = ON;
             SELECT * FROM sqlite_schema;",
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let color: String = conn
            .query_row("SELECT color FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(color, "blue");
    }

    #[test]
    fn internal_tables_and_settings_are_refused_in_any_spelling_and_nothing_is_kept() {
        for sql in [
            "DELETE FROM _sync_outbox",
            "DELETE FROM \"_SYNC_Outbox\"",
            "UPDATE main._sync_outbox SET changeset = x''",
            "INSERT INTO notes SELECT seq, 'x' FROM _sync_outbox",
            "DROP TABLE _Sync_Outbox",
            "ALTER TABLE _sync_outbox ADD COLUMN x",
            "ALTER TABLE _sync_outbox RENAME TO mine",
            "CREATE TABLE _SYNC_mine(id INTEGER PRIMARY KEY)",
            "CREATE INDEX _sync_i ON notes(title)",
            "CREATE INDEX i ON _sync_outbox(changeset)",
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _SYNC_OUTBOX; END",
            "CREATE TRIGGER t AFTER INSERT ON _sync_outbox BEGIN SELECT 1; END",
            "CREATE VIEW _sync_v AS SELECT 1",
            "CREATE TEMP TABLE scratch(x)",
            "CREATE TEMP TRIGGER t AFTER INSERT ON notes BEGIN SELECT 1; END",
            "ANALYZE; INSERT INTO sqlite_stat1 VALUES ('notes', NULL, '1')",
            "PRAGMA writable_schema = ON",
            "PRAGMA journal_mode = DELETE",
            "ATTACH DATABASE ':memory:' AS other",
            "SAVEPOINT s; RELEASE s",
            "COMMIT",
            "UPDATE notes SET title = 'changed'; DELETE FROM _sync_outbox",
        ] {
            let conn = db();
            let before = dump(&conn);
            conn.execute_batch("BEGIN").unwrap();
            let err = run_script(&conn, sql).unwrap_err();
            assert!(matches!(err, ScriptError::Refused { .. }), "{sql}: {err}");
            conn.execute_batch("ROLLBACK").unwrap();
            assert_eq!(dump(&conn), before, "{sql}");
            let title: String = conn
                .query_row("SELECT title FROM notes", [], |r| r.get(0))
                .unwrap();
            assert_eq!(title, "a", "{sql}");
        }
    }

    #[test]
    fn the_librarys_own_temp_triggers_may_fire() {
        let conn = db();
        conn.execute_batch(
            "CREATE TABLE _sync_fts_dirty(tbl TEXT, rid INTEGER, PRIMARY KEY (tbl, rid));
             CREATE TEMP TRIGGER _sync_fts_notes_au AFTER UPDATE ON main.notes
             BEGIN INSERT OR REPLACE INTO _sync_fts_dirty VALUES ('notes', new.rowid); END;",
        )
        .unwrap();
        run_script(&conn, "UPDATE notes SET title = 'b'").unwrap();
        let marked: i64 = conn
            .query_row("SELECT count(*) FROM _sync_fts_dirty", [], |r| r.get(0))
            .unwrap();
        assert_eq!(marked, 1);
    }
}
