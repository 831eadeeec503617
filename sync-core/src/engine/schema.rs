//! Schema checks: which tables a session can track, and whether a changeset fits a database.
//!
//! SQLite's session extension silently ignores tables without a PRIMARY KEY, virtual tables,
//! and rows whose key contains NULL; and `sqlite3changeset_apply` silently skips a table that
//! is missing or has another column count. Each of those would make sync lose data without a
//! word, so they are turned into errors here.

use crate::engine::decode::Summary;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Tables whose names start with this prefix are the library's own and are never synced.
pub const INTERNAL_PREFIX: &str = "_sync_";

/// SQLite reserves names with this prefix for itself (`sqlite_sequence`, `sqlite_stat1`, …).
pub const SQLITE_PREFIX: &str = "sqlite_";

/// True for tables that sync never tracks and no changeset may write: the library's `_sync_*`
/// tables and SQLite's own `sqlite_*` tables.
///
/// Judged the way SQLite judges names: ASCII case-insensitively (`_SYNC_LOG` *is*
/// `_sync_log` to SQLite, so a changeset naming it writes the internal table). This is the one
/// predicate every check of a table name uses: capture filters, schema checks, the server's
/// apply and the client's apply of pulled entries.
pub fn is_internal_table(name: &str) -> bool {
    is_library_table(name) || starts_with_ignore_ascii_case(name, SQLITE_PREFIX)
}

/// True for the library's own `_sync_*` names, in any letter case (see [`is_internal_table`]).
pub fn is_library_table(name: &str) -> bool {
    starts_with_ignore_ascii_case(name, INTERNAL_PREFIX)
}

/// True when two table (or column) names name the same object for SQLite: equal after ASCII
/// case folding (SQLite folds only ASCII letters).
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn starts_with_ignore_ascii_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Schema problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Tables the session extension cannot track.
    #[error("tables that cannot be synced: {}", describe_untrackable(.tables))]
    Untrackable {
        /// Each table and why.
        tables: Vec<Untrackable>,
    },
    /// The changeset names a table the database does not have.
    #[error("table {table:?} does not exist in the database")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// The changeset changes one of the library's own tables (`_sync_*`) or SQLite's
    /// (`sqlite_*`); those are never synced, and a changeset must not rewrite them.
    #[error("table {table:?} is internal to session-sync or SQLite and is never synced")]
    InternalTable {
        /// The table.
        table: String,
    },
    /// The changeset's column count for a table differs from the database's.
    #[error(
        "table {table:?} has {database} columns in the database but {changeset} in the changeset"
    )]
    ColumnCountMismatch {
        /// The table.
        table: String,
        /// Columns according to the changeset.
        changeset: usize,
        /// Columns according to the database.
        database: usize,
    },
    /// The changeset's primary key for a table differs from the database's.
    #[error(
        "table {table:?} has primary-key columns {database:?} in the database but {changeset:?} in the changeset"
    )]
    PrimaryKeyMismatch {
        /// The table.
        table: String,
        /// Key column indexes according to the changeset.
        changeset: Vec<usize>,
        /// Key column indexes according to the database.
        database: Vec<usize>,
    },
    /// A column named in configuration does not exist.
    #[error("table {table:?} has no column {column:?}")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// Reading the schema failed.
    #[error("could not read the schema: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn describe_untrackable(tables: &[Untrackable]) -> String {
    tables
        .iter()
        .map(|t| format!("{} ({})", t.table, t.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a table cannot be tracked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum UntrackableReason {
    /// No PRIMARY KEY: the session extension ignores the table.
    NoPrimaryKey,
    /// A virtual table (FTS, R-tree, …): sessions do not see its writes.
    Virtual,
    /// A shadow table of a virtual table: its contents are derived, not data.
    Shadow,
    /// A key column may hold NULL, and rows with a NULL key are not captured.
    NullablePrimaryKey {
        /// The nullable key column.
        column: String,
    },
}

impl std::fmt::Display for UntrackableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UntrackableReason::NoPrimaryKey => f.write_str("no PRIMARY KEY"),
            UntrackableReason::Virtual => {
                f.write_str("virtual table; keep it in an attached database")
            }
            UntrackableReason::Shadow => {
                f.write_str("shadow table of a virtual table; keep it in an attached database")
            }
            UntrackableReason::NullablePrimaryKey { column } => write!(
                f,
                "primary-key column {column:?} allows NULL; declare it NOT NULL"
            ),
        }
    }
}

/// One table that cannot be tracked, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Untrackable {
    /// Table name.
    pub table: String,
    /// Why.
    #[serde(flatten)]
    pub reason: UntrackableReason,
}

/// One column as the session extension sees it (hidden columns excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type, as written.
    pub decl_type: String,
    /// NOT NULL constraint.
    pub not_null: bool,
    /// 0 if not in the primary key, else the 1-based position in the key.
    pub pk: u8,
}

