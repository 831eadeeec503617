//! Database files and the bounded cache of open ones.
//!
//! Each database is `dbs/<id>.db` in the data directory (`id` from the catalog, never a
//! client string), in WAL mode with `synchronous = NORMAL` by default: a commit is in the WAL
//! before the server answers, so it survives a killed process; only an OS crash or power loss
//! can lose the last commits (the WAL is synced at checkpoints). `--durability full` syncs the
//! WAL at every commit instead.
//!
//! An open [`Database`] has one writer connection behind a mutex (all writes: push, leases,
//! compaction) and a few read-only connections (pull, info, snapshot, conflicts) that SQLite
//! itself refuses to write through. Every call here blocks: run it on a blocking thread.
//! [`Storage`] keeps at most `capacity` databases open, evicting the least recently used one
//! that no request is using, and closes databases idle for longer than `idle`.
//!
//! Memory per open database is what bounds the server with thousands of them. Measured for a
//! small database after one push, in one process on one thread: the writer costs ~110 KiB of
//! heap (its pages, ~55 KiB for the dozen pages of a small file; 16 KiB of lookaside; schema
//! and statements) plus the 32 KiB WAL index mapped from the `-shm` file; each pooled reader
//! ~60 KiB more. Before two settings — no page-cache pre-allocation ([`tune_sqlite_process`])
//! and a smaller lookaside per connection (`LOOKASIDE_SLOT_BYTES`) — the writer alone cost
//! ~175 KiB and a reader ~160 KiB. In the server (`cargo bench -p sync-server --bench
//! memory`, 1,000 databases open after one push each) that is 152 KiB of RSS per open
//! database, down from 213 KiB. A large database adds up to `page_cache_kib` per connection.
//! Memory freed by closing databases is handed back to the OS ([`crate::memory`]) by the
//! maintenance pass, and sooner when databases are closed in bulk
//! ([`RETURN_MEMORY_AFTER_CLOSES`]).

use crate::migrations::{AppSchema, MigrationError};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use sync_core::server;
use sync_core::server::LogBounds;
use sync_core::server::ServerError;

/// Directory of database files inside the data directory.
pub const DBS_DIR: &str = "dbs";
/// Directory of cached snapshot files inside the data directory (emptied at startup).
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Errors opening or using database files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite failed on a database file.
    #[error("database {id}: {source}")]
    Sqlite {
        /// Internal id.
        id: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database could not be brought to the current schema.
    #[error("database {id}: {source}")]
    Migration {
        /// Internal id.
        id: i64,
        /// Why.
        #[source]
        source: MigrationError,
    },
    /// A snapshot could not be written.
    #[error("database {id}: snapshot failed: {source}")]
    Snapshot {
        /// Internal id.
        id: i64,
        /// Why.
        #[source]
        source: ServerError,
    },
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How databases are opened and cached.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The data directory (database files go to `dbs/`).
    pub data_dir: PathBuf,
    /// Most databases open at once.
    pub capacity: usize,
    /// Close a database after this long without a request.
    pub idle: Duration,
    /// SQLite page cache per connection, in KiB (`PRAGMA cache_size = -N`).
    pub page_cache_kib: u32,
    /// Idle read-only connections kept per database (more are opened under load and closed).
    pub readers: usize,
    /// `PRAGMA synchronous` of writers: `NORMAL` or `FULL`.
    pub synchronous: &'static str,
}

/// After this many databases were closed (evicted or idle), the maintenance task is woken to
/// return their memory to the OS at once instead of at its next pass (at most once a second).
/// Cache churn leaves freed memory spread over glibc's arenas: 10,000 databases touched
/// through the 1,024-database cache measured 177 MiB RSS with this (the same with 1 s or the
/// default 30 s between passes), 185–188 MiB when memory was returned only after idle closes.
/// 256 closes free ~40 MiB; returning it costs one ~17 ms walk of the heap on a blocking
/// thread.
pub const RETURN_MEMORY_AFTER_CLOSES: u64 = 256;

/// Counters the cache keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Requests served by an already open database.
    pub hits: AtomicU64,
    /// Requests that had to open the database.
    pub misses: AtomicU64,
    /// Databases closed to make room or because they were idle.
    pub evictions: AtomicU64,
}

/// An open database.
#[derive(Debug)]
pub struct Database {
    id: i64,
    path: PathBuf,
    page_cache_kib: u32,
    max_readers: usize,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Serialises snapshot creation; holds the cached snapshot of the newest seq.
    snapshot: Mutex<Option<CachedSnapshot>>,
    snapshots_dir: PathBuf,
    /// Table shapes, so a push does not re-read the schema (checked against its version).
    shapes: sync_core::engine::schema::ShapeCache,
}

