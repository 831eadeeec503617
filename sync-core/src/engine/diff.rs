//! `diff(from, to)`: the changeset that turns one database into another, like
//! `sqldiff --changeset OUT FROM TO`.

use crate::engine::changeset::Changeset;
use crate::engine::ffi::session::Session;
use crate::engine::schema::{self, SchemaError, Untrackable};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// Errors from [`diff`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A database file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A table exists in one database only; a changeset cannot create or drop tables.
    #[error("table {table:?} exists only in {side} database")]
    TableOnlyIn {
        /// The table.
        table: String,
        /// `the FROM` or `the TO`.
        side: &'static str,
    },
    /// A table has different columns or keys in the two databases.
    #[error("table {table:?} has different columns or primary key in the two databases")]
    ShapeMismatch {
        /// The table.
        table: String,
    },
    /// Reading a schema failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// SQLite failed while diffing.
    #[error("SQLite failed while diffing: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The result of [`diff`].
#[derive(Debug)]
pub struct DiffOutput {
    /// Applying this to FROM makes it equal to TO (for the tables compared).
    pub changeset: Changeset,
    /// Tables present in both databases that a changeset cannot carry (no primary key,
    /// virtual tables); they were not compared.
    pub skipped: Vec<Untrackable>,
}

/// Computes the changeset that turns `from` into `to`, for every table with a primary key.
/// Both files are opened read-only and must exist.
pub fn diff(from: &Path, to: &Path) -> Result<DiffOutput, DiffError> {
    let open = |path: &Path| {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .and_then(|c| {
            // Opening is lazy: touch the schema so a missing or non-database file fails here.
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(c)
        })
        .map_err(|source| DiffError::Open {
            path: path.to_path_buf(),
            source,
        })
    };
    let from_conn = open(from)?;
    let to_conn = open(to)?;
    let from_tables = schema::user_tables(&from_conn)?;
    let to_tables = schema::user_tables(&to_conn)?;
    for t in &from_tables {
        if !to_tables.contains(t) {
            return Err(DiffError::TableOnlyIn {
                table: t.clone(),
                side: "the FROM",
            });
        }
    }
    for t in &to_tables {
        if !from_tables.contains(t) {
            return Err(DiffError::TableOnlyIn {
                table: t.clone(),
                side: "the TO",
            });
        }
    }
    let skipped = schema::untrackable_tables(&to_conn)?;
    let mut compared = Vec::new();
    for t in &to_tables {
        if skipped.iter().any(|s| &s.table == t) {
            continue;
        }
        if schema::table_shape(&from_conn, t)? != schema::table_shape(&to_conn, t)? {
            return Err(DiffError::ShapeMismatch { table: t.clone() });
        }
        compared.push(t.clone());
    }
    drop(from_conn);

    // The session lives on TO and diffs each table against FROM attached as `aux`.
    to_conn
        .execute("ATTACH DATABASE ?1 AS aux", [file_uri_readonly(from)])
        .map_err(|source| DiffError::Open {
            path: from.to_path_buf(),
            source,
        })?;
    let mut bytes = Vec::new();
    {
        let mut session = Session::new(&to_conn)?;
        for t in &compared {
            session.attach(Some(t.as_str()))?;
            session.diff("aux", t)?;
        }
        session.changeset_strm(&mut bytes)?;
    }
    Ok(DiffOutput {
        changeset: Changeset::from_bytes(bytes),
        skipped,
    })
}

/// A `file:` URI that opens `path` read-only. SQLite interprets URIs in ATTACH when the
/// connection allows them; rusqlite opens with SQLITE_OPEN_URI by default.
fn file_uri_readonly(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'%' | b'?' | b'#' | 0x80..=0xFF => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(b as char),
        }
    }
    uri.push_str("?mode=ro");
    uri
}
