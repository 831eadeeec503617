//! [`ReadOnlyClient`]: a local copy opened for reading only — no writer lock, no writer
//! thread, no sync engine, and nothing it can write through (every connection is opened
//! `SQLITE_OPEN_READ_ONLY`). So it works while another client, in this process or another
//! (an app, `sync-cli sync --watch`), holds the database's one writer.
//!
//! It reads what the writer has committed: WAL readers see a consistent snapshot per read
//! while the writer works. The search index is read as the writer's indexer keeps it (it may
//! lag; a read-only reader cannot bring it up to date).

use crate::client::SyncClient;
use crate::config::{ClientConfig, FtsTable, RemoteConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::fts::{self, Fts, SearchHit};
use crate::readers::Readers;
use crate::status::{self, Status};
use crate::{rejected::Rejected, settings};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// A local copy opened for reading only; see [`SyncClient::open_read_only`].
pub struct ReadOnlyClient {
    path: PathBuf,
    /// Connections to the database alone: reads and status never depend on the index.
    readers: Readers,
    /// Connections with the search index attached as `fts` (only when there is one).
    searchers: Option<Readers>,
    remote: Option<RemoteConfig>,
    fts: Vec<FtsTable>,
}

impl std::fmt::Debug for ReadOnlyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyClient")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SyncClient {
    /// Opens the local copy at `path` for reading only: [`ReadOnlyClient::read`],
    /// [`status`](ReadOnlyClient::status), [`search`](ReadOnlyClient::search) and the
    /// rejected queue, with no writer lock, so it works while another client holds the
    /// writer ([`open`](Self::open) would fail with [`crate::ErrorKind::InUse`]). It never
    /// writes and never converts a file: anything but a session-sync copy is refused
    /// ([`crate::probe::require_sync_copy`]) and left as it was. Of `config`, it uses
    /// `encryption_key` (an encrypted copy needs it), `read_connections` and `busy_timeout`.
    pub fn open_read_only(path: impl AsRef<Path>, config: &ClientConfig) -> Result<ReadOnlyClient> {
        let path = path.as_ref();
        let key = config.encryption_key.clone();
        if key.is_none() {
            crate::probe::require_sync_copy(path)?;
        } else if !path.is_file() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{}: no such database", path.display()),
            ));
        }
        let busy = config.busy_timeout;
        let readers = Readers::new(path, None, config.read_connections, busy, key.clone());
        let found = readers.with(|c| {
            // An encrypted file cannot be probed from outside: ask through the key.
            let tables: i64 = c.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
                 AND name IN ('_sync_outbox', '_sync_client')",
                [],
                |r| r.get(0),
            )?;
            Ok(if tables == 2 {
                Some((settings::remote(c)?, settings::fts(c)?))
            } else {
                None
            })
        })?;
        let Some((remote, tables)) = found else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} is not a synced copy", path.display()),
            ));
        };
        let index = Fts::path_for(path);
        let (searchers, tables) = if !tables.is_empty() && index.is_file() {
            (Some(Readers::new(path, Some(index), 1, busy, key)), tables)
        } else {
            (None, Vec::new())
        };
        Ok(ReadOnlyClient {
            path: path.to_path_buf(),
            readers,
            searchers,
            remote,
            fts: tables,
        })
    }
}

impl ReadOnlyClient {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection, as [`SyncClient::read`] does (without the search
    /// index attached: use [`search`](Self::search) for it).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.with(f)
    }

    /// The remote settings `init` stored (`None`: a local-only copy).
    pub fn remote(&self) -> Option<&RemoteConfig> {
        self.remote.as_ref()
    }

    /// The indexed tables (empty when the copy has no search index yet).
    pub fn fts_tables(&self) -> &[FtsTable] {
        &self.fts
    }

    /// What [`SyncClient::status`] reports, as last committed. `rowids_remaining` counts the
    /// ids left in leased ranges, `None` when the copy holds none (random ids).
    pub fn status(&self) -> Result<Status> {
        let has_index = !self.fts.is_empty();
        let mut status = self.readers.with(|c| {
            let mut s = status::read(c)?;
            if has_index {
                s.fts_lag = c.query_row("SELECT count(*) FROM _sync_fts_dirty", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
            }
            s.rowids_remaining = leased_ids_left(c)?;
            Ok(s)
        })?;
        status.server = self.remote.as_ref().map(|r| r.url.clone());
        status.database = self.remote.as_ref().map(|r| r.database.clone());
        Ok(status)
    }

    /// Full-text search of the index as it stands (see [`SyncClient::search`]).
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        match &self.searchers {
            Some(searchers) => fts::search(&self.fts, searchers, query, limit),
            None => Ok(Vec::new()),
        }
    }

    /// The rejected queue, oldest first (as [`SyncClient::rejected`]).
    pub fn rejected(&self) -> Result<Vec<Rejected>> {
        self.readers
            .with(|c| Ok(sync_core::client::rejected::list(c)?))
    }

    /// One rejected transaction (as [`SyncClient::rejected_transaction`]).
    pub fn rejected_transaction(&self, id: i64) -> Result<Option<Rejected>> {
        self.readers
            .with(|c| Ok(sync_core::client::rejected::get(c, id)?))
    }
}

impl Drop for ReadOnlyClient {
    fn drop(&mut self) {
        self.readers.close();
        if let Some(s) = &self.searchers {
            s.close();
        }
    }
}

/// Ids left in leased ranges; `None` when there are none (or no range table).
fn leased_ids_left(c: &Connection) -> Result<Option<i64>> {
    let exists: bool = c.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE name = '_sync_rowid_ranges'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    Ok(c.query_row(
        "SELECT sum(end - next) FROM _sync_rowid_ranges WHERE next < end",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use crate::{ClientConfig, ErrorKind, SyncClient};

    #[test]
    fn reads_while_the_writer_is_held_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT)")
            .unwrap();
        let writer = SyncClient::open(&path, ClientConfig::default()).unwrap();
        writer
            .write(|c| Ok(c.execute("INSERT INTO notes VALUES (1, 'a')", [])?))
            .unwrap();
        let second = SyncClient::open(&path, ClientConfig::default());
        assert_eq!(second.err().map(|e| e.kind()), Some(ErrorKind::InUse));
        let reader = SyncClient::open_read_only(&path, &ClientConfig::default()).unwrap();
        let n: i64 = reader
            .read(|c| Ok(c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 1);
        let status = reader.status().unwrap();
        assert_eq!(status.pending_changesets, 1);
        assert_eq!((status.server, status.rowids_remaining), (None, None));
        assert!(reader.remote().is_none());
        let err = reader
            .read(|c| Ok(c.execute("DELETE FROM notes", [])?))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSql, "{err}");
        // The writer was never disturbed.
        writer
            .write(|c| Ok(c.execute("INSERT INTO notes VALUES (2, 'b')", [])?))
            .unwrap();
        let n: i64 = reader
            .read(|c| Ok(c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 2, "the reader sees what the writer committed");
        writer.close();
        // A plain file is refused and left alone.
        let plain = dir.path().join("plain.db");
        rusqlite::Connection::open(&plain)
            .unwrap()
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .unwrap();
        let before = std::fs::read(&plain).unwrap();
        let err = SyncClient::open_read_only(&plain, &ClientConfig::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert_eq!(std::fs::read(&plain).unwrap(), before);
        assert!(!dir.path().join("plain.db-wal").exists());
    }
}
