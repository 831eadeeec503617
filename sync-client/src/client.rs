//! [`SyncClient`]: a local SQLite database that syncs.

use crate::background::Background;
use crate::config::{ClientConfig, Durability, FtsTable, RemoteConfig};
use crate::engine::{Engine, EngineConfig, SyncReport, now_ms};
use crate::error::{Error, ErrorKind, Result};
use crate::fts::{Fts, SearchHit};
use crate::readers::Readers;
use crate::rowid::{Exhausted, Rowids};
use crate::server_conflicts::{self, ServerConflict};
use crate::transport::{HttpTransport, Transport};
use crate::writer::Writer;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use sync_core::client::{self, LocalConflict};

/// A listener told which tables changed after remote changes were applied.
pub type ChangeListener = Arc<dyn Fn(&[String]) + Send + Sync>;

/// What `status()` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Last log seq integrated.
    pub cursor: i64,
    /// Schema version of the local database.
    pub schema_version: u32,
    /// Changesets waiting to be pushed.
    pub pending_changesets: u64,
    /// Their total size in bytes.
    pub pending_bytes: u64,
    /// The batch sent and not yet settled, if any.
    pub inflight_batch: Option<String>,
    /// When the last sync succeeded (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// The last sync error, cleared by a successful sync.
    pub last_error: Option<String>,
    /// Pending changes that could not be kept (most recent last).
    pub local_conflicts: Vec<LocalConflict>,
    /// Conflicts the server reported for this device's own pushed batches, with the server's
    /// resolution (most recent last): a change of ours that lost, or a rowid collision.
    pub server_conflicts: Vec<ServerConflict>,
    /// Rows waiting to be indexed for search.
    pub fts_lag: u64,
    /// Leased rowids left (range strategy only).
    pub rowids_remaining: Option<i64>,
    /// The server this database syncs with, if configured.
    pub server: Option<String>,
    /// The database name on the server.
    pub database: Option<String>,
}

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) writer: Arc<Writer>,
    pub(crate) readers: Readers,
    pub(crate) rowids: Arc<Rowids>,
    pub(crate) engine: Option<Engine>,
    pub(crate) fts: Option<Fts>,
    pub(crate) sync_interval: std::time::Duration,
    pub(crate) background: Mutex<Option<Background>>,
    pub(crate) listener: Mutex<Option<ChangeListener>>,
    remote: Option<RemoteConfig>,
    /// Held from open until close (or drop): no other client may open this file meanwhile.
    writer_lock: Mutex<Option<crate::lock::WriterLock>>,
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

const REMOTE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sync_remote (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;";

fn stored_remote(conn: &Connection) -> rusqlite::Result<Option<RemoteConfig>> {
    let get = |k: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT value FROM _sync_remote WHERE key = ?1", [k], |r| {
            r.get(0)
        })
        .optional()
    };
    Ok(match (get("url")?, get("token")?, get("database")?) {
        (Some(url), Some(token), Some(database)) => Some(RemoteConfig {
            url,
            token,
            database,
        }),
        _ => None,
    })
}

fn store_remote(conn: &Connection, remote: &RemoteConfig) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare("INSERT OR REPLACE INTO _sync_remote(key, value) VALUES (?1, ?2)")?;
    stmt.execute(["url", remote.url.as_str()])?;
    stmt.execute(["token", remote.token.as_str()])?;
    stmt.execute(["database", remote.database.as_str()])?;
    Ok(())
}

/// The key under which the FTS configuration is stored (JSON, a list of [`FtsTable`]).
const FTS_KEY: &str = "fts";

fn stored_fts(conn: &Connection) -> Result<Vec<FtsTable>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT value FROM _sync_remote WHERE key = ?1",
            [FTS_KEY],
            |r| r.get(0),
        )
        .optional()?;
    match json {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the stored full-text search configuration is unreadable: {e}"),
            )
        }),
    }
}

