//! `sync-load`: a bounded load test on loopback. Starts a server in-process on 127.0.0.1:0
//! over a fresh data directory, creates N databases with a token each, then runs C concurrent
//! clients pushing small batches (one new row each) for S seconds over keep-alive
//! connections. Reports pushes/s and latency percentiles, then stops the server and checks
//! that every acknowledged push is in its database's log exactly once (log entries = acks).
//!
//! ```sh
//! cargo run --release -p sync-server --bin sync-load -- --databases 1000 --seconds 10 --concurrency 64
//! ```
//!
//! Exit code 0 when there were no errors and nothing was lost, 1 otherwise, 2 on setup failure.

use anyhow::Context;
use clap::Parser;
use rusqlite::Connection;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use sync_server::{AppState, ServerConfig, catalog, serve};

/// Load-test a sync server on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Databases to create (each gets its own token and device).
    #[arg(long, default_value_t = 1000)]
    databases: usize,
    /// Length of the measured phase, in seconds.
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
    /// Instead of the HTTP load, time `sync_core::server::push` alone on one database file
    /// (no HTTP, no threads) for this many pushes, to show what the protocol step costs.
    #[arg(long, value_name = "PUSHES")]
    step_only: Option<usize>,
    /// Data directory to use (must not exist) [default: a temporary directory, removed after].
    #[arg(long)]
    data: Option<PathBuf>,
}

/// A one-table changeset inserting `rows` notes starting at `id`, encoded by hand (SQLite's
/// changeset format) so that the load generator spends its CPU on HTTP, not on SQLite.
fn insert_notes(id: i64, rows: usize, stamp: i64) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 128, "one-byte varint lengths only");
        out.push(3);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: i64) {
        out.push(1);
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::with_capacity(16 + rows * 64);
    out.extend_from_slice(b"T\x04\x01\x00\x00\x00notes\x00");
    for r in 0..rows {
        out.extend_from_slice(&[0x12, 0]);
        int(&mut out, id + r as i64);
        text(&mut out, "load test note");
        text(&mut out, "a small body of text, as a note app would push");
        int(&mut out, stamp);
    }
    out
}

struct Target {
    name: String,
    token: String,
    next_id: AtomicU64,
    acks: AtomicU64,
}

/// CPU seconds (user + system) used so far, by thread-name prefix: `server` (the server's
/// runtime and its blocking pool), `client` (the load generator), and everything in total.
fn cpu_seconds() -> (f64, f64, f64) {
    let ticks = 100.0; // USER_HZ
    let parse = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let t = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((name, t / ticks))
    };
    let total = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse(&s))
        .map_or(0.0, |(_, t)| t);
    let (mut server, mut client) = (0.0, 0.0);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Some((name, secs)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| parse(&s))
            {
                if name.starts_with("server") {
                    server += secs;
                } else if name.starts_with("client") {
                    client += secs;
                }
            }
        }
    }
    (server, client, total)
}