/// A table's columns in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    /// Table name.
    pub name: String,
    /// Visible columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// Declared `WITHOUT ROWID`.
    pub without_rowid: bool,
}

impl TableShape {
    /// Indexes of the primary-key columns, in column order.
    pub fn pk_columns(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.pk != 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// The column that is an alias for the rowid (`INTEGER PRIMARY KEY`), if any.
    pub fn rowid_alias(&self) -> Option<usize> {
        let pk = self.pk_columns();
        match pk.as_slice() {
            [only]
                if !self.without_rowid
                    && self.columns[*only]
                        .decl_type
                        .eq_ignore_ascii_case("INTEGER") =>
            {
                Some(*only)
            }
            _ => None,
        }
    }
}

/// A table of the `main` schema as `PRAGMA table_list` reports it.
struct ListedTable {
    name: String,
    kind: String,
    without_rowid: bool,
}

fn list_tables(conn: &Connection, schema: &str) -> Result<Vec<ListedTable>, rusqlite::Error> {
    let mut stmt = conn
        .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = ?1 ORDER BY name")?;
    let rows = stmt.query_map([schema], |r| {
        Ok(ListedTable {
            name: r.get(0)?,
            kind: r.get(1)?,
            without_rowid: r.get::<_, i64>(2)? != 0,
        })
    })?;
    rows.collect()
}

/// The shape of `table` in the `main` schema, or `None` if there is no such table.
pub fn table_shape(conn: &Connection, table: &str) -> Result<Option<TableShape>, SchemaError> {
    table_shape_in(conn, "main", table)
}

/// The shape of `table` in the attached database `schema` (`main`, `temp`, or an ATTACH name),
/// or `None` if there is no such table.
pub fn table_shape_in(
    conn: &Connection,
    schema: &str,
    table: &str,
) -> Result<Option<TableShape>, SchemaError> {
    let without_rowid: Option<bool> = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = ?1 AND name = ?2 COLLATE NOCASE \
             AND type = 'table'",
            [schema, table],
            |r| Ok(r.get::<_, i64>(0)? != 0),
        )
        .optional()?;
    let Some(without_rowid) = without_rowid else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1, ?2) \
         WHERE hidden = 0 ORDER BY cid",
    )?;
    let columns = stmt
        .query_map([table, schema], |r| {
            Ok(ColumnInfo {
                name: r.get(0)?,
                decl_type: r.get(1)?,
                not_null: r.get::<_, i64>(2)? != 0,
                pk: u8::try_from(r.get::<_, i64>(3)?).unwrap_or(u8::MAX),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(TableShape {
        name: table.to_string(),
        columns,
        without_rowid,
    }))
}

/// Ordinary tables of `main` that sync tracks: every table that is not internal, virtual or
/// shadow (whether or not it is trackable; see [`untrackable_tables`]).
pub fn user_tables(conn: &Connection) -> Result<Vec<String>, SchemaError> {
    user_tables_in(conn, "main")
}

/// Like [`user_tables`], for an attached database.
pub fn user_tables_in(conn: &Connection, schema: &str) -> Result<Vec<String>, SchemaError> {
    Ok(list_tables(conn, schema)?
        .into_iter()
        .filter(|t| t.kind == "table" && !is_internal_table(&t.name))
        .map(|t| t.name)
        .collect())
}

/// Lists the tables of `main` that a session cannot track faithfully, with the reason.
/// Internal `_sync_*` and `sqlite_*` tables are ignored.
pub fn untrackable_tables(conn: &Connection) -> Result<Vec<Untrackable>, SchemaError> {
    let mut out = Vec::new();
    for t in list_tables(conn, "main")? {
        if is_internal_table(&t.name) {
            continue;
        }
        let reason = match t.kind.as_str() {
            "virtual" => Some(UntrackableReason::Virtual),
            "shadow" => Some(UntrackableReason::Shadow),
            "table" => {
                let shape = table_shape(conn, &t.name)?;
                shape.and_then(|shape| key_problem(&shape, t.without_rowid))
            }
            _ => None, // views
        };
        if let Some(reason) = reason {
            out.push(Untrackable {
                table: t.name,
                reason,
            });
        }
    }
    Ok(out)
}

fn key_problem(shape: &TableShape, without_rowid: bool) -> Option<UntrackableReason> {
    let pk = shape.pk_columns();
    if pk.is_empty() {
        return Some(UntrackableReason::NoPrimaryKey);
    }
    if without_rowid || shape.rowid_alias().is_some() {
        return None; // SQLite itself forbids NULL in these keys
    }
    pk.iter()
        .map(|i| &shape.columns[*i])
        .find(|c| !c.not_null)
        .map(|c| UntrackableReason::NullablePrimaryKey {
            column: c.name.clone(),
        })
}

/// Fails with [`SchemaError::Untrackable`] naming every table a session cannot track.
pub fn check_trackable(conn: &Connection) -> Result<(), SchemaError> {
    let tables = untrackable_tables(conn)?;
    if tables.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Untrackable { tables })
    }
}