fn store_fts(conn: &Connection, tables: &[FtsTable]) -> rusqlite::Result<()> {
    let json = serde_json::to_string(tables).expect("FTS tables serialize");
    set_note(conn, FTS_KEY, Some(&json))
}

fn set_note(conn: &Connection, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT OR REPLACE INTO _sync_remote(key, value) VALUES (?1, ?2)",
            params![key, v],
        )?,
        None => conn.execute("DELETE FROM _sync_remote WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// Removes a database `init` created (with its WAL files and search index) unless kept.
struct Created<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let fts = Fts::path_for(self.path);
        for base in [self.path, fts.as_path()] {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = base.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
    }
}

impl SyncClient {
    /// Creates a new local copy of a server database at `path` (which must not exist): reads
    /// the database's info, downloads a snapshot, and stores the server settings in the
    /// database so later opens need no remote configuration. On failure nothing is left at
    /// `path`.
    pub fn init(
        path: impl AsRef<Path>,
        remote: RemoteConfig,
        config: ClientConfig,
    ) -> Result<SyncClient> {
        let path = path.as_ref();
        // The writer lock first: a concurrent first open of the same path fails here with
        // `InUse` and never reaches any clean-up, which would delete the winner's files.
        let mut writer_lock = crate::lock::acquire(path)?;
        let result = SyncClient::init_locked(path, remote, config, &mut writer_lock);
        if result.is_err() && writer_lock.is_some() && !path.exists() {
            // Nothing was made, and the lock is still ours: its file goes too (before the
            // lock is released, so nobody can be holding it).
            let _ = std::fs::remove_file(crate::lock::lock_path(path));
        }
        result
    }

