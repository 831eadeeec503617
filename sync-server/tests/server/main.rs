//! Integration tests of sync-server: real servers on 127.0.0.1:0 (in-process, or the real
//! binary where a process must die), real HTTP through reqwest, real SQLite files in
//! temporary directories.

mod api;
mod auth;
mod bad_input;
mod cli;
mod common;
mod crash;
mod hostile;
mod import;
mod jwt;
mod load;
mod nodes;
mod nodes_faults;
mod nodes_lifecycle;
mod nodes_uploads;
mod ops;
mod policies;
mod snapshot;
mod uploads;
