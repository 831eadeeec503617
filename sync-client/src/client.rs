//! [`SyncClient`]: a local SQLite database that syncs — the façade an app holds. Opening is in
//! `open`, the sync itself in `engine`, the background threads in `background`.

use crate::background::{Background, Parts};
use crate::config::{FtsTable, RemoteConfig};
use crate::engine::{ChangeListener, SyncReport, Syncer};
use crate::error::{Error, ErrorKind, Result};
use crate::fts::{Fts, SearchHit};
use crate::live::SyncStatus;
use crate::notify::{Notifier, Subscription};
use crate::readers::Readers;
use crate::rowid::{Exhausted, Rowids};
use crate::status::{self, Status};
use crate::writer::Writer;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use sync_core::client::conflicts::{clear_local_conflicts, clear_server_conflicts};
use sync_core::engine::tx::Tx;

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) writer: Arc<Writer>,
    pub(crate) readers: Arc<Readers>,
    pub(crate) rowids: Arc<Rowids>,
    /// The size limits a write and a sync work under.
    pub(crate) limits: Arc<crate::limits::Limits>,
    /// The sync and what it tells when it ends; shared with the background threads.
    pub(crate) syncer: Arc<Syncer>,
    pub(crate) fts: Option<Arc<Fts>>,
    pub(crate) background: Mutex<Option<Background>>,
    pub(crate) remote: Option<RemoteConfig>,
    /// Delivers watched queries and status to their subscribers.
    pub(crate) notifier: Arc<Notifier>,
    /// Held from open until close (or drop): no other client may open this file meanwhile.
    pub(crate) writer_lock: Mutex<Option<crate::lock::WriterLock>>,
}

impl Inner {
    fn close(&self) {
        // The background threads hold none of the client's locks, so stopping them never
        // waits on anything here.
        let background = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(bg) = background {
            bg.stop();
        }
        self.notifier.close();
        self.writer.close();
        self.readers.close();
        if let Some(fts) = &self.fts {
            fts.close();
        }
        // The writer's connection is closed: another client may open the file now.
        self.writer_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// A local database that syncs with a session-sync server.
///
/// Writes go through one writer thread (the only read-write connection) and are captured as
/// changesets in the same transaction; reads use a pool of read-only connections. Cloning is
/// cheap and shares the database.
#[derive(Clone)]
pub struct SyncClient {
    pub(crate) inner: Arc<Inner>,
}

impl SyncClient {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a write transaction on the writer thread and captures its changes into the
    /// outbox atomically. `f` gets the writer connection inside the transaction; nested
    /// [`savepoint()`](crate::savepoint()) calls compose. When `Ok` returns, the rows and their
    /// changeset are committed together; when `f` fails, nothing is written.
    ///
    /// ```
    /// # fn main() -> sync_client::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("app.db");
    /// # rusqlite::Connection::open(&path)?.execute_batch(
    /// #     "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")?;
    /// use sync_client::{ClientConfig, SyncClient, savepoint};
    ///
    /// let client = SyncClient::open(&path, ClientConfig::default())?;
    /// let id = client.write(|tx| {
    ///     tx.execute("INSERT INTO notes(id, title) VALUES (sync_id(), 'kept')", [])?;
    ///     let id = tx.last_insert_rowid();
    ///     // A failing inner step undoes only its own writes.
    ///     let inner = savepoint(tx, |sp| -> sync_client::Result<()> {
    ///         sp.execute("INSERT INTO notes(id, title) VALUES (sync_id(), 'undone')", [])?;
    ///         sp.execute("INSERT INTO notes(id, title) VALUES (?1, 'duplicate')", [id])?;
    ///         Ok(())
    ///     });
    ///     assert!(inner.is_err());
    ///     Ok(id)
    /// })?;
    /// let titles: Vec<String> = client.read(|c| {
    ///     let mut stmt = c.prepare("SELECT title FROM notes")?;
    ///     let rows = stmt.query_map([], |r| r.get(0))?;
    ///     Ok(rows.collect::<Result<_, _>>()?)
    /// })?;
    /// assert_eq!(titles, ["kept"]);
    /// assert_eq!(client.status()?.pending_changesets, 1);
    /// # let _ = id;
    /// # client.close();
    /// # Ok(())
    /// # }
    /// ```
    pub fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (value, changed) = self.inner.writer.run(self.write_job(f))??;
        self.wrote(changed);
        Ok(value)
    }

    /// What `write` runs on the writer thread: `f` captured, and whether it changed rows.
    pub(crate) fn write_job<T, F>(
        &self,
        f: F,
    ) -> impl FnOnce(&mut Connection) -> Result<(T, bool)> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let rowids = Arc::clone(&self.inner.rowids);
        // A session records no DDL: in a database that syncs, a schema change would exist on
        // this device only. A local-only database creates its own tables.
        use sync_core::engine::capture::{CaptureError, CaptureOptions, SchemaChanges};
        let syncs = self.inner.syncer.engine.is_some();
        let options = CaptureOptions {
            schema_changes: if syncs {
                SchemaChanges::Refuse
            } else {
                SchemaChanges::AllowTrackable
            },
            // Only a database that syncs has a limit to keep: nothing else would refuse it.
            max_bytes: syncs.then(|| self.inner.limits.transaction()),
            // A large changeset waits in a file beside the database, not in memory.
            scratch: Some(self.scratch_dir()),
        };
        move |conn: &mut Connection| {
            rowids.take_exhausted();
            let result = sync_core::engine::capture::capture_with(conn, &options, |c| {
                let value = f(c)?;
                rowids.persist(c)?;
                Ok::<_, Error>(value)
            });
            match result {
                Ok(captured) => Ok((captured.value, captured.outbox_seq.is_some())),
                Err(CaptureError::Write(_)) if rowids.take_exhausted() => Err(exhausted(Exhausted)),
                Err(CaptureError::Write(e)) => Err(e),
                Err(CaptureError::Untrackable(e)) => Err(e.into()),
                Err(e @ CaptureError::TooLarge { .. }) => {
                    Err(Error::new(ErrorKind::TooLarge, e.to_string()).with_source(e))
                }
                Err(CaptureError::Spool(e)) => Err(e.into()),
                Err(e) => Err(Error::new(ErrorKind::InvalidSql, e.to_string()).with_source(e)),
            }
        }
    }

