//! Helpers shared by the engine tests: databases on disk, recording changesets with a real
//! session, and "did anything change?" checks (a deterministic content dump and the file bytes).

#![allow(dead_code)] // not every test module uses every helper

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::ffi::session::Session;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::value::Value;

/// A database file in its own temporary directory (removed on drop).
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub conn: Connection,
}

impl TempDb {
    /// A fresh database file running `schema` (rollback journal: an unchanged database is then
    /// an unchanged file, which [`file_bytes`] can check).
    pub fn new(schema: &str) -> TempDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema).unwrap();
        TempDb { dir, path, conn }
    }

    /// Everything in the database; see [`dump`].
    pub fn dump(&self) -> Dump {
        dump(&self.conn)
    }

    /// Rows of `table` ordered by its first column; see [`rows`].
    pub fn rows(&self, table: &str) -> Vec<Vec<Value>> {
        rows(&self.conn, table)
    }

    /// A snapshot to compare with [`Snapshot::assert_unchanged`].
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            dump: self.dump(),
            bytes: file_bytes(&self.path),
        }
    }
}

/// The content dump and the raw file of a database at one point in time.
pub struct Snapshot {
    pub dump: Dump,
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// Fails unless the database holds exactly the same schema and rows *and* its file has the
    /// same bytes (so not even a page was rewritten), change counter aside (see
    /// [`without_change_counter`]).
    pub fn assert_unchanged(&self, db: &TempDb) {
        assert!(
            db.conn.is_autocommit(),
            "a transaction was left open on the connection"
        );
        let now = db.dump();
        assert_eq!(self.dump, now, "database content changed");
        let now_bytes = file_bytes(&db.path);
        assert!(
            without_change_counter(&self.bytes) == without_change_counter(&now_bytes),
            "database file bytes changed although its content did not"
        );
    }
}

/// `bytes` (a database file) with the header's file change counter (offset 24) and its copy
/// in "version-valid-for" (offset 92) zeroed.
///
/// When SQLite's apply aborts after it has written some changes, it rolls back to its
/// savepoint and then RELEASEs it, which commits a transaction whose pages are back to their
/// old content: the data is untouched but the change counter is bumped (that is how other
/// connections learn to drop their page cache). Every other byte must stay the same.
pub fn without_change_counter(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for range in [24..28, 92..96] {
        if let Some(field) = out.get_mut(range) {
            field.fill(0);
        }
    }
    out
}

/// The file's bytes, plus those of a rollback journal or WAL if one is lying around (either
/// would mean the file alone does not tell the database's state).
pub fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    for suffix in ["-journal", "-wal"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(extra) = std::fs::read(&side)
            && !extra.is_empty()
        {
            bytes.extend_from_slice(suffix.as_bytes());
            bytes.extend_from_slice(&extra);
        }
    }
    bytes
}

/// Schema SQL and every row of every table (internal ones included), sorted, so two dumps are
/// equal exactly when the databases hold the same data.
pub type Dump = Vec<(String, Vec<Vec<Value>>)>;

/// See [`Dump`].
pub fn dump(conn: &Connection) -> Dump {
    let mut stmt = conn
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    let objects: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out: Dump = objects
        .into_iter()
        .map(|(name, sql)| (format!("schema {name}"), vec![vec![Value::Text(sql)]]))
        .collect();
    for table in tables {
        let mut rows = all_rows(conn, &format!("SELECT * FROM \"{table}\""));
        rows.sort_by_key(|r| format!("{r:?}"));
        out.push((table, rows));
    }
    out
}

/// Rows of `table` ordered by its first column (the key in every test schema).
pub fn rows(conn: &Connection, table: &str) -> Vec<Vec<Value>> {
    all_rows(conn, &format!("SELECT * FROM \"{table}\" ORDER BY 1"))
}

/// Every row a query returns, as owned values.
pub fn all_rows(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| r.get_ref(i).map(Value::from))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Runs `sql` on `conn` with a session attached to every table and returns what it captured
/// (the changeset a device would push for that write).
pub fn record(conn: &Connection, sql: &str) -> Changeset {
    let mut session = Session::new(conn).unwrap();
    session.attach(None).unwrap();
    conn.execute_batch(sql).unwrap();
    let mut bytes = Vec::new();
    session.changeset_strm(&mut bytes).unwrap();
    Changeset::from_bytes(bytes)
}

/// Shorthands for values.
pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn real(r: f64) -> Value {
    Value::Real(r)
}

pub fn null() -> Value {
    Value::Null
}

pub fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

/// Apply options with one policy for every table.
pub fn uniform(policy: Policy) -> ApplyOptions {
    ApplyOptions::with_policies(PolicySet::uniform(policy))
}

/// The four policies, for tests that run the same scenario under each.
pub fn newest(column: &str) -> Policy {
    Policy::NewestWins {
        column: column.to_string(),
    }
}

/// Copies the chinook sample database (read-only source) into `dir` and opens the copy.
pub fn chinook_copy(dir: &Path) -> Option<(PathBuf, Connection)> {
    let src = Path::new(CHINOOK);
    if !src.exists() {
        return None;
    }
    let dst = dir.join("chinook.sqlite");
    std::fs::copy(src, &dst).unwrap();
    let conn = Connection::open(&dst).unwrap();
    Some((dst, conn))
}

/// The real-data sample shared by the project.
pub const CHINOOK: &str = "/work/shared/data/chinook.sqlite";

/// The seed of a randomized test: from the environment variable `var` to replay a run,
/// otherwise fresh. Printed either way (shown when the test fails).
pub fn seed(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{var} must be a u64, not {s:?}")),
        Err(_) => rand::random(),
    };
    eprintln!("seed {seed} (replay with {var}={seed})");
    seed
}
