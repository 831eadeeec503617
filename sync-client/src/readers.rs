//! A pool of read-only connections. They are opened with `SQLITE_OPEN_READ_ONLY`, so SQLite
//! itself refuses any write through them (DESIGN invariant 4), and in WAL mode they read
//! consistent snapshots while the writer works.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct Pool {
    idle: Vec<Connection>,
    open: usize,
    closed: bool,
}

/// The read-only pool.
pub(crate) struct Readers {
    path: PathBuf,
    fts_path: Option<PathBuf>,
    size: usize,
    busy_timeout: Duration,
    key: Option<sync_core::engine::cipher::EncryptionKey>,
    pool: Mutex<Pool>,
    returned: Condvar,
}

impl Readers {
    /// A pool of up to `size` connections to `path`, each with the FTS database (if any)
    /// attached read-only as `fts`.
    pub(crate) fn new(
        path: &Path,
        fts_path: Option<PathBuf>,
        size: usize,
        busy_timeout: Duration,
        key: Option<sync_core::engine::cipher::EncryptionKey>,
    ) -> Readers {
        Readers {
            path: path.to_path_buf(),
            fts_path,
            size: size.max(1),
            busy_timeout,
            key,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                closed: false,
            }),
            returned: Condvar::new(),
        }
    }

    fn open_one(&self) -> Result<Connection> {
        let conn = sync_core::engine::cipher::open(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            self.key.as_ref(),
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        if let Some(fts) = &self.fts_path {
            sync_core::engine::cipher::attach(&conn, &readonly_uri(fts), "fts", self.key.as_ref())?;
        }
        Ok(conn)
    }

    /// Runs `f` with a pooled connection, waiting for one if all are busy.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if pool.closed {
                    return Err(Error::new(ErrorKind::Closed, "the database was closed"));
                }
                if let Some(c) = pool.idle.pop() {
                    break c;
                }
                if pool.open < self.size {
                    pool.open += 1;
                    drop(pool);
                    match self.open_one() {
                        Ok(c) => break c,
                        Err(e) => {
                            self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                            return Err(e);
                        }
                    }
                }
                pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = f(&conn).map_err(|e| {
            if e.sqlite_code() == Some(rusqlite::ErrorCode::ReadOnly) {
                Error::new(
                    ErrorKind::InvalidSql,
                    format!("{e}: reads use read-only connections; write through write()"),
                )
            } else {
                e
            }
        });
        // A read that left a transaction open (BEGIN without COMMIT) would pin an old
        // snapshot for the next user: end it.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.closed {
            pool.open -= 1;
        } else {
            pool.idle.push(conn);
        }
        drop(pool);
        self.returned.notify_one();
        result
    }

    /// Closes idle connections and refuses new reads.
    pub(crate) fn close(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.closed = true;
        let n = pool.idle.len();
        pool.idle.clear();
        pool.open -= n;
        drop(pool);
        self.returned.notify_all();
    }
}

/// A `file:` URI opening `path` read-only (for ATTACH).
pub(crate) fn readonly_uri(path: &Path) -> String {
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
