//! Process-wide settings for many open databases: SQLite's memory options and the limit on
//! open files.

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
