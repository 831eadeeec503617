//! sync-core's integration tests: one binary, one module per area, on real SQLite files.

mod capture;
mod common;
mod conflicts;
mod convergence;
mod crash;
mod decode;
mod pieces;
mod props;
mod upgrade;
