//! One measured run: the databases and tokens in the catalog, N in-process nodes on one store
//! (the data directory, or PostgreSQL), the warm-up, the measured phase, and the check that
//! every acknowledged push is in its database's log exactly once.

use crate::Args;
use crate::load::{Nodes, Spread, Target};
use crate::probe::{cpu_seconds, memory_and_files, percentile, process_tree_cpu};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use sync_server::datadir::DataDir;
use sync_server::store::PgStore;
use sync_server::{ServerConfig, catalog};

/// Where the nodes keep what must survive.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// The data directory is the store (one node only).
    Dir,
    /// A PostgreSQL store at `url`; `postmaster` is its server's process id, when known (its
    /// processes' CPU time is counted too).
    Pg {
        url: String,
        postmaster: Option<u32>,
    },
}

/// What one run measured.
pub(crate) struct Outcome {
    pub databases: usize,
    pub nodes: usize,
    pub setup_secs: f64,
    pub warm_secs: f64,
    pub warm_pushes: usize,
    pub elapsed: f64,
    /// Latencies of the acknowledged pushes of the measured phase, µs, sorted.
    pub lat: Vec<u32>,
    pub errors: u64,
    pub lost: i64,
    pub extra: i64,
    /// CPU µs per push: the server's threads (runtime, blocking pool, store runtime), the
    /// load generator's, the whole process's, and PostgreSQL's processes (when known).
    pub cpu_server: f64,
    pub cpu_client: f64,
    pub cpu_process: f64,
    pub cpu_pg: Option<f64>,
    pub peak_mib: f64,
    pub open_files: usize,
    /// Cache lines of each node's `/metrics`.
    pub metrics: Vec<String>,
    pub verified: String,
}

impl Outcome {
    pub fn pushes(&self) -> usize {
        self.lat.len()
    }
    pub fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.elapsed
    }
    /// Latency percentile `p` (0..=1), ms.
    pub fn ms(&self, p: f64) -> f64 {
        percentile(&self.lat, p)
    }
    pub fn ok(&self) -> bool {
        self.errors == 0 && self.lost == 0 && self.extra == 0
    }
}

/// Runs the load against `nodes` in-process nodes on `store`, each over its own directory
/// under `data` (`data` itself for a single node on the data directory).
pub(crate) fn run(
    args: &Args,
    data: &Path,
    store: &Store,
    nodes: usize,
    spread: Spread,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(nodes > 0, "at least one node");
    anyhow::ensure!(
        nodes == 1 || matches!(store, Store::Pg { .. }),
        "several nodes need a PostgreSQL store"
    );
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let dirs: Vec<PathBuf> = if nodes == 1 {
        vec![data.to_path_buf()]
    } else {
        (0..nodes).map(|i| data.join(format!("node{i}"))).collect()
    };
    let readers = ServerConfig::default().readers;
    sync_server::storage::raise_open_files_limit(sync_server::storage::files_needed(
        nodes * (args.databases + 64),
        readers,
    ));

    // Databases and tokens, through the catalog as the admin CLI would (with a store: through
    // node 0's copy, appended to the store).
    let setup = Instant::now();
    let admin = match store {
        Store::Dir => DataDir::plain(&dirs[0]),
        Store::Pg { url, .. } => {
            DataDir::plain(&dirs[0]).with_store(Arc::new(PgStore::connect(url, 4)?))
        }
    };
    let targets = make_targets(&admin, args.databases, nodes)?;
    let setup_secs = setup.elapsed().as_secs_f64();

    // The nodes, all on one server runtime of their own (as in production: worker threads of
    // their own), in this process.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.unwrap_or(cpus))
        .max_blocking_threads(
            args.blocking_threads
                .unwrap_or(ServerConfig::default().blocking_threads),
        )
        .thread_name("server")
        .enable_all()
        .build()?;
    let mut servers = Vec::new();
    for dir in &dirs {
        let config = ServerConfig {
            data_dir: dir.clone(),
            listen: "127.0.0.1:0".parse()?,
            cache_capacity: (args.databases + 64).max(1024),
            log_keep: 1_000_000,
            durability: args.durability,
            demo: false,
            store: match store {
                Store::Dir => None,
                Store::Pg { url, .. } => Some(url.clone()),
            },
            store_pool: args.store_pool,
            ..ServerConfig::default()
        };
        servers.push(server_rt.block_on(sync_testkit::InProcess::start(config)));
    }

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("client")
        .enable_all()
        .build()?;
    let load = Nodes {
        bases: Arc::new(servers.iter().map(|s| s.base.clone()).collect()),
        spread,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?,
        rows: args.rows,
        stamp: catalog::now_ms(),
        errors: Arc::new(AtomicU64::new(0)),
    };
    let warm_secs = client_rt.block_on(load.warm_up(&targets, args.concurrency))?;
    let warm_pushes: usize = targets
        .iter()
        .map(|t| t.acks.load(Ordering::Relaxed) as usize)
        .sum();

    let postmaster = match store {
        Store::Pg { postmaster, .. } => *postmaster,
        Store::Dir => None,
    };
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let pg_before = postmaster.map(process_tree_cpu);
    let lat = client_rt.block_on(load.measure(&targets, args.concurrency, args.seconds))?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let pg_after = postmaster.map(process_tree_cpu);
    let (peak_mib, open_files) = memory_and_files();
    let mut metrics = Vec::new();
    for (i, base) in load.bases.iter().enumerate() {
        let text = client_rt.block_on(async {
            load.http
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await
        })?;
        metrics.extend(
            text.lines()
                .filter(|l| {
                    l.starts_with("sync_db_cache_total") || l.starts_with("sync_open_databases")
                })
                .map(|l| format!("node {i}: {l}")),
        );
    }
    for s in servers {
        server_rt.block_on(s.stop())?;
    }
    drop(server_rt);

    let pushes = lat.len().max(1) as f64;
    let per_push = |before: f64, after: f64| (after - before) * 1e6 / pushes;
    let (lost, extra, verified) = verify(&admin, &targets, args.rows)?;
    Ok(Outcome {
        databases: targets.len(),
        nodes,
        setup_secs,
        warm_secs,
        warm_pushes,
        elapsed,
        lat,
        errors: load.errors.load(Ordering::Relaxed),
        lost,
        extra,
        cpu_server: per_push(cpu_before.0, cpu_after.0),
        cpu_client: per_push(cpu_before.1, cpu_after.1),
        cpu_process: per_push(cpu_before.2, cpu_after.2),
        cpu_pg: pg_before.zip(pg_after).map(|(b, a)| per_push(b, a)),
        peak_mib,
        open_files,
        metrics,
        verified,
    })
}

