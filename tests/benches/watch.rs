//! Watched-query latency (`cargo bench -p session-sync-tests --bench watch`; `harness =
//! false`, release build): from a local `write()` returning — its transaction committed — until
//! a watch on the written table has delivered the fresh rows, on a synced copy of the `notes`
//! database (an in-process server; no sync runs during the samples). Printed next to its
//! baseline from the same run: the `write()` call itself (capture and commit, `Durability`
//! full as apps use it). Two watches: a point read (`SELECT count(*) FROM notes`) and the
//! newest 50 notes with their titles.
//!
//! Knob: `WATCH_BENCH_SAMPLES` (writes per watch, default 2000). Without `--bench`
//! (`cargo test --benches`) it is a smoke run of 50 writes whose figures mean nothing.

use rusqlite::types::Value;
use session_sync_tests::Server;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sync_client::ClientConfig;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let samples: usize = std::env::var("WATCH_BENCH_SAMPLES")
        .ok()
        .map(|s| s.parse().expect("WATCH_BENCH_SAMPLES must be a number"))
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            2000
        } else {
            50
        });
    let server = Server::start();
    let token = server.setup("bench", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let client = server.notes_client(dir.path(), "a.db", &token, ClientConfig::default());
    println!(
        "watched-query latency: local write() returned -> callback delivered ({samples} writes per query)"
    );
    let mut next_id = 1i64;
    for (name, sql) in [
        ("count(*)", "SELECT count(*) FROM notes"),
        (
            "newest 50",
            "SELECT id, title FROM notes ORDER BY updated_at DESC, id LIMIT 50",
        ),
    ] {
        let (tx, rx) = mpsc::channel::<Instant>();
        let _sub = client
            .watch(sql, vec![], move |rows| {
                rows.expect("watched query");
                let _ = tx.send(Instant::now());
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("first delivery");
        let mut latency = Vec::with_capacity(samples);
        let mut write = Vec::with_capacity(samples);
        for _ in 0..samples {
            let id = next_id;
            next_id += 1;
            let started = Instant::now();
            client
                .write(move |c| {
                    c.execute(
                        "INSERT INTO notes(id, title, updated_at) VALUES (?1, ?2, ?1)",
                        rusqlite::params![id, Value::Text(format!("note {id}"))],
                    )?;
                    Ok(())
                })
                .unwrap();
            let committed = Instant::now();
            write.push(committed - started);
            let delivered = rx.recv_timeout(Duration::from_secs(10)).expect("delivery");
            latency.push(delivered.saturating_duration_since(committed));
            // Nothing else pending: the next sample starts from a quiet notifier.
            while rx.try_recv().is_ok() {}
        }
        latency.sort();
        write.sort();
        let (p50, p99) = (percentile(&latency, 0.5), percentile(&latency, 0.99));
        let (w50, w99) = (percentile(&write, 0.5), percentile(&write, 0.99));
        println!(
            "  {name:<10} commit -> callback p50 {p50:>9.1?} p99 {p99:>9.1?} | write() p50 {w50:>9.1?} p99 {w99:>9.1?} | ratio p50 {:.2}x p99 {:.2}x",
            p50.as_secs_f64() / w50.as_secs_f64(),
            p99.as_secs_f64() / w99.as_secs_f64(),
        );
    }
    client.close();
}
