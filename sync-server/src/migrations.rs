//! The app schema: numbered SQL migrations (`0001_init.sql`, `0002_add_color.sql`, …) from the
//! operator's `--schema DIR`, or the embedded demo schema (a small notes app).
//!
//! The schema version of a database is the number of migrations applied to it. Every database
//! is brought up to date when it is opened, in one transaction per database, and the result
//! must be trackable by the session extension ([`sync_core::engine::schema::check_trackable`]): a table
//! without a primary key would silently never sync, so the server refuses to serve it.

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use sync_core::engine::migration::{ScriptError, run_script};
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::schema;
use sync_core::engine::schema::SchemaError;
use sync_core::server;

/// The demo schema, served when no `--schema` directory is given.
const DEMO_INIT: &str = include_str!("../schema/0001_init.sql");

/// Why a schema cannot be loaded or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The directory or a file in it could not be read.
    #[error("cannot read schema migrations at {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no `NNNN_name.sql` file.
    #[error("no migrations found in {dir} (expected files like 0001_init.sql)")]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// Migration numbers must be 1, 2, 3, … without gaps or duplicates.
    #[error(
        "migration numbers must run 1, 2, 3, … without gaps: expected {expected}, found {file}"
    )]
    Gap {
        /// The number expected next.
        expected: u32,
        /// The file found instead.
        file: String,
    },
    /// A migration's SQL failed.
    #[error("migration {file} failed: {source}")]
    Sql {
        /// The migration's file name.
        file: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A migration tried to touch what is internal to session-sync or SQLite (see
    /// [`sync_core::engine::migration`]: the same checks a client applies when it upgrades).
    #[error("migration {file} refused: {source}")]
    Refused {
        /// The migration's file name.
        file: String,
        /// What it tried.
        #[source]
        source: ScriptError,
    },
    /// The schema has tables the session extension cannot track.
    #[error("the schema cannot be synced: {0}")]
    Untrackable(SchemaError),
    /// A migration creates a table whose name session-sync reserves (`_sync_*`, any case):
    /// it would never sync, and it could collide with the library's own tables.
    #[error(
        "the schema creates table {table:?}, but names starting with _sync_ (in any letter case) are reserved for session-sync"
    )]
    Reserved {
        /// The table.
        table: String,
    },
    /// A configured conflict policy names a table or column the schema lacks.
    #[error("conflict policy configuration: {0}")]
    Policy(String),
    /// A database was migrated further than the migrations this server knows.
    #[error(
        "the database is at schema version {database} but this server only knows {known} migration(s); \
         run the server with the newer --schema directory"
    )]
    TooNew {
        /// The database's version.
        database: u32,
        /// Migrations known to this server.
        known: u32,
    },
    /// SQLite failed outside a migration.
    #[error("database error while migrating: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The `_sync_meta` key that marks a database keeping the schema it was imported with (see
/// [`crate::import`]): the server's migrations are never applied to it.
pub const OWN_SCHEMA_KEY: &str = "own_schema";

/// The version of a database's own schema, if it keeps one (see the module docs); `None` for
/// a database that follows the server's migrations. Reads only.
pub fn own_schema_version(conn: &Connection) -> rusqlite::Result<Option<u32>> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '_sync_meta'",
        [],
        |r| Ok(r.get::<_, i64>(0)? > 0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let own: Option<i64> = conn
        .query_row(
            "SELECT value FROM _sync_meta WHERE key = ?1",
            [OWN_SCHEMA_KEY],
            |r| r.get(0),
        )
        .optional()?;
    if own.unwrap_or(0) == 0 {
        return Ok(None);
    }
    Ok(Some(server::schema_version(conn)?))
}

/// One migration: version `n` turns a database at version `n - 1` into version `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// 1-based version this migration produces.
    pub version: u32,
    /// File name, for messages.
    pub file: String,
    /// The SQL (no `BEGIN`/`COMMIT`: the server wraps all pending migrations in one transaction).
    pub sql: String,
}

/// The ordered migrations of the app schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSchema {
    migrations: Vec<Migration>,
}

