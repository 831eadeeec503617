//! [`Storage`]: the bounded cache of open databases — at most `capacity` open, the least
//! recently used idle one closed to make room, idle ones closed by the maintenance pass.

use super::StorageError;
use super::database::{DBS_DIR, Database, SNAPSHOTS_DIR, StorageConfig, lock};
use crate::migrations::AppSchema;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
            // With a PostgreSQL store, other nodes may have written since: every request sees
            // the store's head.
            db.catch_up()?;
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
    use super::super::SNAPSHOTS_DIR;
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn storage(dir: &Path, capacity: usize) -> Storage {
        Storage::new(
            StorageConfig {
                data_dir: dir.to_path_buf(),
                capacity,
                idle: Duration::from_secs(3600),
                page_cache_kib: 128,
                readers: 2,
                synchronous: "NORMAL",
                key: None,
                store: None,
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
