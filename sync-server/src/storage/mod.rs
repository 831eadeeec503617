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
//!
//! | module | its job |
//! |---|---|
//! | `database` | one open database: its writer, its readers, its cached snapshot; closing it leaves no WAL |
//! | `cache` | [`Storage`]: the bounded cache of open databases |
//! | `process` | process-wide settings: SQLite's memory options, the open-files limit |
//! | `error` | [`StorageError`] |

mod cache;
mod database;
mod error;
mod process;

pub use cache::{CacheStats, RETURN_MEMORY_AFTER_CLOSES, Storage};
pub use database::{
    DBS_DIR, Database, IMAGES_DIR, SNAPSHOTS_DIR, SnapshotBody, SnapshotFile, StorageConfig,
};
pub use error::StorageError;
pub use process::{files_needed, raise_open_files_limit, tune_sqlite_process};
