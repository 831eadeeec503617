//! Black-box tests across crates (server and clients over a real socket) live in this
//! package's `tests/` directory.
//!
//! The `sync-cli` tests are not here: Cargo builds a binary before the integration tests of
//! its own package only (and gives them its path in `CARGO_BIN_EXE_sync-cli`), so they live in
//! `sync-client/tests/cli/`.
