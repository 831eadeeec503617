//! # sync-client
//!
//! The client side of session-sync. The library (one writer thread owning the sessions, a
//! read-only connection pool, the sync engine over HTTP) comes later; today the crate holds
//! the `sync-cli` binary.
//!
//! | target | its one job |
//! |---|---|
//! | `src/bin/sync-cli/` | `sync-cli`: diff, inspect, validate, apply, invert and concat changesets (`docs/cli.md`) |
