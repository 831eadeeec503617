//! Black-box tests of `sync-cli`: the built binary run as a subprocess on real files, next to
//! the real `sqlite3` shell and `sqldiff` (Debian's, SQLite 3.40).
//!
//! Why here and not in the workspace's `tests` crate: Cargo builds a package's binaries before
//! its own integration tests and hands them the path in `CARGO_BIN_EXE_<name>`; no other
//! package gets that guarantee (artifact dependencies are unstable). Finding
//! `target/debug/sync-cli` from another crate would test whatever binary was built last, or
//! none; building it from inside a test would run a nested `cargo` against the build lock
//! the outer one holds. So the CLI's tests live with the CLI, as one test binary.
//!
//! | module | what it checks |
//! |---|---|
//! | `interop` | changesets from `sqldiff` and the shell's `.session` are read and applied; our `diff` agrees with `sqldiff` |
//! | `commands` | each command's exit statuses, `--help`, error messages, `-` for stdin/stdout, broken pipes |
//! | `json` | the JSON lines of `inspect` and the JSON reports parse and round-trip to sync-core types |
//! | `verify` | `verify` exits 1 for a copy changed behind the library's back, 0 once `sync` repaired it |
//! | `adopt` | existing data starts syncing (Chinook imported by the server, adopted by a device); read-only commands leave plain files byte-identical |
//! | `client` | the client commands (init, exec, query, sync, status, search) offline and against a real server in this process (`server`) |
//! | `informed` | reads while `sync --watch` holds the writer, network causes, `remote set-token`, progress on a pty only, `conflicts clear`, `inspect --format sql` |
//! | `upgrade` | `upgrade` brings a copy with a pending write to the server's new schema version in place |
//!
//! Fixture: `tests/data/chinook.sqlite` (the Chinook sample database; licence next to it).

mod adopt;
mod client;
mod commands;
mod common;
mod informed;
mod interop;
mod json;
mod server;
mod upgrade;
mod verify;