#[derive(Debug)]
struct CachedSnapshot {
    seq: i64,
    schema_version: u32,
    path: PathBuf,
}

/// A snapshot ready to stream: an open file (it stays readable even if the cache replaces
/// and deletes it meanwhile) and what it holds.
#[derive(Debug)]
pub struct SnapshotFile {
    /// The open file.
    pub file: File,
    /// Its size in bytes.
    pub len: u64,
    /// The log seq it corresponds to.
    pub seq: i64,
    /// Its schema version.
    pub schema_version: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection cannot leave a transaction open (the guards in
    // sync-core roll back on drop), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Database {
    fn open(id: i64, config: &StorageConfig, schema: &AppSchema) -> Result<Database, StorageError> {
        let path = config.data_dir.join(DBS_DIR).join(format!("{id}.db"));
        let sqlite = |source| StorageError::Sqlite { id, source };
        let writer = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        configure(&writer, config.page_cache_kib).map_err(sqlite)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
                config.synchronous
            ))
            .map_err(sqlite)?;
        schema
            .migrate(&writer)
            .map_err(|source| StorageError::Migration { id, source })?;
        Ok(Database {
            id,
            path,
            page_cache_kib: config.page_cache_kib,
            max_readers: config.readers,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            snapshot: Mutex::new(None),
            shapes: sync_core::engine::schema::ShapeCache::new(),
            snapshots_dir: config.data_dir.join(SNAPSHOTS_DIR),
        })
    }

    /// The internal id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Runs `f` on the writer connection (exclusive). Blocks.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let conn = lock(&self.writer);
        f(&conn)
    }

    /// The table shapes cached for this database (for `sync_core::server::push::push`).
    pub fn shapes(&self) -> &sync_core::engine::schema::ShapeCache {
        &self.shapes
    }

    /// Runs `f` on a read-only connection. Blocks.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, StorageError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        let mut readers = lock(&self.readers);
        if readers.len() < self.max_readers && conn.is_autocommit() {
            readers.push(conn);
        }
        Ok(out)
    }

    fn open_reader(&self) -> Result<Connection, StorageError> {
        let sqlite = |source| StorageError::Sqlite {
            id: self.id,
            source,
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        configure(&conn, self.page_cache_kib).map_err(sqlite)?;
        Ok(conn)
    }

    /// The log bounds, read on a reader.
    pub fn bounds(&self) -> Result<LogBounds, StorageError> {
        self.read(server::bounds)?
            .map_err(|source| StorageError::Sqlite {
                id: self.id,
                source,
            })
    }

    /// A snapshot of the newest state. The newest one is cached (one file per database) and
    /// reused while the head does not move.
    pub fn snapshot(&self) -> Result<SnapshotFile, StorageError> {
        let mut cached = lock(&self.snapshot);
        let head = self.bounds()?.head_seq;
        if let Some(c) = cached.as_ref()
            && c.seq == head
            && let Ok(file) = open_snapshot(&c.path, c.seq, c.schema_version)
        {
            return Ok(file);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        std::fs::create_dir_all(&self.snapshots_dir).map_err(io(&self.snapshots_dir))?;
        let nonce: u64 = rand::random();
        let tmp = self
            .snapshots_dir
            .join(format!("{}-{nonce:016x}.tmp", self.id));
        let made = self.read(|c| server::snapshot::snapshot(c, &tmp))?;
        let (seq, schema_version) = match made {
            Ok(v) => v,
            Err(source) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(StorageError::Snapshot {
                    id: self.id,
                    source,
                });
            }
        };
        let path = self
            .snapshots_dir
            .join(format!("{}-{seq}-{nonce:016x}.db", self.id));
        std::fs::rename(&tmp, &path).map_err(io(&tmp))?;
        let file = open_snapshot(&path, seq, schema_version).map_err(io(&path))?;
        if let Some(old) = cached.replace(CachedSnapshot {
            seq,
            schema_version,
            path,
        }) {
            let _ = std::fs::remove_file(old.path);
        }
        Ok(file)
    }
}