/// User `load`, `databases` databases and a token each (device `dev-N`), in catalog writes of
/// up to 250 databases.
fn make_targets(dir: &DataDir, databases: usize, nodes: usize) -> anyhow::Result<Vec<Arc<Target>>> {
    let mut c = dir.open_or_create_catalog()?;
    dir.catalog_write(&mut c, |c| catalog::add_user(c, "load"))?;
    let mut targets = Vec::with_capacity(databases);
    for chunk in (0..databases).collect::<Vec<_>>().chunks(250) {
        let tokens = dir.catalog_write(&mut c, |c| {
            chunk
                .iter()
                .map(|&i| {
                    catalog::create_database(c, &format!("load-{i:05}"), "load")?;
                    Ok(catalog::issue_token(c, "load", &format!("dev-{i:05}"))?.token)
                })
                .collect::<Result<Vec<_>, catalog::CatalogError>>()
        })?;
        for (&i, token) in chunk.iter().zip(tokens) {
            targets.push(Arc::new(Target {
                name: format!("load-{i:05}"),
                token,
                next_id: AtomicU64::new(1),
                acks: AtomicU64::new(0),
                turn: AtomicU64::new(0),
                home: i % nodes,
            }));
        }
    }
    Ok(targets)
}

/// Every acknowledged push is in its log exactly once: entries = acks (warm-up included).
/// Without a store, each database file's log and rows; with one, the store's log index
/// (`sync_entries`, unique per (database, seq) and per batch). Returns (lost, extra, what was
/// checked).
fn verify(
    dir: &DataDir,
    targets: &[Arc<Target>],
    rows: usize,
) -> anyhow::Result<(i64, i64, String)> {
    let ids: std::collections::HashMap<String, i64> = catalog::database_ids(&dir.open_catalog()?)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    let (mut lost, mut extra) = (0i64, 0i64);
    for t in targets {
        let id = ids[&t.name];
        let entries = match dir.store() {
            None => {
                let conn = Connection::open(dir.db_file(id))?;
                let (entries, n): (i64, i64) = conn.query_row(
                    "SELECT (SELECT count(*) FROM _sync_log), (SELECT count(*) FROM notes)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                anyhow::ensure!(
                    n == entries * rows as i64,
                    "{}: {n} rows for {entries} entries",
                    t.name
                );
                entries
            }
            Some(store) => {
                let entries = store.entries(id)?;
                let batches: std::collections::HashSet<_> =
                    entries.iter().map(|e| (&e.device, &e.batch_id)).collect();
                anyhow::ensure!(
                    batches.len() == entries.len(),
                    "{}: a batch indexed twice",
                    t.name
                );
                entries.len() as i64
            }
        };
        let acked = t.acks.load(Ordering::Relaxed) as i64;
        lost += (acked - entries).max(0);
        extra += (entries - acked).max(0);
    }
    let what = match dir.store() {
        None => "each database file's log",
        Some(_) => "the PostgreSQL store's log index",
    };
    Ok((lost, extra, format!("{} databases, {what}", targets.len())))
}
