//! Giving heap memory back to the operating system after databases were closed.
//!
//! Closing a database frees its connections' memory (page caches, lookaside, schema,
//! statements: ~110 KiB for a small database), but glibc's malloc keeps freed memory in its
//! arenas for reuse and returns it to the OS only from the top of a heap. The server's SQLite
//! work runs on many blocking threads, glibc gives them up to 8 arenas per CPU, and a
//! database's memory lands in whichever arena its opening thread used — so memory freed by
//! closing databases stays resident. Measured (`cargo bench -p sync-server --bench memory`:
//! 10,000 databases touched, 1,024 open, then all closed for idleness): before any memory
//! work the server held 260 MiB once they were touched and still 227 MiB once every one was
//! closed; not a page came back. `malloc_trim(0)` walks every arena and releases whole free
//! pages anywhere in them: with it after the closes, 77 MiB instead of 197 MiB (both with the
//! storage module's page-cache setting). The walk took ~17 ms for a ~200 MiB heap, taking each
//! arena's lock in turn, so it runs on a blocking thread after closes, never per request.
//!
//! Fewer arenas (`M_ARENA_MAX`) also cut the fragmentation (the figure after touching: −13 MiB
//! with 4 arenas, −19 MiB with 2, on 2 CPUs) but cost 4% and 13% of the pushes per second in
//! the load test (server CPU per push 179 → 186–190 µs and 192–203 µs: threads waiting for each
//! other's arena lock), so the arenas are left as glibc sizes them.

/// Returns free heap memory to the OS where the allocator supports it (glibc's
/// `malloc_trim`); elsewhere does nothing. Returns whether any memory was released.
pub fn return_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only takes the allocator's own locks; it is documented as
        // safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