    /// After a write: a change wakes the background sync and the indexer.
    pub(crate) fn wrote(&self, changed: bool) {
        if changed {
            self.notify_local_write();
        }
    }

    /// Where large changesets wait on their way: the database's own directory (same file
    /// system, so the space is the database's).
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.inner
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }

    /// Runs `f` with a read-only connection from the pool (SQLite refuses writes on it).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.inner.readers.with(f)
    }

    /// A new id for an `INTEGER PRIMARY KEY`, from the configured strategy (the SQL function
    /// `sync_id()` gives the same inside `write`).
    pub fn new_id(&self) -> Result<i64> {
        let rowids = Arc::clone(&self.inner.rowids);
        let id = self.inner.writer.run(move |conn| -> Result<i64> {
            let id = rowids.next().map_err(exhausted)?;
            rowids.persist(conn)?;
            Ok(id)
        })??;
        if self.inner.rowids.wants_lease().is_some() {
            self.notify_local_write();
        }
        Ok(id)
    }

    /// Syncs once now: push, pull and rebase. Fails with [`ErrorKind::Config`] when no server
    /// is configured.
    pub fn sync_now(&self) -> Result<SyncReport> {
        self.inner.syncer.run()
    }

    /// Compares the local synced state (the tables with pending transactions undone) with the
    /// server's at the local cursor: lineage, chain value and content checksum. Changes
    /// nothing; a difference is repaired by the next sync. Fails with [`ErrorKind::Config`]
    /// when no server is configured.
    pub fn verify(&self) -> Result<crate::Verification> {
        let engine = self.inner.syncer.engine.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no server configured for this database (run init)",
            )
        })?;
        crate::verify::verify(
            &engine.writer,
            &*engine.transport,
            engine.config.scratch_dir.clone(),
        )
    }

    /// Brings the local copy to the server's schema version now, then syncs: asks the server
    /// for its version and, when it is newer, runs the migration scripts it serves in place —
    /// in one local transaction with the rebase of the pending transactions, which are kept
    /// (one the new schema cannot take goes to the rejected queue with the reason). Any sync
    /// does the same when it learns of a newer version; this does it on demand.
    /// `report.upgraded_to` says whether it upgraded.
    pub fn upgrade(&self) -> Result<SyncReport> {
        if let Some(engine) = &self.inner.syncer.engine {
            // Its answer shows the server's version to the sync that follows.
            engine.transport.info()?;
        }
        self.inner.syncer.run()
    }

    /// Where the database stands.
    pub fn status(&self) -> Result<Status> {
        let fts_lag = match &self.inner.fts {
            Some(f) => f.lag(&self.inner.readers)?,
            None => 0,
        };
        let mut status = self.read(status::read)?;
        status.fts_lag = fts_lag;
        status.rowids_remaining = self.inner.rowids.remaining();
        status.server = self.inner.remote.as_ref().map(|r| r.url.clone());
        status.database = self.inner.remote.as_ref().map(|r| r.database.clone());
        Ok(status)
    }

    /// Forgets the conflicts listed in `seen` — a [`Status`] whose `local_conflicts` and
    /// `server_conflicts` the app has shown or handled — so `status()` stops reporting them.
    /// Conflicts recorded after `seen` was taken stay. A local conflict's dropped changeset
    /// goes with it. Returns how many records were removed.
    pub fn clear_conflicts(&self, seen: &Status) -> Result<usize> {
        let local = seen.local_conflicts.iter().map(|c| c.id).max();
        let server = seen.server_conflicts.iter().map(|c| c.id).max();
        self.clear_conflicts_through(local, server)
    }

    /// Forgets the local conflicts with `id <= local` and the server conflicts with
    /// `id <= server` (`None`: none of that kind). Record ids only grow, so ids seen in an
    /// earlier [`Status`] never name a newer conflict. Returns how many records were removed.
    pub fn clear_conflicts_through(
        &self,
        local: Option<i64>,
        server: Option<i64>,
    ) -> Result<usize> {
        self.inner.writer.run(move |conn| -> Result<usize> {
            let tx = Tx::begin(conn)?;
            let mut removed = 0;
            if let Some(id) = local {
                removed += clear_local_conflicts(conn, id)?;
            }
            if let Some(id) = server {
                removed += clear_server_conflicts(conn, id)?;
            }
            tx.commit()?;
            Ok(removed)
        })?
    }

    /// The tables indexed for full-text search (empty when search is not configured).
    pub fn fts_tables(&self) -> &[FtsTable] {
        self.inner.fts.as_ref().map_or(&[], |f| f.tables())
    }

    /// Full-text search over the configured tables, best first. The index may lag; see
    /// `status().fts_lag` and [`SyncClient::index_now`].
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let fts = self.inner.fts.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no full-text search is configured for this database",
            )
        })?;
        fts.search(&self.inner.readers, query, limit)
    }

    /// Indexes everything pending for search now; returns the rows indexed.
    pub fn index_now(&self) -> Result<usize> {
        let Some(fts) = &self.inner.fts else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let n = fts.index_batch(&self.inner.readers, &self.inner.writer)?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Watches a query: `f` gets its rows soon after this returns, then fresh rows after
    /// every committed write — local, or from the server by a sync — that touched a table
    /// the query reads (SQLite names them while preparing it, through views and subqueries;
    /// names compare as SQLite compares them, ignoring case). Writes land coalesced: the query
    /// re-runs once however many commits arrived meanwhile, and never holds the writer (it
    /// runs on a read-only connection). Rows equal to the last ones delivered are not
    /// delivered again. `f` runs on the client's notifier thread, one
    /// delivery at a time; keep it short. A query that does not prepare, would write or has the
    /// wrong number of parameters fails here; one that fails later (a schema upgrade dropped a
    /// column) delivers the error. Reads of the search index (`fts.*`) are not watched.
    ///
    /// Deliveries stop when the [`Subscription`] is dropped or cancelled, or the client closed.
    pub fn watch(
        &self,
        sql: &str,
        params: Vec<rusqlite::types::Value>,
        f: impl FnMut(Result<crate::Rows>) + Send + 'static,
    ) -> Result<Subscription> {
        self.inner
            .notifier
            .watch(crate::watch::Query::plain(sql, params, f))
    }

    /// [`SyncClient::watch`] with each row mapped by `map` (as `query_map` would).
    pub fn watch_map<T, M, F>(
        &self,
        sql: &str,
        params: Vec<rusqlite::types::Value>,
        map: M,
        f: F,
    ) -> Result<Subscription>
    where
        T: PartialEq + Clone + Send + 'static,
        M: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
        F: FnMut(Result<Vec<T>>) + Send + 'static,
    {
        self.inner
            .notifier
            .watch(crate::watch::Query::mapped(sql, params, map, f))
    }

    /// Subscribes to the sync status: `f` gets the current [`SyncStatus`] soon after this
    /// returns, then a fresh one whenever any of it changes — a sync's phase and progress
    /// (push, pull, bootstrap, upgrade), pending transactions and bytes after a write or a
    /// push, the rejected and conflict counts, the last error. Changes coalesce: a slow `f`
    /// sees the latest, not every step. Runs on the notifier thread, like [`SyncClient::watch`].
    pub fn watch_status(
        &self,
        f: impl FnMut(&SyncStatus) + Send + 'static,
    ) -> Result<Subscription> {
        self.inner.notifier.watch_status(Box::new(f))
    }

    /// The [`SyncStatus`] now (what [`SyncClient::watch_status`] delivers).
    pub fn sync_status(&self) -> Result<SyncStatus> {
        let now = self.inner.syncer.engine.as_ref().map(|e| e.activity.now());
        self.read(|c| crate::live::read(c, now.unwrap_or_default()))
    }

    /// Registers a listener told which tables changed after remote changes were applied
    /// (only those; [`SyncClient::watch`] hears of local writes too).
    pub fn set_change_listener(&self, listener: Option<ChangeListener>) {
        *self
            .inner
            .syncer
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = listener;
    }

    /// Starts background sync (on an interval, after local writes, on server events) and
    /// background indexing. Idempotent.
    pub fn start_background(&self) -> Result<()> {
        let mut bg = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if bg.is_none() {
            *bg = Some(Background::start(Parts {
                syncer: Arc::clone(&self.inner.syncer),
                readers: Arc::clone(&self.inner.readers),
                writer: Arc::clone(&self.inner.writer),
                fts: self.inner.fts.clone(),
            })?);
        }
        Ok(())
    }

    /// Stops background work, finishes queued writes and closes every connection.
    /// Idempotent; dropping the last handle does the same.
    pub fn close(&self) {
        self.inner.close();
    }

    pub(crate) fn notify_local_write(&self) {
        if let Some(bg) = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bg.wake_sync();
            bg.wake_indexer();
        }
    }
}

fn exhausted(e: Exhausted) -> Error {
    Error::new(ErrorKind::RowidsExhausted, e.to_string())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