impl Drop for Database {
    /// Closing leaves no WAL behind: the readers close first (a read-only connection cannot
    /// checkpoint, and a reader closing last would leave the WAL in place), then the writer
    /// checkpoints and truncates the WAL and closes — the file alone is the database again.
    fn drop(&mut self) {
        if let Some(c) = lock(&self.snapshot).take() {
            let _ = std::fs::remove_file(c.path);
        }
        lock(&self.readers).clear();
        let writer = lock(&self.writer);
        if let Err(e) = writer.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(id = self.id, error = %e, "closing a database: checkpoint failed");
        }
    }
}

fn open_snapshot(path: &Path, seq: i64, schema_version: u32) -> std::io::Result<SnapshotFile> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok(SnapshotFile {
        file,
        len,
        seq,
        schema_version,
    })
}

/// Process-wide SQLite settings for a server holding many connections:
///
/// - **Memory statistics off.** With them on (SQLite's default), every allocation takes one
///   global mutex, which serialises all connections of the process — the largest single cost
///   under many concurrent pushes. The server reads no SQLite memory statistics, so nothing is
///   lost. (It also means SQLite's soft heap limit cannot work: it needs the statistics.)
/// - **No page-cache pre-allocation.** By default every connection allocates room for 20
///   pages (~90 KiB) in one block the first time it reads a page, and touches all of it, even
///   when the database has only a dozen pages or the connection reads four. Without it, pages
///   are allocated one at a time as they are read: measured 33 KiB less per writer and 69 KiB
///   less per reader of a small database, and no slower (the push step alone: 62–63 µs either
///   way).
///
/// Must run before SQLite is first used in the process; call it first thing in `main`, before
/// any thread is started. Later it changes nothing (SQLite refuses reconfiguration once
/// initialised). Returns whether it took effect.
pub fn tune_sqlite_process() -> bool {
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void};
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        // SAFETY: `sqlite3_config` must not run concurrently with other SQLite calls. It is
        // called once (OnceLock), documented to be called from `main` before other threads
        // exist; and if SQLite is already initialised it returns SQLITE_MISUSE without
        // touching any state. The arguments are those each option documents: an int for
        // MEMSTATUS; a NULL buffer, a size and a count of 0 for PAGECACHE (SQLite's own
        // allocator, no initial block).
        let (memstatus, pagecache) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
                ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_PAGECACHE,
                    std::ptr::null_mut::<c_void>(),
                    0 as c_int,
                    0 as c_int,
                ),
            )
        };
        memstatus == ffi::SQLITE_OK && pagecache == ffi::SQLITE_OK
    })
}

/// File descriptors a full cache may hold: each open database has its file, its WAL and its
/// shared-memory index open on the writer, and its readers hold the file and the WAL again.
pub fn files_needed(capacity: usize, readers: usize) -> u64 {
    (capacity * (3 + 2 * readers) + 256) as u64
}

/// Raises this process's soft limit on open files towards `needed` (never above the hard
/// limit, never lowering it). Returns the limit in force afterwards; `None` where unsupported.
#[cfg(unix)]
pub fn raise_open_files_limit(needed: u64) -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Some(soft);
    }
    let target = limit.maximum.map_or(needed, |hard| hard.min(needed));
    let raised = target > soft
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )
        .is_ok();
    Some(if raised { target } else { soft })
}

/// Raises this process's soft limit on open files (not supported on this platform).
#[cfg(not(unix))]
pub fn raise_open_files_limit(_needed: u64) -> Option<u64> {
    None
}

/// Lookaside per connection: 64 slots of 256 bytes (16 KiB; two sizes, 42 of 256 B and 44 of
/// 128 B) instead of SQLite's default 1200 × 40 (48 KiB). Lookaside is memory each connection
/// reserves for its small allocations; a push uses nearly all of the default (100 of its 123
/// slots at its peak), and those pages stay resident while the database is open, used or not.
/// What no longer fits goes to malloc, where it is freed again and shared by all connections.
/// Measured on a small database: 31 KiB less per connection (no lookaside at all: 46 KiB
/// less), and the push step alone 64 → 66 µs (median of 7 runs; 1200 × 20: 67 µs for 7 KiB
/// more; no lookaside: 73 µs). Over 1,024 open databases those 31 MiB are the difference
/// between meeting the 200 MB target and not (`cargo bench -p sync-server --bench memory`).
const LOOKASIDE_SLOT_BYTES: std::ffi::c_int = 256;
/// See [`LOOKASIDE_SLOT_BYTES`].
const LOOKASIDE_SLOTS: std::ffi::c_int = 64;

