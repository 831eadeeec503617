//! `sync-server db import NAME --from FILE --owner USER [--schema DIR]`: an existing SQLite
//! file's schema and rows become a new server database.
//!
//! The server has one app schema for all databases (`--schema DIR`, or the embedded demo), and
//! brings every database up to it when it opens one. An imported file fits that in one of two
//! ways:
//!
//! - **With `--schema DIR`** (the directory the server runs with): the file's schema must equal
//!   what those migrations make (compared by `sync_core::engine::schema_match`); the database
//!   is then at the directory's version and follows the server's later migrations like any
//!   other.
//! - **Without it**: the file's schema becomes the database's *own* migration 1. The database
//!   records that in `_sync_meta` (`own_schema` = 1), and the server then never applies its
//!   own migrations to it — they were written for another schema. Its version stays 1; pull,
//!   push, snapshot and bootstrap work exactly as for a created database.
//!
//! Either way the same checks as at startup run first: every table can be tracked (a primary
//! key, no NULL in a key, not virtual), no table uses a reserved `_sync_*` name (any letter
//! case), no trigger touches one; and the rows must pass `PRAGMA quick_check` and
//! `PRAGMA foreign_key_check` (the server would reject the first push that met an orphan).
//!
//! The source is read through one read-only connection with SQLite's backup API (a consistent
//! copy) and never written. The copy is converted beside the catalog's files, made durable,
//! and put in place before the database gets its name (see `catalog::imports`), so a killed
//! import leaves either no database or a complete one.

use crate::catalog::{self, CatalogError};
use crate::datadir::DataDir;
use crate::migrations::{AppSchema, MigrationError, OWN_SCHEMA_KEY};
use crate::storage::{DBS_DIR, IMAGES_DIR};
use crate::store::Replica;
use rusqlite::{Connection, OpenFlags};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use sync_core::engine::cipher::{self, CipherError, EncryptionKey};
use sync_core::engine::cipher_copy;
use sync_core::engine::schema::{self, SchemaError};
use sync_core::engine::schema_match::differences;
use sync_core::server;

/// Most schema differences an error lists.
const SHOWN_DIFFERENCES: usize = 12;

/// Why an import was refused or failed. Nothing was created in either case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The catalog refused (an existing name, an unknown owner, a bad name).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The source file could not be read as an SQLite database.
    #[error("cannot read {}: {source}", path.display())]
    Source {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file cannot be served as it is.
    #[error("{} cannot be imported: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why, for the operator.
        reason: String,
    },
    /// The file's schema differs from the one `--schema` makes.
    #[error(
        "the schema of {} differs from the one the migrations in {} make ({} difference(s)): {}",
        path.display(), dir.display(), differences.len(), shown(differences)
    )]
    SchemaDiffers {
        /// The file.
        path: PathBuf,
        /// The migrations directory.
        dir: PathBuf,
        /// Each difference.
        differences: Vec<String>,
    },
    /// The `--schema` directory is unusable.
    #[error(transparent)]
    Migrations(#[from] MigrationError),
    /// Another import runs in this data directory.
    #[error("another `db import` is running in this data directory; wait for it to finish")]
    Busy,
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed on the copy.
    #[error("database error while importing: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn shown(differences: &[String]) -> String {
    let mut list: Vec<String> = differences
        .iter()
        .take(SHOWN_DIFFERENCES)
        .cloned()
        .collect();
    if differences.len() > SHOWN_DIFFERENCES {
        list.push(format!("… {} more", differences.len() - SHOWN_DIFFERENCES));
    }
    list.join("; ")
}

/// What an import made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The internal id (the file is `dbs/<id>.db`).
    pub id: i64,
    /// The database's schema version.
    pub schema_version: u32,
    /// Whether the database keeps its own schema (imported without `--schema`).
    pub own_schema: bool,
    /// App tables.
    pub tables: usize,
    /// Rows in them.
    pub rows: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Imports `from` as database `name` owned by `owner` into the data directory `data_dir`;
