//! Printing runs: the classic single run (one node on the data directory) and
//! `--compare-stores` (the same load on three set-ups in one run, and their ratios).

use crate::Args;
use crate::bench::{self, Outcome, Store};
use crate::load::Spread;
use std::path::Path;
use sync_testkit::pg::PgCluster;

fn header(args: &Args, cpus: usize) {
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
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Prints one run's figures.
fn report(o: &Outcome, cpus: usize, rows: usize) {
    println!(
        "setup: {} databases and tokens in the catalog in {:.2} s",
        o.databases, o.setup_secs
    );
    println!(
        "warm-up: {} first pushes (files created, migrated, opened{}) in {:.2} s",
        o.warm_pushes,
        if o.nodes > 1 {
            "; each node's copy brought in"
        } else {
            ""
        },
        o.warm_secs
    );
    println!(
        "pushes: {} in {:.2} s = {:.0} pushes/s ({:.0} rows/s)",
        o.pushes(),
        o.elapsed,
        o.rate(),
        o.rate() * rows as f64
    );
    println!(
        "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        o.ms(0.50),
        o.ms(0.90),
        o.ms(0.99),
        o.ms(1.0)
    );
    println!(
        "cpu per push: server {:.0} µs, load generator {:.0} µs, process total {:.0} µs{} \
         → server alone could sustain ≈ {:.0} pushes/s on {cpus} CPUs",
        o.cpu_server,
        o.cpu_client,
        o.cpu_process,
        o.cpu_pg
            .map(|pg| format!(", PostgreSQL {pg:.0} µs"))
            .unwrap_or_default(),
        cpus as f64 * 1e6 / (o.cpu_server + o.cpu_pg.unwrap_or(0.0)).max(1.0)
    );
    for line in &o.metrics {
        println!("server: {line}");
    }
    println!(
        "memory: peak RSS {:.0} MiB (servers and load generator together); open files {}",
        o.peak_mib, o.open_files
    );
    println!("errors: {}", o.errors);
    println!(
        "verify: {}, log entries vs acknowledged pushes: lost {}, unacknowledged extra {}",
        o.verified, o.lost, o.extra
    );
}

/// One node on the data directory (what `sync-load` always did).
pub(crate) fn single(args: &Args, data: &Path) -> anyhow::Result<bool> {
    let cpus = cpus();
    header(args, cpus);
    let o = bench::run(args, data, &Store::Dir, 1, Spread::Push)?;
    report(&o, cpus, args.rows);
    Ok(o.ok())
}

/// The same load against (a) one node on the data directory, (b) one node on a PostgreSQL
/// store, (c) three nodes on one PostgreSQL store; then the ratios.
pub(crate) fn compare(args: &Args, data: &Path) -> anyhow::Result<bool> {
    let cpus = cpus();
    header(args, cpus);
    anyhow::ensure!(
        sync_testkit::pg::available(),
        "--compare-stores needs PostgreSQL's server binaries (initdb, pg_ctl): \
         apt-get install postgresql"
    );
    std::fs::create_dir_all(data)?;
    let started = std::time::Instant::now();
    let cluster = PgCluster::start()?;
    let version = cluster.psql("postgres", "SHOW server_version");
    println!(
        "PostgreSQL {} (a throwaway cluster on 127.0.0.1:{}, fsync on, started in {:.1} s); \
         nodes are in-process servers in this process, on one server runtime, each with a \
         data directory of its own; 3 nodes: {}",
        version.trim(),
        cluster.port(),
        started.elapsed().as_secs_f64(),
        match args.spread {
            Spread::Push =>
                "each database's pushes rotate over the nodes (every push on another node than the previous one)",
            Spread::Database => "each database always on the same node (database index % 3)",
        }
    );
    let postmaster = cluster.postmaster_pid();
    let runs = [
        ("a", "1 node, data directory", Store::Dir, 1),
        (
            "b",
            "1 node, PostgreSQL",
            Store::Pg {
                url: cluster.create_database(),
                postmaster,
            },
            1,
        ),
        (
            "c",
            "3 nodes, PostgreSQL",
            Store::Pg {
                url: cluster.create_database(),
                postmaster,
            },
            3,
        ),
    ];
    let mut outcomes = Vec::new();
    for (key, what, store, nodes) in runs {
        println!("\n== ({key}) {what}");
        let o = bench::run(args, &data.join(key), &store, nodes, args.spread)?;
        report(&o, cpus, args.rows);
        outcomes.push((key, what, o));
    }

    println!(
        "\n== summary (same load each: {} databases, {} clients, {} s, {} row(s) per push)",
        args.databases, args.concurrency, args.seconds, args.rows
    );
    println!(
        "| run | pushes/s | p50 ms | p99 ms | server CPU µs/push | PostgreSQL CPU µs/push | errors | lost |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (key, what, o) in &outcomes {
        println!(
            "| ({key}) {what} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} |",
            o.rate(),
            o.ms(0.50),
            o.ms(0.99),
            o.cpu_server,
            o.cpu_pg.map_or("-".into(), |c| format!("{c:.0}")),
            o.errors,
            o.lost + o.extra
        );
    }
    let (a, b, c) = (&outcomes[0].2, &outcomes[1].2, &outcomes[2].2);
    for (name, x, y) in [("b/a", b, a), ("c/a", c, a), ("c/b", c, b)] {
        println!(
            "ratio {name}: pushes/s {:.2}, p50 {:.2}, p99 {:.2}",
            x.rate() / y.rate().max(f64::MIN_POSITIVE),
            x.ms(0.50) / y.ms(0.50).max(f64::MIN_POSITIVE),
            x.ms(0.99) / y.ms(0.99).max(f64::MIN_POSITIVE)
        );
    }
    drop(cluster);
    Ok(outcomes.iter().all(|(_, _, o)| o.ok()))
}
