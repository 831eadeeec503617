//! What a file is — missing, not SQLite, a plain SQLite database, or a session-sync copy —
//! found out without changing it: no lock file, no WAL switch, no table, no `-wal`/`-shm`.
//!
//! Opening a database in WAL mode with SQLite, even read-only, creates its `-wal` and `-shm`
//! files and leaves them; so the header is read first (a copy is always in WAL mode), and the
//! schema is read with `immutable=1`, which takes no lock and opens no companion file. When a
//! `-wal` file with content already exists, recent schema changes may live there only, so
//! that file is opened read-only the ordinary way (its companions exist already).

use crate::error::{Error, ErrorKind, Result};
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// Nothing.
    Missing,
    /// A file that is not an SQLite database (an empty file included).
    NotSqlite,
    /// An SQLite database that session-sync has not made into a copy (no client tables).
    Plain,
    /// A session-sync copy (made by `init`, `adopt` or a local-only `open`).
    SyncCopy,
}

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Finds out what `path` is without changing anything on disk.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let mut header = [0u8; 100];
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileKind::Missing),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Io,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    if file.metadata()?.is_dir() {
        return Ok(FileKind::NotSqlite);
    }
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..])? {
            0 => break,
            n => read += n,
        }
    }
    if read < header.len() || &header[..16] != MAGIC {
        return Ok(FileKind::NotSqlite);
    }
    // Bytes 18 and 19: file format read/write versions, 2 in WAL mode. Every copy is.
    if header[18] != 2 || header[19] != 2 {
        return Ok(FileKind::Plain);
    }
    let conn = open_untouched(path)?;
    let found: i64 = match conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
         AND name IN ('_sync_outbox', '_sync_client')",
        [],
        |r| r.get(0),
    ) {
        Ok(n) => n,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Ok(FileKind::NotSqlite);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(if found == 2 {
        FileKind::SyncCopy
    } else {
        FileKind::Plain
    })
}

/// A read-only connection to `path` that leaves nothing behind: `immutable=1` (no lock, no
/// `-wal`/`-shm`) unless a `-wal` with content exists, whose pages only an ordinary reader
/// sees. For reading a schema; a file another program is writing may change under it.
pub fn open_untouched(path: &Path) -> Result<Connection> {
    let wal_has_content = std::fs::metadata(companion(path, "-wal")).is_ok_and(|m| m.len() > 0);
    Ok(if wal_has_content {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    } else {
        Connection::open_with_flags(
            immutable_uri(path)?,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    })
}

/// `path` + `suffix` (`app.db` → `app.db-wal`).
pub(crate) fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A `file:` URI for `path` with `immutable=1` (absolute; `%`, `?` and `#` escaped).
pub(crate) fn immutable_uri(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path)?;
    let text = absolute.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("{} is not a UTF-8 path", path.display()),
        )
    })?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// Refuses anything at `path` but a session-sync copy, changing nothing: the check that
/// commands which only read (and any that should not convert a file) make first.
pub fn require_sync_copy(path: &Path) -> Result<()> {
    match file_kind(path)? {
        FileKind::SyncCopy => Ok(()),
        FileKind::Missing => Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: no such database (`sync-cli init` creates one)",
                path.display()
            ),
        )),
        FileKind::NotSqlite => Err(Error::new(
            ErrorKind::Config,
            format!("{} is not an SQLite database", path.display()),
        )),
        FileKind::Plain => Err(Error::new(
            ErrorKind::Config,
            format!(
                "{} is a plain SQLite database, not a synced copy; it was left unchanged \
                 (`sync-cli init {} --adopt …` makes it one, keeping its rows)",
                path.display(),
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn kinds_are_told_apart_without_touching_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let plain = d.join("plain.db");
        let wal = d.join("wal #1?.db");
        for (p, mode) in [(&plain, "DELETE"), (&wal, "WAL")] {
            let c = Connection::open(p).unwrap();
            c.execute_batch(&format!(
                "PRAGMA journal_mode = {mode}; CREATE TABLE t(id INTEGER PRIMARY KEY);"
            ))
            .unwrap();
        }
        std::fs::write(d.join("text.db"), b"hello").unwrap();
        std::fs::write(d.join("empty.db"), b"").unwrap();
        let before = listing(d);
        assert_eq!(file_kind(&plain).unwrap(), FileKind::Plain);
        assert_eq!(file_kind(&wal).unwrap(), FileKind::Plain);
        assert_eq!(file_kind(&d.join("text.db")).unwrap(), FileKind::NotSqlite);
        assert_eq!(file_kind(&d.join("empty.db")).unwrap(), FileKind::NotSqlite);
        assert_eq!(file_kind(&d.join("none.db")).unwrap(), FileKind::Missing);
        assert_eq!(file_kind(d).unwrap(), FileKind::NotSqlite);
        let err = require_sync_copy(&wal).unwrap_err();
        assert!(err.to_string().contains("--adopt"), "{err}");
        assert_eq!(listing(d), before, "nothing was created or changed");
    }
}