/// with `schema_dir`, the file's schema must be the one those migrations make.
pub fn import(
    dir: &DataDir,
    name: &str,
    from: &Path,
    owner: &str,
    schema_dir: Option<&Path>,
) -> Result<Imported, ImportError> {
    let data_dir = dir.path();
    let mut cat = dir.open_catalog()?;
    catalog::check_import(&cat, name, owner)?;
    let expected = schema_dir.map(AppSchema::from_dir).transpose()?;
    let dbs = data_dir.join(DBS_DIR);
    std::fs::create_dir_all(&dbs).map_err(io(&dbs))?;
    let _lock = import_lock(&dbs)?;
    remove_leftovers(dir, &mut cat, &dbs)?;

    let nonce: u64 = rand::random();
    let staged = dbs.join(format!("{}{nonce:016x}.db", catalog::PLACEHOLDER_PREFIX));
    let result = stage(from, &staged, expected.as_ref(), schema_dir, dir.key());
    let made = match result {
        Ok(made) => made,
        Err(e) => {
            remove_db_files(&staged);
            return Err(e);
        }
    };
    let id = match dir.catalog_write(&mut cat, |c| catalog::reserve_database_id(c, owner, nonce)) {
        Ok(id) => id,
        Err(e) => {
            remove_db_files(&staged);
            return Err(e.into());
        }
    };
    let target = dbs.join(format!("{id}.db"));
    let placed = (|| -> Result<(), ImportError> {
        // The id was never used (AUTOINCREMENT), so nothing can be at `target`; a file there
        // would be served as this database, so refuse rather than replace it.
        if target.exists() {
            return Err(ImportError::Refused {
                path: target.clone(),
                reason: "a file already exists where the new database goes".into(),
            });
        }
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        File::open(&dbs)
            .and_then(|d| d.sync_all())
            .map_err(io(&dbs))?;
        if let Some(store) = dir.store() {
            // The store gets the file as the first version of the new database's history.
            let replica = Replica::new(store.clone(), id, true, data_dir.join(IMAGES_DIR));
            let mut conn = Connection::open(&target).map_err(|source| ImportError::Source {
                path: target.clone(),
                source,
            })?;
            replica
                .reshape(&mut conn, |_| ())
                .map_err(CatalogError::from)?;
        }
        dir.catalog_write(&mut cat, |c| catalog::publish_reserved(c, id, name))?;
        Ok(())
    })();
    if let Err(e) = placed {
        remove_db_files(&staged);
        remove_db_files(&target);
        let _ = dir.catalog_write(&mut cat, catalog::remove_placeholders);
        return Err(e);
    }
    Ok(Imported { id, ..made })
}

