//! One writer per database file (DESIGN invariant 4), across threads and processes.
//!
//! [`SyncClient::open`](crate::SyncClient::open) takes an exclusive advisory lock on a file
//! next to the database (`app.db` → `app.db.sync-lock`) before touching the database, and
//! holds it until the client is closed. A second open of the same file — in this process or
//! another — fails at once with [`ErrorKind::InUse`] instead of starting a second writer and a
//! second sync engine over the same outbox.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows) on a file of
//! its own, so it never interferes with SQLite's own locks on the database, and the OS drops
//! it when the process dies: a crashed app leaves nothing to clean up. The lock file itself
//! stays (deleting a lock file races with the next opener).

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// A held writer lock; released when dropped.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// The lock file of a database file.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".sync-lock");
    PathBuf::from(name)
}

/// Takes the writer lock of `db`, or fails with [`ErrorKind::InUse`]. SQLite URIs
/// (`file:…`) and in-memory databases have no file to lock next to; they get `None`.
pub(crate) fn acquire(db: &Path) -> Result<Option<WriterLock>> {
    let text = db.to_string_lossy();
    if text.is_empty() || text == ":memory:" || text.starts_with("file:") {
        return Ok(None);
    }
    // The same file under another name (a symlink) must meet the same lock.
    let path = lock_path(&std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot open the lock file {}: {e}", path.display()),
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(WriterLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::InUse,
            format!(
                "{} is already open by another client (in this process or another one, e.g. \
                 `sync-cli sync --watch`); a database has exactly one writer — close the other \
                 one first",
                db.display()
            ),
        )),
        Err(TryLockError::Error(e)) => Err(Error::new(
            ErrorKind::Io,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let first = acquire(&db).unwrap().expect("a file path is locked");
        let err = acquire(&db).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
        assert!(err.to_string().contains("app.db"), "{err}");
        drop(first);
        assert!(acquire(&db).unwrap().is_some());
        assert!(lock_path(&db).ends_with("app.db.sync-lock"));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_the_database_meets_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        std::fs::write(&db, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let _held = acquire(&db).unwrap().expect("locked");
        assert_eq!(acquire(&link).unwrap_err().kind(), ErrorKind::InUse);
    }

    #[test]
    fn uris_and_memory_databases_are_not_locked() {
        assert!(acquire(Path::new(":memory:")).unwrap().is_none());
        assert!(
            acquire(Path::new("file:x.db?mode=memory"))
                .unwrap()
                .is_none()
        );
    }
}