    fn init_locked(
        path: &Path,
        remote: RemoteConfig,
        mut config: ClientConfig,
        writer_lock: &mut Option<crate::lock::WriterLock>,
    ) -> Result<SyncClient> {
        if path.exists() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} already exists; init creates a new local copy",
                    path.display()
                ),
            ));
        }
        let transport = HttpTransport::new(&remote, config.http_timeout)?;
        transport.info()?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let scratch = tempfile::Builder::new()
            .prefix(".sync-init")
            .tempdir_in(dir)?;
        let snap = scratch.path().join("snapshot.db");
        transport.snapshot(&snap)?;
        // From here on the file exists: a failure (a bad FTS table, say) must not leave a
        // half-made copy behind that the retry would refuse as "already exists".
        let mut created = Created { path, keep: false };
        {
            let conn = client::init_from_snapshot(&snap, path)?;
            conn.execute_batch(REMOTE_TABLE)?;
            store_remote(&conn, &remote)?;
        }
        config.remote = Some(remote);
        let client = SyncClient::open_locked(path.to_path_buf(), config, writer_lock)?;
        created.keep = true;
        Ok(client)
    }

    /// Opens (creating if needed) the local database at `path`.
    ///
    /// Sets WAL mode, installs the internal tables, refuses schemas with tables sync cannot
    /// track (naming them), registers `sync_id()`, starts the writer thread, and — with FTS
    /// configured — opens or rebuilds the index. Sync settings come from `config.remote`, else
    /// from what `init` stored; without either the database works local-only. FTS tables
    /// likewise come from `config.fts` (then stored), else from the stored list.
    ///
    /// A database has exactly one writer: while a client has the file open (until
    /// [`close`](Self::close) or drop), another `open` of it — in this process or another —
    /// fails with [`ErrorKind::InUse`].
    pub fn open(path: impl AsRef<Path>, config: ClientConfig) -> Result<SyncClient> {
        let path = path.as_ref().to_path_buf();
        // Before anything touches the file: one writer per database (see `lock`).
        let mut writer_lock = crate::lock::acquire(&path)?;
        SyncClient::open_locked(path, config, &mut writer_lock)
    }

    /// [`open`](Self::open) with the writer lock already held; the lock moves into the client
    /// on success and stays with the caller on failure.
    fn open_locked(
        path: PathBuf,
        config: ClientConfig,
        writer_lock: &mut Option<crate::lock::WriterLock>,
    ) -> Result<SyncClient> {
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(config.busy_timeout)?;
        let sync = match config.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))?;
        sync_core::schema::check_trackable(&conn)?;
        client::install(&conn)?;
        conn.execute_batch(REMOTE_TABLE)?;
        let remote = match &config.remote {
            Some(r) => {
                store_remote(&conn, r)?;
                Some(r.clone())
            }
            None => stored_remote(&conn)?,
        };
        server_conflicts::install(&conn)?;
        let fts_tables = if config.fts.is_empty() {
            stored_fts(&conn)?
        } else {
            config.fts.clone()
        };
        let rowids = Rowids::load(&conn, config.rowids)?;
        rowids.register_function(&conn)?;
        let fts = if fts_tables.is_empty() {
            None
        } else {
            let fts = Fts::open(&path, fts_tables.clone(), &conn)?.0;
            // Stored only once the tables proved valid, so a typo is not remembered.
            store_fts(&conn, &fts_tables)?;
            Some(fts)
        };
        let writer = Arc::new(Writer::start(conn)?);
        let readers = Readers::new(
            &path,
            fts.as_ref().map(|f| f.file().to_path_buf()),
            config.read_connections,
            config.busy_timeout,
        );
        let engine = match &remote {
            Some(r) => {
                let transport: Arc<dyn Transport> =
                    Arc::new(HttpTransport::new(r, config.http_timeout)?);
                Some(Engine::new(
                    Arc::clone(&writer),
                    transport,
                    Arc::clone(&rowids),
                    EngineConfig {
                        push_max_bytes: config.push_max_bytes,
                        retries: config.retries.max(1),
                        scratch_dir: path
                            .parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .unwrap_or(Path::new("."))
                            .to_path_buf(),
                    },
                ))
            }
            None => None,
        };
        Ok(SyncClient {
            inner: Arc::new(Inner {
                path,
                writer,
                readers,
                rowids,
                engine,
                fts,
                sync_interval: config.sync_interval,
                background: Mutex::new(None),
                listener: Mutex::new(None),
                remote,
                writer_lock: Mutex::new(writer_lock.take()),
            }),
        })
    }

    /// Replaces the transport (tests inject faults around the real HTTP transport this way).
    #[doc(hidden)]
    pub fn with_transport(self, transport: Arc<dyn Transport>) -> Result<SyncClient> {
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| Error::new(ErrorKind::Internal, "with_transport needs the only handle"))?;
        let engine = inner
            .engine
            .map(|e| Engine::new(e.writer, transport, e.rowids, e.config));
        Ok(SyncClient {
            inner: Arc::new(Inner { engine, ..inner }),
        })
    }

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
        let rowids = Arc::clone(&self.inner.rowids);
        // A session records no DDL: in a database that syncs, a schema change would exist on
        // this device only. A local-only database creates its own tables.
        let schema_changes = if self.inner.engine.is_some() {
            sync_core::SchemaChanges::Refuse
        } else {
            sync_core::SchemaChanges::AllowTrackable
        };
        let (value, changed) = self.inner.writer.run(move |conn| {
            rowids.take_exhausted();
            let result = sync_core::capture_with(conn, schema_changes, |c| {
                let value = f(c)?;
                rowids.persist(c)?;
                Ok::<_, Error>(value)
            });
            match result {
                Ok(captured) => Ok((captured.value, captured.outbox_seq.is_some())),
                Err(sync_core::CaptureError::Write(_)) if rowids.take_exhausted() => {
                    Err(exhausted(Exhausted))
                }
                Err(sync_core::CaptureError::Write(e)) => Err(e),
                Err(sync_core::CaptureError::Untrackable(e)) => Err(e.into()),
                Err(e) => Err(Error::new(ErrorKind::InvalidSql, e.to_string()).with_source(e)),
            }
        })??;
        if changed {
            self.notify_local_write();
        }
        Ok(value)
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
        run_sync(&self.inner)
    }

    /// Where the database stands.
    pub fn status(&self) -> Result<Status> {
        let fts_lag = match &self.inner.fts {
            Some(f) => f.lag(&self.inner.readers)?,
            None => 0,
        };
        let remote = self.inner.remote.clone();
        let mut status = self.read(|c| {
            let (pending_changesets, pending_bytes) = sync_core::outbox::stats(c)?;
            let note = |k: &str| -> rusqlite::Result<Option<String>> {
                c.query_row("SELECT value FROM _sync_remote WHERE key = ?1", [k], |r| {
                    r.get(0)
                })
                .optional()
            };
            Ok(Status {
                cursor: client::cursor(c)?,
                schema_version: client::schema_version(c)?,
                pending_changesets,
                pending_bytes,
                inflight_batch: client::inflight(c)?.map(|f| f.batch_id),
                last_sync_ms: note("last_sync_ms")?.and_then(|v| v.parse().ok()),
                last_error: note("last_error")?,
                local_conflicts: client::local_conflicts(c, 0)?,
                server_conflicts: server_conflicts::list(c)?,
                fts_lag,
                rowids_remaining: None,
                server: remote.as_ref().map(|r| r.url.clone()),
                database: remote.as_ref().map(|r| r.database.clone()),
            })
        })?;
        status.rowids_remaining = self.inner.rowids.remaining();
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
            let tx = conn.unchecked_transaction()?;
            let mut removed = 0;
            if let Some(id) = local {
                removed += client::clear_local_conflicts(&tx, id)?;
            }
            if let Some(id) = server {
                removed += server_conflicts::clear(&tx, id)?;
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

    /// Registers a listener told which tables changed after remote changes were applied.
    pub fn set_change_listener(&self, listener: Option<ChangeListener>) {
        *self
            .inner
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
            *bg = Some(Background::start(Arc::downgrade(&self.inner))?);
        }
        Ok(())
    }

    /// Stops background work, finishes queued writes and closes every connection.
    pub fn close(&self) {
        // Take the background out first and stop it with the lock released: a background
        // sync finishing meanwhile takes that lock to wake the indexer, and `stop` waits for
        // that sync.
        let background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(bg) = background {
            bg.stop();
        }
        self.inner.writer.close();
        self.inner.readers.close();
        if let Some(fts) = &self.inner.fts {
            fts.close();
        }
        // The writer's connection is closed: another client may open the file now.
        self.inner
            .writer_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn notify_local_write(&self) {
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

/// One sync with its bookkeeping: the outcome noted for `status`, listeners and the indexer
/// told about remote changes. Used by `sync_now` and the background loop.
pub(crate) fn run_sync(inner: &Inner) -> Result<SyncReport> {
    let engine = inner.engine.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no server configured for this database (run init)",
        )
    })?;
    let result = engine.sync_once();
    let note = result.as_ref().err().map(|e| e.to_string());
    let ok = result.is_ok();
    let _ = inner.writer.run(move |c| -> rusqlite::Result<()> {
        set_note(c, "last_error", note.as_deref())?;
        if ok {
            set_note(c, "last_sync_ms", Some(&now_ms().to_string()))?;
        }
        Ok(())
    });
    let report = result?;
    if !report.changed_tables.is_empty() {
        let listener = inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(l) = listener {
            l(&report.changed_tables);
        }
        if let Some(bg) = inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bg.wake_indexer();
        }
    }
    Ok(report)
}