/// Checks that every table of a changeset is a synced table (not internal: see
/// [`is_internal_table`]) and exists in `main` with the same column count and
/// primary-key columns. (Key *order* flags are not compared: `sqldiff` writes 1 for every
/// key column while sessions write the key position.)
pub fn check_changeset_fits(conn: &Connection, summary: &Summary) -> Result<(), SchemaError> {
    check_changeset_fits_cached(conn, summary, None)
}

/// [`check_changeset_fits`], reading table shapes through `cache` when given.
pub fn check_changeset_fits_cached(
    conn: &Connection,
    summary: &Summary,
    cache: Option<&ShapeCache>,
) -> Result<(), SchemaError> {
    for (table, t) in &summary.tables {
        if is_internal_table(table) {
            return Err(SchemaError::InternalTable {
                table: table.clone(),
            });
        }
        let shape = match cache {
            Some(c) => c.shape(conn, table)?,
            None => table_shape(conn, table)?,
        }
        .ok_or_else(|| SchemaError::UnknownTable {
            table: table.clone(),
        })?;
        if shape.columns.len() != t.columns {
            return Err(SchemaError::ColumnCountMismatch {
                table: table.clone(),
                changeset: t.columns,
                database: shape.columns.len(),
            });
        }
        let changeset_pk: Vec<usize> =
            t.pk.iter()
                .enumerate()
                .filter(|(_, f)| **f != 0)
                .map(|(i, _)| i)
                .collect();
        let database_pk = shape.pk_columns();
        if changeset_pk != database_pk {
            return Err(SchemaError::PrimaryKeyMismatch {
                table: table.clone(),
                changeset: changeset_pk,
                database: database_pk,
            });
        }
    }
    Ok(())
}

/// Table shapes of one database, remembered until its schema changes.
///
/// Reading a shape costs two PRAGMA queries, compiled afresh after every changeset apply
/// (SQLite expires a connection's statements then); on a server applying small pushes that is
/// a tenth of the work. The cache is checked against `PRAGMA schema_version` — which SQLite
/// bumps on every schema change, by any connection — on each use, so it never serves a shape
/// the database no longer has. Use one cache per database file.
#[derive(Debug, Default)]
pub struct ShapeCache {
    state: std::sync::Mutex<CachedShapes>,
}

#[derive(Debug, Default)]
struct CachedShapes {
    schema_version: Option<i64>,
    /// By lowercased table name (SQLite table names are case-insensitive).
    shapes: std::collections::HashMap<String, Option<TableShape>>,
}

impl ShapeCache {
    /// An empty cache.
    pub fn new() -> ShapeCache {
        ShapeCache::default()
    }

    /// The shape of `table` in `main` (see [`table_shape`]).
    pub fn shape(&self, conn: &Connection, table: &str) -> Result<Option<TableShape>, SchemaError> {
        let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        let key = table.to_ascii_lowercase();
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.schema_version != Some(version) {
                state.shapes.clear();
                state.schema_version = Some(version);
            }
            if let Some(shape) = state.shapes.get(&key) {
                return Ok(shape.clone());
            }
        }
        let shape = table_shape(conn, table)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.schema_version == Some(version) {
            state.shapes.insert(key, shape.clone());
        }
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_are_judged_case_insensitively_like_sqlite() {
        for name in [
            "_sync_log",
            "_SYNC_LOG",
            "_Sync_Meta",
            "_sYnC_outbox",
            "sqlite_sequence",
            "SQLITE_SEQUENCE",
            "Sqlite_Stat1",
        ] {
            assert!(is_internal_table(name), "{name}");
        }
        for name in [
            "notes",
            "sync_log",
            "_sync",
            "sqlite",
            "x_sync_log",
            "_ſync_log",
            "",
        ] {
            assert!(!is_internal_table(name), "{name}");
        }
        // SQLite agrees: the upper-case name writes the lower-case table.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE _sync_meta(k PRIMARY KEY, v); INSERT INTO _SYNC_META VALUES (1, 2);",
        )
        .unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM _sync_meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn shape_cache_follows_schema_changes_made_by_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = Connection::open(&path).unwrap();
        let b = Connection::open(&path).unwrap();
        a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
            .unwrap();
        let cache = ShapeCache::new();
        assert_eq!(cache.shape(&a, "T").unwrap().unwrap().columns.len(), 2);
        assert!(cache.shape(&a, "missing").unwrap().is_none());
        b.execute_batch("ALTER TABLE t ADD COLUMN y; CREATE TABLE missing(id INTEGER PRIMARY KEY)")
            .unwrap();
        assert_eq!(cache.shape(&a, "t").unwrap().unwrap().columns.len(), 3);
        assert!(cache.shape(&a, "missing").unwrap().is_some());
    }
}