impl AppSchema {
    /// The embedded demo schema (version 1: notes, tags, note_tags).
    pub fn embedded() -> Self {
        AppSchema {
            migrations: vec![Migration {
                version: 1,
                file: "0001_init.sql (embedded)".into(),
                sql: DEMO_INIT.into(),
            }],
        }
    }

    /// The schema of a database that keeps its own (imported without `--schema`, see
    /// [`crate::import`]): `version` migrations, all already applied, so opening it runs
    /// nothing and checks only that it can still be tracked.
    pub fn imported(version: u32) -> Self {
        AppSchema {
            migrations: (1..=version)
                .map(|v| Migration {
                    version: v,
                    file: format!("{v:04} (the schema the database was imported with)"),
                    sql: String::new(),
                })
                .collect(),
        }
    }

    /// Reads `NNNN_name.sql` files from `dir`; the numbers must be 1, 2, 3, … Other files are
    /// ignored.
    pub fn from_dir(dir: &Path) -> Result<Self, MigrationError> {
        let io = |source| MigrationError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut found: Vec<(u32, String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".sql") else {
                continue;
            };
            let digits: String = stem.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                continue;
            }
            let Ok(number) = digits.parse::<u32>() else {
                continue;
            };
            found.push((number, name, entry.path()));
        }
        if found.is_empty() {
            return Err(MigrationError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        found.sort();
        let mut migrations = Vec::with_capacity(found.len());
        for (i, (number, file, path)) in found.into_iter().enumerate() {
            let expected = i as u32 + 1;
            if number != expected {
                return Err(MigrationError::Gap { expected, file });
            }
            let sql = std::fs::read_to_string(&path)
                .map_err(|source| MigrationError::Io { path, source })?;
            migrations.push(Migration {
                version: number,
                file,
                sql,
            });
        }
        Ok(AppSchema { migrations })
    }

    /// The schema version a fully migrated database has.
    pub fn version(&self) -> u32 {
        self.migrations.len() as u32
    }

    /// The migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migrations as the server step that answers `GET …/migrations` takes them.
    pub fn scripts(&self) -> impl Iterator<Item = server::migrations::Script<'_>> {
        self.migrations.iter().map(|m| server::migrations::Script {
            version: m.version,
            name: m.file.trim_end_matches(" (embedded)"),
            sql: &m.sql,
        })
    }

    /// Applies the whole schema to an empty in-memory database and checks that it is
    /// trackable and that `policies` name only existing tables and columns. Run at startup so
    /// that a bad schema or configuration stops the server before it serves anything.
    pub fn validate(&self, policies: &PolicySet) -> Result<(), MigrationError> {
        let conn = Connection::open_in_memory()?;
        server::install(&conn, 0)?;
        let ours = all_tables(&conn)?;
        self.migrate(&conn)?;
        if let Some(reserved) = all_tables(&conn)?
            .into_iter()
            .find(|t| schema::is_library_table(t) && !ours.contains(t))
        {
            return Err(MigrationError::Reserved { table: reserved });
        }
        let tables = schema::user_tables(&conn).map_err(MigrationError::Untrackable)?;
        let column_exists = |table: &str, column: &str| -> Result<bool, MigrationError> {
            let shape = schema::table_shape(&conn, table).map_err(MigrationError::Untrackable)?;
            Ok(shape.is_some_and(|s| {
                s.columns
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(column))
            }))
        };
        for (table, policy) in &policies.tables {
            if !tables.iter().any(|t| schema::same_name(t, table)) {
                return Err(MigrationError::Policy(format!(
                    "a policy is set for table {table:?}, which the schema does not have (tables: {})",
                    tables.join(", ")
                )));
            }
            if let Policy::NewestWins { column } = policy
                && !column_exists(table, column)?
            {
                return Err(MigrationError::Policy(format!(
                    "policy newest-wins:{column} for table {table:?}: the table has no column {column:?}"
                )));
            }
        }
        if let Policy::NewestWins { column } = &policies.default {
            for table in tables.iter().filter(|t| {
                !policies
                    .tables
                    .keys()
                    .any(|name| schema::same_name(name, t))
            }) {
                if !column_exists(table, column)? {
                    return Err(MigrationError::Policy(format!(
                        "the default policy newest-wins:{column} applies to table {table:?}, which has \
                         no column {column:?}; give that table its own policy"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Brings `conn`'s database up to date in one transaction: installs the server's internal
    /// tables if missing, runs every pending migration, records the new schema version, and
    /// checks the result is trackable. On any error nothing is changed. Returns the version.
    pub fn migrate(&self, conn: &Connection) -> Result<u32, MigrationError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = self.migrate_in_tx(conn);
        match result {
            Ok(v) => {
                conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    fn migrate_in_tx(&self, conn: &Connection) -> Result<u32, MigrationError> {
        server::install(conn, 0)?;
        let current = server::schema_version(conn)?;
        if current > self.version() {
            return Err(MigrationError::TooNew {
                database: current,
                known: self.version(),
            });
        }
        for m in &self.migrations[current as usize..] {
            let file = m.file.clone();
            run_script(conn, &m.sql).map_err(|e| match e {
                ScriptError::Sql(source) => MigrationError::Sql { file, source },
                source => MigrationError::Refused { file, source },
            })?;
            server::set_schema_version(conn, m.version)?;
            // Where it ran, for devices that upgrade later (`GET …/migrations`).
            server::migrations::record_applied(conn, m.version)?;
        }
        if current < self.version() {
            // A migration may write rows, which no log entry carries.
            server::lineage::forget_head_sum(conn).map_err(|e| MigrationError::Sql {
                file: "(checksum)".into(),
                source: rusqlite::Error::UserFunctionError(Box::new(e)),
            })?;
        }
        schema::check_trackable(conn).map_err(MigrationError::Untrackable)?;
        Ok(self.version())
    }
}

fn all_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_is_valid_with_the_demo_policies() {
        let s = AppSchema::embedded();
        assert_eq!(s.version(), 1);
        let policies = PolicySet::uniform(Policy::Replace).with_table(
            "notes",
            Policy::NewestWins {
                column: "updated_at".into(),
            },
        );
        s.validate(&policies).unwrap();
        let bad = PolicySet::uniform(Policy::Replace).with_table("nope", Policy::Omit);
        assert!(matches!(s.validate(&bad), Err(MigrationError::Policy(_))));
        let bad_col = PolicySet::uniform(Policy::NewestWins {
            column: "updated_at".into(),
        });
        assert!(matches!(
            s.validate(&bad_col),
            Err(MigrationError::Policy(_))
        ));
    }

    #[test]
    fn directory_migrations_apply_in_order_and_upgrade_equals_fresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_init.sql"), DEMO_INIT).unwrap();
        std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
        let v1 = AppSchema::from_dir(dir.path()).unwrap();
        let old = Connection::open_in_memory().unwrap();
        assert_eq!(v1.migrate(&old).unwrap(), 1);
        std::fs::write(
            dir.path().join("0002_color.sql"),
            "ALTER TABLE tags ADD COLUMN color TEXT;",
        )
        .unwrap();
        let v2 = AppSchema::from_dir(dir.path()).unwrap();
        assert_eq!(v2.migrate(&old).unwrap(), 2);
        assert_eq!(v2.migrate(&old).unwrap(), 2, "re-running is a no-op");
        let fresh = Connection::open_in_memory().unwrap();
        v2.migrate(&fresh).unwrap();
        let dump = |c: &Connection| -> Vec<String> {
            let mut s = c
                .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(dump(&old), dump(&fresh));
        assert_eq!(server::schema_version(&old).unwrap(), 2);
        // The older server refuses a database it does not know the schema of.
        assert!(matches!(
            v1.migrate(&old),
            Err(MigrationError::TooNew { .. })
        ));
    }

    #[test]
    fn reserved_table_names_are_refused_in_any_case_and_policies_match_any_case() {
        for sql in [
            "CREATE TABLE _sync_outbox(id INTEGER PRIMARY KEY);",
            "CREATE TABLE _SYNC_Custom(id INTEGER PRIMARY KEY);",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("0001_init.sql"), sql).unwrap();
            let s = AppSchema::from_dir(dir.path()).unwrap();
            let err = s.validate(&PolicySet::default()).unwrap_err();
            // Refused by the script checks as it runs (the check of the result stays).
            assert!(
                matches!(
                    err,
                    MigrationError::Refused { .. } | MigrationError::Reserved { .. }
                ),
                "{sql}: {err}"
            );
            assert!(
                err.to_string()
                    .to_ascii_lowercase()
                    .contains("create table _sync_"),
                "{sql}: {err}"
            );
        }
        let policies = PolicySet::uniform(Policy::NewestWins {
            column: "updated_at".into(),
        })
        .with_table("TAGS", Policy::Omit)
        .with_table("Note_Tags", Policy::Omit);
        AppSchema::embedded().validate(&policies).unwrap();
        assert_eq!(policies.for_table("tags"), &Policy::Omit);
        assert_eq!(policies.for_table("NOTE_TAGS"), &Policy::Omit);
    }

    #[test]
    fn migrations_that_touch_internal_tables_are_refused_and_change_nothing() {
        for sql in [
            "DELETE FROM _sync_log;",
            "UPDATE \"_SYNC_META\" SET value = 9 WHERE key = 'head_seq';",
            "CREATE TABLE notes2(id INTEGER PRIMARY KEY); DROP TABLE _Sync_Batches;",
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _sync_log; END;",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("0001_init.sql"), DEMO_INIT).unwrap();
            let conn = Connection::open_in_memory().unwrap();
            AppSchema::from_dir(dir.path())
                .unwrap()
                .migrate(&conn)
                .unwrap();
            std::fs::write(dir.path().join("0002_bad.sql"), sql).unwrap();
            let s = AppSchema::from_dir(dir.path()).unwrap();
            let err = s.migrate(&conn).unwrap_err();
            assert!(
                matches!(err, MigrationError::Refused { .. }),
                "{sql}: {err}"
            );
            assert!(err.to_string().contains("0002_bad.sql"), "{err}");
            assert_eq!(server::schema_version(&conn).unwrap(), 1, "{sql}");
            assert!(matches!(
                s.validate(&PolicySet::default()),
                Err(MigrationError::Refused { .. })
            ));
        }
    }

    #[test]
    fn each_migration_records_the_log_head_it_ran_at() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_init.sql"), DEMO_INIT).unwrap();
        let conn = Connection::open_in_memory().unwrap();
        AppSchema::from_dir(dir.path())
            .unwrap()
            .migrate(&conn)
            .unwrap();
        conn.execute("UPDATE _sync_meta SET value = 7 WHERE key = 'head_seq'", [])
            .unwrap();
        std::fs::write(
            dir.path().join("0002_color.sql"),
            "ALTER TABLE tags ADD COLUMN color TEXT;",
        )
        .unwrap();
        let s = AppSchema::from_dir(dir.path()).unwrap();
        s.migrate(&conn).unwrap();
        let answer = server::migrations::migrations(&conn, s.scripts(), 0).unwrap();
        assert_eq!(answer.schema_version, 2);
        let at: Vec<_> = answer
            .migrations
            .iter()
            .map(|m| (m.version, m.at_seq))
            .collect();
        assert_eq!(at, vec![(1, Some(0)), (2, Some(7))]);
        assert_eq!(answer.migrations[1].name, "0002_color.sql");
        answer.check(0).unwrap();
        let after = server::migrations::migrations(&conn, s.scripts(), 2).unwrap();
        assert!(after.migrations.is_empty());
    }

    #[test]
    fn gaps_and_untrackable_tables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0002_x.sql"), "SELECT 1;").unwrap();
        assert!(matches!(
            AppSchema::from_dir(dir.path()),
            Err(MigrationError::Gap { expected: 1, .. })
        ));
        std::fs::write(
            dir.path().join("0001_init.sql"),
            "CREATE TABLE ok(id INTEGER PRIMARY KEY); CREATE TABLE logbook(at INTEGER, msg TEXT);",
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("0002_x.sql")).unwrap();
        let s = AppSchema::from_dir(dir.path()).unwrap();
        let err = s
            .validate(&PolicySet::uniform(Policy::Replace))
            .unwrap_err();
        assert!(err.to_string().contains("logbook"), "{err}");
        let conn = Connection::open_in_memory().unwrap();
        assert!(s.migrate(&conn).is_err());
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "a failed migration changes nothing");
    }
}
