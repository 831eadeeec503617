//! `sync-load`: a bounded load test on loopback. Starts a server in-process on 127.0.0.1:0
//! over a fresh data directory, creates N databases with a token each, then runs C concurrent
//! clients pushing small batches (one new row each) for S seconds over keep-alive
//! connections. Reports pushes/s and latency percentiles, then stops the server and checks
//! that every acknowledged push is in its database's log exactly once (log entries = acks).
//!
//! `--compare-stores` runs the same load three times in one run — one node on the data
//! directory, one node on a PostgreSQL store, three nodes on one PostgreSQL store (a throwaway
//! cluster started for the run) — and prints each one's figures and their ratios.
//!
//! ```sh
//! cargo run --release -p sync-load -- --databases 1000 --seconds 10 --concurrency 64
//! cargo run --release -p sync-load -- --compare-stores --databases 200 --seconds 10
//! ```
//!
//! Exit code 0 when there were no errors and nothing was lost, 1 otherwise, 2 on setup failure.

mod bench;
mod load;
mod notes;
mod probe;
mod step;
mod stores;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use sync_server::ServerConfig;
use sync_server::config::Durability;

/// Load-test a sync server on loopback.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Databases to create (each gets its own token and device).
    #[arg(long, default_value_t = 1000)]
    databases: usize,
    /// Length of the measured phase, in seconds (of each run with --compare-stores).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients (each pushes one batch at a time, rotating over its databases).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rows per push.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Worker threads of the server's runtime [default: the number of CPUs].
    #[arg(long)]
    server_threads: Option<usize>,
    /// Threads of the server's blocking pool (SQLite work) [default: the server's default].
    #[arg(long)]
    blocking_threads: Option<usize>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Commit durability of the SQLite files (`serve --durability`).
    #[arg(long, value_enum, default_value_t = Durability::Normal)]
    durability: Durability,
    /// Run the same load against one node on the data directory, one node on a PostgreSQL
    /// store and three nodes on one PostgreSQL store (a throwaway cluster started for the
    /// run; needs PostgreSQL's binaries, Debian's `postgresql` package), and compare them.
    #[arg(long, conflicts_with_all = ["step_only", "data"])]
    compare_stores: bool,
    /// With several nodes: how each database's pushes are spread over them.
    #[arg(long, value_enum, default_value_t = load::Spread::Push)]
    spread: load::Spread,
    /// Connections each node may open to the PostgreSQL store (`ServerConfig::store_pool`).
    #[arg(long, default_value_t = ServerConfig::default().store_pool)]
    store_pool: usize,
    /// Instead of the HTTP load, time `sync_core::server::push::push` alone on one database file
    /// (no HTTP, no threads) for this many pushes, to show what the protocol step costs.
    #[arg(long, value_name = "PUSHES")]
    step_only: Option<usize>,
    /// Data directory to use (must not exist) [default: a temporary directory, removed after].
    #[arg(long)]
    data: Option<PathBuf>,
}

fn main() -> ExitCode {
    let tuned = sync_server::storage::tune_sqlite_process();
    let args = Args::parse();
    if !tuned {
        eprintln!("warning: could not turn off SQLite's memory statistics");
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.databases > 0 && args.concurrency > 0 && args.rows > 0);
    let temp = args.data.is_none();
    let data = args.data.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "sync-load-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    });
    anyhow::ensure!(!data.exists(), "{} already exists", data.display());
    let result = match args.step_only {
        Some(n) => step::step_only(&data, n),
        None if args.compare_stores => stores::compare(&args, &data),
        None => stores::single(&args, &data),
    };
    if temp {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}