fn exhausted(e: Exhausted) -> Error {
    Error::new(ErrorKind::RowidsExhausted, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::EventStream;
    use std::sync::OnceLock;
    use std::sync::mpsc;
    use std::time::Duration;
    use sync_core::Changeset;
    use sync_core::protocol::info::DatabaseInfo;
    use sync_core::protocol::log::{LogEntry, LogPage};
    use sync_core::protocol::push::{PushHeaders, PushResponse, PushStatus};
    use sync_core::protocol::rowid::Lease;

    const SCHEMA: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);";

    /// A server that has one remote insert to hand out, and hands it out only once `close`
    /// has begun stopping the background (it holds the background lock, or has taken the
    /// background out) — the moment a background sync that changed rows must still be able
    /// to finish.
    struct PullWhileClosing {
        client: OnceLock<std::sync::Weak<Inner>>,
        pulling: Mutex<Option<mpsc::Sender<()>>>,
        effect: Changeset,
    }

    fn unreachable() -> Error {
        Error::new(ErrorKind::Network, "not in this test")
    }

    impl Transport for PullWhileClosing {
        fn info(&self) -> Result<DatabaseInfo> {
            Err(unreachable())
        }
        fn push(&self, _: &PushHeaders, _: &Changeset) -> Result<PushResponse> {
            Err(unreachable())
        }
        fn pull(&self, since: i64, _: usize, _: usize) -> Result<LogPage> {
            if since > 0 {
                return Ok(LogPage {
                    head_seq: 1,
                    ..LogPage::default()
                });
            }
            if let Some(pulling) = self.pulling.lock().unwrap().take() {
                let _ = pulling.send(());
            }
            let inner = self.client.get().and_then(std::sync::Weak::upgrade);
            while let Some(i) = &inner {
                match i.background.try_lock() {
                    Err(_) => break,
                    Ok(bg) if bg.is_none() => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            Ok(LogPage {
                head_seq: 1,
                entries: vec![LogEntry {
                    seq: 1,
                    status: PushStatus::Applied,
                    origin: "elsewhere".into(),
                    batch_id: "b1".into(),
                    effect: self.effect.clone(),
                }],
                more: false,
            })
        }
        fn snapshot(&self, _: &Path) -> Result<(i64, u32)> {
            Err(unreachable())
        }
        fn lease(&self, _: i64) -> Result<Lease> {
            Err(unreachable())
        }
        fn events(&self) -> Result<Box<dyn EventStream>> {
            Err(unreachable())
        }
    }

    /// An insert into `notes` as a changeset.
    fn remote_insert() -> Changeset {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        sync_core::outbox::install(&conn).unwrap();
        sync_core::capture(&conn, |c| {
            c.execute("INSERT INTO notes VALUES (1, 'remote')", [])
        })
        .unwrap()
        .changeset
    }

    #[test]
    fn close_during_a_background_sync_that_changed_rows_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA)
            .unwrap();
        let config = ClientConfig {
            remote: Some(RemoteConfig {
                url: "http://127.0.0.1:9".into(),
                token: "t".into(),
                database: "notes".into(),
            }),
            ..ClientConfig::default()
        };
        let (pulling_tx, pulling_rx) = mpsc::channel();
        let transport = Arc::new(PullWhileClosing {
            client: OnceLock::new(),
            pulling: Mutex::new(Some(pulling_tx)),
            effect: remote_insert(),
        });
        let client = SyncClient::open(&path, config)
            .unwrap()
            .with_transport(Arc::clone(&transport) as Arc<dyn Transport>)
            .unwrap();
        let _ = transport.client.set(Arc::downgrade(&client.inner));
        client.start_background().unwrap();
        pulling_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the background sync pulls");

        let (done_tx, done_rx) = mpsc::channel();
        let closing = client.clone();
        std::thread::spawn(move || {
            closing.close();
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("close() deadlocked with the background sync it was stopping");
        // The sync completed before the background stopped.
        let title: String = Connection::open(&path)
            .unwrap()
            .query_row("SELECT title FROM notes WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(title, "remote");
    }
}