/// Copies and converts the source into `staged`; returns what it made (id unset).
fn stage(
    from: &Path,
    staged: &Path,
    expected: Option<&AppSchema>,
    schema_dir: Option<&Path>,
    key: Option<&EncryptionKey>,
) -> Result<Imported, ImportError> {
    let source_err = |source| ImportError::Source {
        path: from.to_path_buf(),
        source,
    };
    if !from.is_file() {
        return Err(ImportError::Refused {
            path: from.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(source_err)?;
    source
        .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(source_err)?;
    let conn = match key {
        // The operator's file is plain; the staged copy is encrypted from its first page
        // (SQLite's backup cannot copy between the two).
        Some(key) => {
            drop(source);
            cipher_copy::export_file(from, None, staged, Some(key)).map_err(|e| match e {
                CipherError::Sqlite(e) => source_err(e),
                e => ImportError::Refused {
                    path: from.to_path_buf(),
                    reason: e.to_string(),
                },
            })?;
            cipher::open(staged, OpenFlags::default(), Some(key)).map_err(|e| match e {
                CipherError::Sqlite(e) => ImportError::from(e),
                e => ImportError::Refused {
                    path: staged.to_path_buf(),
                    reason: e.to_string(),
                },
            })?
        }
        None => {
            let mut conn = Connection::open(staged)?;
            {
                let backup =
                    rusqlite::backup::Backup::new(&source, &mut conn).map_err(source_err)?;
                backup.step(-1).map_err(source_err)?;
            }
            drop(source);
            conn
        }
    };
    let refused = |reason: String| ImportError::Refused {
        path: from.to_path_buf(),
        reason,
    };
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(refused(format!("PRAGMA quick_check reports {check}")));
    }
    check_names(&conn).map_err(refused)?;
    schema::check_trackable(&conn).map_err(|e| refused(e.to_string()))?;
    let tables = schema::user_tables(&conn).map_err(|e| refused(e.to_string()))?;
    if tables.is_empty() {
        return Err(refused("it has no tables".into()));
    }
    sync_core::client::adopt::check_foreign_keys(&conn).map_err(|e| refused(e.to_string()))?;
    let mut rows = 0u64;
    for t in &tables {
        let sql = format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\""));
        rows += conn.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64;
    }
    let (version, own) = match (expected, schema_dir) {
        (Some(schema), Some(dir)) => {
            let reference = Connection::open_in_memory()?;
            schema.migrate(&reference)?;
            let diffs = differences(&conn, "the file", &reference, "the migrations")
                .map_err(|e: SchemaError| refused(e.to_string()))?;
            if !diffs.is_empty() {
                return Err(ImportError::SchemaDiffers {
                    path: from.to_path_buf(),
                    dir: dir.to_path_buf(),
                    differences: diffs,
                });
            }
            (schema.version(), false)
        }
        _ => (1, true),
    };
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    server::install(&conn, version)?;
    server::set_schema_version(&conn, version)?;
    if own {
        conn.execute(
            "INSERT OR REPLACE INTO _sync_meta(key, value) VALUES (?1, 1)",
            [OWN_SCHEMA_KEY],
        )?;
    }
    conn.execute_batch("COMMIT")?;
    // What the server does when it opens the database: it must find nothing to do.
    let serving = match expected {
        Some(s) if !own => s.clone(),
        _ => AppSchema::imported(version),
    };
    serving.migrate(&conn)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(io(staged))?;
    Ok(Imported {
        id: 0,
        schema_version: version,
        own_schema: own,
        tables: tables.len(),
        rows,
    })
}

/// No table may use a reserved name, and no trigger may name one (it would write the
/// server's internal tables during applies).
fn check_names(conn: &Connection) -> Result<(), String> {
    let mut stmt = conn
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema")
        .map_err(|e| e.to_string())?;
    let objects = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| e.to_string())?;
    for (kind, name, sql) in objects {
        if kind == "table" && schema::is_library_table(&name) {
            return Err(format!(
                "it has table {name:?}, but names starting with _sync_ (in any letter case) are \
                 reserved for session-sync (is it a session-sync copy? import the app's plain file)"
            ));
        }
        if kind == "trigger" && sql.to_ascii_lowercase().contains(schema::INTERNAL_PREFIX) {
            return Err(format!(
                "its trigger {name:?} refers to a table internal to session-sync"
            ));
        }
    }
    Ok(())
}

/// One import at a time per data directory: an OS lock on `dbs/.import.lock`, released when
/// the process ends however it ends.
fn import_lock(dbs: &Path) -> Result<File, ImportError> {
    let path = dbs.join(".import.lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(ImportError::Busy),
        Err(TryLockError::Error(e)) => Err(ImportError::Io { path, source: e }),
    }
}

/// What killed imports left: staged copies and placeholder rows with their files.
fn remove_leftovers(dir: &DataDir, cat: &mut Connection, dbs: &Path) -> Result<(), ImportError> {
    for id in dir.catalog_write(cat, catalog::remove_placeholders)? {
        remove_db_files(&dbs.join(format!("{id}.db")));
    }
    if let Ok(entries) = std::fs::read_dir(dbs) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(catalog::PLACEHOLDER_PREFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn remove_db_files(base: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = base.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