/// Sets this connection's lookaside (see [`LOOKASIDE_SLOT_BYTES`]). Must run before the
/// connection runs any statement (SQLite refuses while lookaside memory is in use).
fn set_lookaside(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::ffi;
    // SAFETY: the handle is live for the duration of the call (borrowed from `conn`), this
    // thread holds the connection exclusively, and SQLITE_DBCONFIG_LOOKASIDE takes exactly a
    // buffer pointer (NULL: SQLite allocates it), a slot size and a slot count.
    let rc = unsafe {
        ffi::sqlite3_db_config(
            conn.handle(),
            ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE_SLOT_BYTES,
            LOOKASIDE_SLOTS,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None))
    }
}

fn configure(conn: &Connection, page_cache_kib: u32) -> rusqlite::Result<()> {
    set_lookaside(conn)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.execute_batch(&format!("PRAGMA cache_size = -{page_cache_kib};"))?;
    Ok(())
}

struct Entry {
    db: Arc<Database>,
    tick: u64,
    used_at: Instant,
}

#[derive(Default)]
struct CacheState {
    open: HashMap<i64, Entry>,
    tick: u64,
}

/// The bounded cache of open databases.
pub struct Storage {
    config: StorageConfig,
    schema: Arc<AppSchema>,
    state: Mutex<CacheState>,
    /// One lock per database being opened, so two requests never open the same file twice.
    opening: Mutex<HashMap<i64, Arc<Mutex<()>>>>,
    stats: CacheStats,
    /// Databases closed since freed memory was last returned to the OS.
    closed_since_return: AtomicU64,
    /// Wakes the maintenance task after [`RETURN_MEMORY_AFTER_CLOSES`] closes.
    churn: tokio::sync::Notify,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("config", &self.config)
            .field("open", &self.open_count())
            .finish()
    }
}

impl Storage {
    /// Prepares the directories (and empties the snapshot cache left by a previous run).
    pub fn new(config: StorageConfig, schema: Arc<AppSchema>) -> Result<Storage, StorageError> {
        let dbs = config.data_dir.join(DBS_DIR);
        std::fs::create_dir_all(&dbs).map_err(|source| StorageError::Io {
            path: dbs.clone(),
            source,
        })?;
        let snapshots = config.data_dir.join(SNAPSHOTS_DIR);
        if snapshots.exists() {
            let _ = std::fs::remove_dir_all(&snapshots);
        }
        Ok(Storage {
            config,
            schema,
            state: Mutex::new(CacheState::default()),
            opening: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
            closed_since_return: AtomicU64::new(0),
            churn: tokio::sync::Notify::new(),
        })
    }

    /// The app schema databases are migrated to.
    pub fn schema(&self) -> &AppSchema {
        &self.schema
    }

    /// Cache counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Databases open right now.
    pub fn open_count(&self) -> usize {
        lock(&self.state).open.len()
    }

    fn lookup(&self, id: i64) -> Option<Arc<Database>> {
        let mut state = lock(&self.state);
        state.tick += 1;
        let tick = state.tick;
        state.open.get_mut(&id).map(|e| {
            e.tick = tick;
            e.used_at = Instant::now();
            e.db.clone()
        })
    }