/// Peak resident memory of this process (server and load generator), in MiB, and the number
/// of open file descriptors.
fn memory_and_files() -> (f64, usize) {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    (hwm / 1024.0, fds)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
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
        Some(n) => step_only(&data, n),
        None => run_in(&args, &data),
    };
    if temp {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

fn run_in(args: &Args, data: &std::path::Path) -> anyhow::Result<bool> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "sync-load: {} databases, concurrency {}, {} s, {} row(s) per push, {} CPUs, {} build",
        args.databases,
        args.concurrency,
        args.seconds,
        args.rows,
        cpus,
        if cfg!(debug_assertions) {
            "DEBUG (numbers are not representative)"
        } else {
            "release"
        }
    );

    // Databases and tokens, through the catalog as the admin CLI would.
    sync_server::storage::raise_open_files_limit(sync_server::storage::files_needed(
        args.databases + 64,
        ServerConfig::default().readers,
    ));
    let setup = Instant::now();
    let targets: Vec<Arc<Target>> = {
        let c = catalog::open(data)?;
        catalog::add_user(&c, "load")?;
        (0..args.databases)
            .map(|i| {
                let name = format!("load-{i:05}");
                catalog::create_database(&c, &name, "load")?;
                let token = catalog::issue_token(&c, "load", &format!("dev-{i:05}"))?.token;
                Ok(Arc::new(Target {
                    name,
                    token,
                    next_id: AtomicU64::new(1),
                    acks: AtomicU64::new(0),
                }))
            })
            .collect::<anyhow::Result<_>>()?
    };
    println!(
        "setup: {} databases and tokens in the catalog in {:.2} s",
        targets.len(),
        setup.elapsed().as_secs_f64()
    );

    // The server, on its own runtime (as in production: its own worker threads).
    let config = ServerConfig {
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        cache_capacity: (args.databases + 64).max(1024),
        log_keep: 1_000_000,
        ..ServerConfig::default()
    };
    let state = AppState::new(config).context("server state")?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.unwrap_or(cpus))
        .max_blocking_threads(
            args.blocking_threads
                .unwrap_or(ServerConfig::default().blocking_threads),
        )
        .thread_name("server")
        .enable_all()
        .build()?;
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("client")
        .enable_all()
        .build()?;
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let stamp = catalog::now_ms();

    // Warm-up: one push per database creates its file and opens it (not measured).
    let warm = Instant::now();
    client_rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
        let mut tasks = Vec::new();
        for t in &targets {
            let permit = sem.clone().acquire_owned().await?;
            let (t, http, base, errors) = (t.clone(), http.clone(), base.clone(), errors.clone());
            let rows = args.rows;
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                if !push(&http, &base, &t, rows, stamp, "warm").await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "warm-up: {} first pushes (files created, migrated, opened) in {:.2} s",
        targets.len(),
        warm.elapsed().as_secs_f64()
    );

    // The measured phase: each client rotates over its share of the databases.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let latencies: Vec<Vec<u32>> = client_rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..args.concurrency {
            let mine: Vec<Arc<Target>> = targets
                .iter()
                .skip(w % targets.len())
                .step_by(args.concurrency)
                .cloned()
                .collect();
            let mine = if mine.is_empty() {
                vec![targets[w % targets.len()].clone()]
            } else {
                mine
            };
            let (http, base, errors, stop) =
                (http.clone(), base.clone(), errors.clone(), stop.clone());
            let rows = args.rows;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(64 * 1024);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let t = &mine[i % mine.len()];
                    i += 1;
                    let begun = Instant::now();
                    if push(&http, &base, t, rows, stamp, &format!("w{w}")).await {
                        lat.push(begun.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await?);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let (peak_mib, open_files) = memory_and_files();
    let mut lat: Vec<u32> = latencies.into_iter().flatten().collect();
    lat.sort_unstable();
    let pushes = lat.len();
    let metrics = client_rt.block_on(async {
        http.get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await
    })?;

    let _ = stop_tx.send(());
    server_rt.block_on(server)??;
    drop(state);
    drop(server_rt);

    let errors = errors.load(Ordering::Relaxed);
    println!(
        "pushes: {pushes} in {elapsed:.2} s = {:.0} pushes/s ({:.0} rows/s)",
        pushes as f64 / elapsed,
        (pushes * args.rows) as f64 / elapsed
    );
    println!(
        "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    let per_push = |before: f64, after: f64| (after - before) * 1e6 / pushes.max(1) as f64;
    let (server_us, client_us, total_us) = (
        per_push(cpu_before.0, cpu_after.0),
        per_push(cpu_before.1, cpu_after.1),
        per_push(cpu_before.2, cpu_after.2),
    );
    println!(
        "cpu per push: server {server_us:.0} µs, load generator {client_us:.0} µs, process total {total_us:.0} µs \
         → server alone could sustain ≈ {:.0} pushes/s on {cpus} CPUs",
        cpus as f64 * 1e6 / server_us.max(1.0)
    );
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("sync_db_cache_total") || l.starts_with("sync_open_databases"))
    {
        println!("server: {line}");
    }
    println!(
        "memory: peak RSS {peak_mib:.0} MiB (server and load generator together); open files {open_files}"
    );
    println!("errors: {errors}");

    // Every acknowledged push is in its log exactly once: entries = acks (warm-up included).
    let ids: std::collections::HashMap<String, i64> = catalog::database_ids(&catalog::open(data)?)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    let (mut lost, mut extra) = (0i64, 0i64);
    for t in &targets {
        let conn = Connection::open(data.join(format!("dbs/{}.db", ids[&t.name])))?;
        let (entries, rows): (i64, i64) = conn.query_row(
            "SELECT (SELECT count(*) FROM _sync_log), (SELECT count(*) FROM notes)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let acked = t.acks.load(Ordering::Relaxed) as i64;
        lost += (acked - entries).max(0);
        extra += (entries - acked).max(0);
        anyhow::ensure!(
            rows == entries * args.rows as i64,
            "{}: {rows} rows for {entries} entries",
            t.name
        );
    }
    println!(
        "verify: {} databases, log entries vs acknowledged pushes: lost {lost}, unacknowledged extra {extra}",
        targets.len()
    );
    Ok(errors == 0 && lost == 0)
}

/// Times the push step alone: same files, pragmas and schema as the server, no HTTP.
fn step_only(data: &std::path::Path, pushes: usize) -> anyhow::Result<bool> {
    use sync_server::storage::{Storage, StorageConfig};
    // The server's own storage, so the connection is set up exactly as the server's are
    // (pragmas, page cache, lookaside, migrations).
    let d = ServerConfig::default();
    let storage = Storage::new(
        StorageConfig {
            data_dir: data.to_path_buf(),
            capacity: 1,
            idle: d.idle,
            page_cache_kib: d.page_cache_kib,
            readers: d.readers,
            synchronous: d.durability.pragma(),
        },
        Arc::new(sync_server::migrations::AppSchema::embedded()),
    )?;
    let db = storage.get(1)?;
    db.write(|conn| time_push_step(conn, db.shapes(), pushes))
}

fn time_push_step(
    conn: &Connection,
    shapes: &sync_core::schema::ShapeCache,
    pushes: usize,
) -> anyhow::Result<bool> {
    use sync_core::changeset::Changeset;
    use sync_core::protocol::push::PushHeaders;
    use sync_core::server::{PushConfig, PushTarget, push};
    let config = PushConfig {
        policies: ServerConfig::default().policies,
    };
    let started = Instant::now();
    for i in 0..pushes {
        let headers = PushHeaders {
            batch_id: format!("b{i}"),
            cursor: i as i64,
            schema_version: 1,
        };
        let cs = Changeset::from_bytes(insert_notes(i as i64 + 1, 1, 0));
        let target = PushTarget { conn, shapes };
        let r = push(target, "dev", &headers, &cs, &config, 0)?;
        anyhow::ensure!(r.seq == i as i64 + 1);
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / pushes as f64;
    println!(
        "sync_core::server::push alone: {pushes} pushes, {per:.0} µs each ({:.0} pushes/s on one thread)",
        1e6 / per
    );
    // Two of its parts. Every apply sets PRAGMA defer_foreign_keys, which expires the
    // connection's prepared statements; the same pragma is run here before each iteration
    // (and timed alone, to subtract it).
    let cs = Changeset::from_bytes(insert_notes(1, 1, 0));
    let summary = cs.validate()?;
    let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            conn.execute_batch("PRAGMA defer_foreign_keys = 0")?;
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    let pragma = time(&|| Ok(()))?;
    let fits = time(&|| Ok(sync_core::schema::check_changeset_fits(conn, &summary)?))?;
    let meta = time(&|| Ok(sync_core::server::bounds(conn).map(|_| ())?))?;
    println!(
        "  of which: schema check {:.0} µs (two pragma queries per table, compiled every time); \
         one small cached query after an expiry {:.0} µs",
        fits - pragma,
        (meta - pragma) / 2.0
    );
    Ok(true)
}

/// One push of a fresh batch; counts the ack. Returns whether it was acknowledged.
async fn push(
    http: &reqwest::Client,
    base: &str,
    t: &Target,
    rows: usize,
    stamp: i64,
    who: &str,
) -> bool {
    let id = t.next_id.fetch_add(rows as u64, Ordering::Relaxed) as i64;
    let body = insert_notes(id, rows, stamp);
    let sent = http
        .post(format!("{base}/v1/databases/{}/push", t.name))
        .bearer_auth(&t.token)
        .header("content-type", "application/vnd.sqlite-changeset")
        .header("sync-batch-id", format!("{who}-{id}"))
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {
            if r.bytes().await.is_ok() {
                t.acks.fetch_add(1, Ordering::Relaxed);
                true
            } else {
                false
            }
        }
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            eprintln!("push to {} failed: {status} {text}", t.name);
            false
        }
        Err(e) => {
            eprintln!("push to {} failed: {e}", t.name);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoded_changesets_are_valid() {
        let cs = sync_core::changeset::Changeset::from_bytes(insert_notes(5, 3, 1));
        let summary = cs.validate().unwrap();
        assert_eq!(summary.changes(), 3);
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&sync_server::migrations::AppSchema::embedded().migrations()[0].sql)
            .unwrap();
        sync_core::apply(&conn, &cs, &sync_core::ApplyOptions::default()).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM notes WHERE id BETWEEN 5 AND 7",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 3);
    }
}