    /// The open database `id`, opening (and creating, migrating) it if needed. Blocks.
    pub fn get(&self, id: i64) -> Result<Arc<Database>, StorageError> {
        if let Some(db) = self.lookup(id) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(db);
        }
        let gate = lock(&self.opening).entry(id).or_default().clone();
        let _opening = lock(&gate);
        if let Some(db) = self.lookup(id) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(db);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let result = Database::open(id, &self.config, &self.schema).map(Arc::new);
        if let Ok(db) = &result {
            let evicted = {
                let mut state = lock(&self.state);
                let evicted = if state.open.len() >= self.config.capacity {
                    Self::evict_lru(&mut state)
                } else {
                    None
                };
                state.tick += 1;
                let tick = state.tick;
                state.open.insert(
                    id,
                    Entry {
                        db: db.clone(),
                        tick,
                        used_at: Instant::now(),
                    },
                );
                evicted
            };
            if evicted.is_some() {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                self.note_closed(1);
            }
            // Closing checkpoints the WAL: do it outside the cache lock.
            drop(evicted);
        }
        lock(&self.opening).remove(&id);
        result
    }

    /// Removes the least recently used database that no request holds.
    fn evict_lru(state: &mut CacheState) -> Option<Arc<Database>> {
        let victim = state
            .open
            .iter()
            .filter(|(_, e)| Arc::strong_count(&e.db) == 1)
            .min_by_key(|(_, e)| e.tick)
            .map(|(id, _)| *id)?;
        state.open.remove(&victim).map(|e| e.db)
    }

    /// Closes databases unused for longer than the idle timeout; returns how many. Blocks.
    pub fn evict_idle(&self) -> usize {
        let now = Instant::now();
        let evicted: Vec<Arc<Database>> = {
            let mut state = lock(&self.state);
            let idle: Vec<i64> = state
                .open
                .iter()
                .filter(|(_, e)| {
                    Arc::strong_count(&e.db) == 1
                        && now.duration_since(e.used_at) >= self.config.idle
                })
                .map(|(id, _)| *id)
                .collect();
            idle.iter()
                .filter_map(|id| state.open.remove(id).map(|e| e.db))
                .collect()
        };
        self.stats
            .evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        self.note_closed(evicted.len());
        evicted.len()
    }

    fn note_closed(&self, n: usize) {
        let closed = self
            .closed_since_return
            .fetch_add(n as u64, Ordering::Relaxed)
            + n as u64;
        if closed >= RETURN_MEMORY_AFTER_CLOSES {
            self.churn.notify_one();
        }
    }

    /// Resolves once [`RETURN_MEMORY_AFTER_CLOSES`] databases were closed since memory was
    /// last returned (the maintenance task then returns it without waiting for its tick).
    pub async fn churned(&self) {
        self.churn.notified().await
    }

    /// Returns the memory freed by closing databases to the OS, if any database was closed
    /// since the last call ([`crate::memory::return_freed_memory`]). Blocks (~17 ms for a
    /// 200 MiB heap). Returns whether memory was released.
    pub fn return_freed_memory(&self) -> bool {
        if self.closed_since_return.swap(0, Ordering::Relaxed) == 0 {
            return false;
        }
        crate::memory::return_freed_memory()
    }

    /// Closes every database (at shutdown). Blocks.
    pub fn close_all(&self) {
        let all: Vec<Entry> = lock(&self.state).open.drain().map(|(_, e)| e).collect();
        drop(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path, capacity: usize) -> Storage {
        Storage::new(
            StorageConfig {
                data_dir: dir.to_path_buf(),
                capacity,
                idle: Duration::from_secs(3600),
                page_cache_kib: 128,
                readers: 2,
                synchronous: "NORMAL",
            },
            Arc::new(AppSchema::embedded()),
        )
        .unwrap()
    }

    #[test]
    fn cache_is_bounded_and_skips_databases_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), 2);
        let a = s.get(1).unwrap();
        let _b = s.get(2).unwrap();
        drop(a);
        s.get(3).unwrap();
        assert_eq!(s.open_count(), 2);
        // 1 was free and least recently used: it went; 2 is held and stayed.
        assert!(s.lookup(2).is_some() && s.lookup(1).is_none());
        assert_eq!(s.stats.evictions.load(Ordering::Relaxed), 1);
        assert!(dir.path().join("dbs/1.db").exists());
    }

    #[test]
    fn closes_in_bulk_ask_for_their_memory_to_be_returned() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), 1);
        assert!(
            !s.return_freed_memory(),
            "nothing was closed: nothing to return"
        );
        s.note_closed(RETURN_MEMORY_AFTER_CLOSES as usize - 1);
        assert!(s.churned().now_or_never().is_none(), "one close short");
        // Room for one database: opening a second one closes the first.
        s.get(1).unwrap();
        s.get(2).unwrap();
        assert!(s.churned().now_or_never().is_some());
        s.return_freed_memory();
        assert_eq!(s.closed_since_return.load(Ordering::Relaxed), 0);
        assert!(!s.return_freed_memory());
    }

    #[test]
    fn readers_cannot_write_and_snapshots_are_cached_per_seq() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), 8);
        let db = s.get(7).unwrap();
        let err = db
            .read(|c| c.execute_batch("INSERT INTO tags(name) VALUES ('x')"))
            .unwrap();
        assert!(err.is_err(), "a reader must refuse writes");
        let one = db.snapshot().unwrap();
        let two = db.snapshot().unwrap();
        assert_eq!((one.seq, two.seq), (0, 0));
        let files = std::fs::read_dir(dir.path().join(SNAPSHOTS_DIR))
            .unwrap()
            .count();
        assert_eq!(files, 1);
        drop(db);
        s.close_all();
        let files = std::fs::read_dir(dir.path().join(SNAPSHOTS_DIR))
            .unwrap()
            .count();
        assert_eq!(files, 0, "closing a database removes its cached snapshot");
    }
}
