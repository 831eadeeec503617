//! Client benchmark over a real in-process server on 127.0.0.1 (`cargo bench -p
//! session-sync-tests --bench sync`; `harness = false`, release build). Two measurements, each
//! printed next to its baseline from the same run:
//!
//! * **Latency**: from device A's `write()` returning until the row is readable on device B.
//!   B runs `start_background()` with a one-hour interval, so only the server's head events
//!   wake it. B's change listener (called after the sync that applied remote rows committed)
//!   reads B's database on a separate read-only connection and timestamps the first moment it
//!   finds the row. A either calls `sync_now()` right after the write, or runs its own
//!   background sync (woken by the write). Baseline: one HTTP round trip to the same server
//!   (`GET /v1/databases/{db}`).
//! * **Bytes on the wire per changed row**: A pushes realistic notes (1,000 single-row
//!   inserts, then 1,000 single-row updates of the title), B pulls them; `HttpTransport`'s
//!   byte counters (request and response bodies as sent, after compression) per row, against
//!   the same rows as JSON objects with column names (what an app would send to a REST API),
//!   raw and zstd-compressed.
//!
//! Knobs: `SYNC_BENCH_SAMPLES` (latency samples per mode, default 500), `SYNC_BENCH_ROWS`
//! (rows for the byte counts, default 1000), `SYNC_BENCH_ONLY=latency|bytes`,
//! `SYNC_BENCH_DURABILITY=full|normal` (the latency clients' commits; default full, as apps).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use session_sync_tests::Server;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_client::transport::TransferStats;
use sync_client::{ClientConfig, Durability, HttpTransport, RemoteConfig, SyncClient, Transport};

const USER: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let only = std::env::var("SYNC_BENCH_ONLY").unwrap_or_default();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    println!("session-sync client benchmark (loopback, in-process server, release build)");
    println!("load average at start: {}", load_average());
    if only.is_empty() || only == "latency" {
        latency(&server, dir.path(), env_usize("SYNC_BENCH_SAMPLES", 500));
    }
    if only.is_empty() || only == "bytes" {
        bytes(&server, dir.path(), env_usize("SYNC_BENCH_ROWS", 1000));
    }
    println!("load average at end: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A client of database `db` as `device`, whose transport is an `HttpTransport` we keep a
/// handle on (for its byte counters).
fn client(
    server: &Server,
    dir: &Path,
    db: &str,
    device: &str,
    config: ClientConfig,
) -> (SyncClient, Arc<HttpTransport>) {
    let token = server.token(USER, device);
    let remote: RemoteConfig = server.remote(&token, db);
    let http = Arc::new(HttpTransport::new(&remote, config.http_timeout).unwrap());
    let client = SyncClient::init(dir.join(format!("{db}-{device}.db")), remote, config)
        .unwrap()
        .with_transport(Arc::clone(&http) as Arc<dyn Transport>)
        .unwrap();
    (client, http)
}

fn new_database(server: &Server, db: &str) {
    // `setup` creates the user on first use and the database; its token is not needed.
    server.setup(USER, db, "setup");
}

/// The clients' durability: `full` (the default: every commit is fsynced) unless
/// `SYNC_BENCH_DURABILITY=normal`.
fn durability() -> Durability {
    match std::env::var("SYNC_BENCH_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        Ok("full") | Err(_) => Durability::Full,
        Ok(other) => panic!("SYNC_BENCH_DURABILITY must be full or normal, not {other:?}"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pusher {
    /// A calls `sync_now()` after each write.
    SyncNow,
    /// A runs `start_background()`; the write wakes its sync loop.
    Background,
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn latency(server: &Server, dir: &Path, samples: usize) {
    println!(
        "\n## write-on-A to visible-on-B latency ({samples} samples per mode, 50 warm-up; client durability {:?})",
        durability()
    );
    // Baseline: one HTTP round trip (GET database info) against the same server.
    new_database(server, "latency-base");
    let token = server.token(USER, "base");
    let http = HttpTransport::new(
        &server.remote(&token, "latency-base"),
        Duration::from_secs(30),
    )
    .unwrap();
    let mut base: Vec<Duration> = (0..samples + 50)
        .map(|_| {
            let t = Instant::now();
            http.info().unwrap();
            t.elapsed()
        })
        .skip(50)
        .collect();
    base.sort();
    println!(
        "baseline, one HTTP round trip (GET /v1/databases/{{db}}): p50 {} p99 {}",
        ms(percentile(&base, 50)),
        ms(percentile(&base, 99))
    );
    for pusher in [Pusher::SyncNow, Pusher::Background] {
        let (mut v, mut a_sync) = latency_run(server, dir, pusher, samples);
        v.sort();
        a_sync.sort();
        let (p50, p99) = (percentile(&v, 50), percentile(&v, 99));
        println!(
            "A {pusher:?}: p50 {} ({:.1}x baseline) p99 {} ({:.1}x) max {} — target p50 <= 20 ms, p99 <= 100 ms: {}",
            ms(p50),
            p50.as_secs_f64() / percentile(&base, 50).as_secs_f64(),
            ms(p99),
            p99.as_secs_f64() / percentile(&base, 99).as_secs_f64(),
            ms(*v.last().unwrap()),
            if p50 <= Duration::from_millis(20) && p99 <= Duration::from_millis(100) {
                "met"
            } else {
                "NOT met"
            }
        );
        if !a_sync.is_empty() {
            println!(
                "  of which A's sync_now (push, then pull): p50 {} p99 {}",
                ms(percentile(&a_sync, 50)),
                ms(percentile(&a_sync, 99))
            );
        }
    }
}

/// Latency samples, and (SyncNow mode) how long A's `sync_now` took.
fn latency_run(
    server: &Server,
    dir: &Path,
    pusher: Pusher,
    samples: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let db = format!("latency-{}", format!("{pusher:?}").to_lowercase());
    new_database(server, &db);
    let config = ClientConfig {
        // Only events (on B) and local writes (on A) wake the background loops.
        sync_interval: Duration::from_secs(3600),
        durability: durability(),
        ..ClientConfig::default()
    };
    let (a, _) = client(server, dir, &db, &format!("{db}-a"), config.clone());
    let (b, _) = client(server, dir, &db, &format!("{db}-b"), config);
    // The listener runs on B's sync thread after remote rows were committed; it reads B's
    // file on its own read-only connection and reports the highest note id visible, and when.
    let reader = Mutex::new(
        Connection::open_with_flags(b.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap(),
    );
    let (tx, rx) = mpsc::channel::<(Instant, i64)>();
    let tx = Mutex::new(tx);
    b.set_change_listener(Some(Arc::new(move |_tables: &[String]| {
        let max: i64 = reader
            .lock()
            .unwrap()
            .query_row("SELECT coalesce(max(id), 0) FROM notes", [], |r| r.get(0))
            .unwrap();
        let _ = tx.lock().unwrap().send((Instant::now(), max));
    })));
    b.start_background().unwrap();
    if pusher == Pusher::Background {
        a.start_background().unwrap();
    }
    let mut out = Vec::with_capacity(samples);
    // How long A's own `sync_now` (push, then pull) took, in the SyncNow mode.
    let mut a_sync = Vec::with_capacity(samples);
    for i in 1..=(samples + 50) as i64 {
        while rx.try_recv().is_ok() {}
        a.write(move |c| {
            c.execute(
                "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, 'body', ?1)",
                rusqlite::params![i, format!("note {i}")],
            )?;
            Ok(())
        })
        .unwrap();
        let written = Instant::now();
        if pusher == Pusher::SyncNow {
            a.sync_now().unwrap();
            if i > 50 {
                a_sync.push(written.elapsed());
            }
        }
        let deadline = written + Duration::from_secs(10);
        let seen = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, max)) if max >= i => break at,
                Ok(_) => {}
                Err(_) => panic!("note {i} did not reach B within 10 s ({pusher:?})"),
            }
        };
        if i > 50 {
            out.push(seen - written);
        }
    }
    a.close();
    b.close();
    (out, a_sync)
}

/// Prose-like text: words from a vocabulary of 2,000 made-up words of 1–4 syllables, drawn
/// with a Zipf-like skew (a few words are common, most are rare), so it compresses about as
/// well as real notes do — neither like random bytes nor like a 50-word toy vocabulary.
struct Prose {
    vocabulary: Vec<String>,
}

impl Prose {
    fn new(rng: &mut StdRng) -> Prose {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ne", "ro", "ta", "shi", "pu", "ve", "da", "gor", "lin", "mar",
            "tes", "con", "ple", "stra", "bi", "fu", "qua", "ex", "ment", "tion", "re", "al", "in",
            "on", "ist", "ber", "wo",
        ];
        let vocabulary = (0..2000)
            .map(|_| {
                let n = rng.random_range(1..=4);
                (0..n)
                    .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                    .collect()
            })
            .collect();
        Prose { vocabulary }
    }

    fn sentence(&self, rng: &mut StdRng, words: usize) -> String {
        (0..words)
            .map(|_| {
                let u: f64 = rng.random();
                self.vocabulary[(u * u * u * self.vocabulary.len() as f64) as usize].as_str()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone)]
struct Note {
    id: i64,
    title: String,
    body: String,
    updated_at: i64,
}

impl Note {
    fn json(&self) -> serde_json::Value {
        json!({"id": self.id, "title": self.title, "body": self.body, "updated_at": self.updated_at})
    }
}

/// Body bytes moved since `before`: (up, down).
fn moved(stats: &TransferStats, before: (u64, u64)) -> (u64, u64) {
    let now = counters(stats);
    (now.0 - before.0, now.1 - before.1)
}

fn counters(stats: &TransferStats) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (stats.bytes_up.load(Relaxed), stats.bytes_down.load(Relaxed))
}

fn zstd_len(bytes: &[u8]) -> usize {
    zstd::bulk::compress(bytes, 3).unwrap().len()
}

fn bytes(server: &Server, dir: &Path, rows: usize) {
    println!(
        "\n## bytes on the wire per changed row ({rows} notes, one write transaction per row)"
    );
    let db = "bytes";
    new_database(server, db);
    let (a, ha) = client(server, dir, db, "bytes-a", ClientConfig::default());
    let (b, hb) = client(server, dir, db, "bytes-b", ClientConfig::default());
    let mut rng = StdRng::seed_from_u64(42);
    let prose = Prose::new(&mut rng);
    let now_ms = 1_763_700_000_000i64;
    let mut notes: Vec<Note> = (0..rows)
        .map(|i| Note {
            id: a.new_id().unwrap(),
            title: {
                let n = rng.random_range(3..8);
                prose.sentence(&mut rng, n)
            },
            body: {
                let n = rng.random_range(20..80);
                prose.sentence(&mut rng, n)
            },
            updated_at: now_ms + i as i64,
        })
        .collect();
    let avg_row: usize = notes
        .iter()
        .map(|n| n.title.len() + n.body.len() + 16)
        .sum::<usize>()
        / rows;
    println!(
        "rows: id from sync_id() (random 63-bit), title 3-7 words, body 20-79 words of prose-like text, updated_at; ~{avg_row} B of values per row"
    );

    let measure = |label: &str,
                   notes: &[Note],
                   sql: &'static str,
                   json_rows: Vec<serde_json::Value>| {
        let (a0, b0) = (counters(ha.stats()), counters(hb.stats()));
        for n in notes {
            let n = n.clone();
            a.write(move |c| {
                if sql.starts_with("INSERT") {
                    c.execute(sql, rusqlite::params![n.id, n.title, n.body, n.updated_at])?;
                } else {
                    c.execute(sql, rusqlite::params![n.id, n.title])?;
                }
                Ok(())
            })
            .unwrap();
        }
        let pending = a.status().unwrap().pending_bytes;
        let ra = a.sync_now().unwrap();
        let rb = b.sync_now().unwrap();
        assert_eq!(b.status().unwrap().cursor, ra.cursor);
        let (up, a_down) = moved(ha.stats(), a0);
        let (_, b_down) = moved(hb.stats(), b0);
        let json = serde_json::to_vec(&json_rows).unwrap();
        let per = |n: u64| n as f64 / notes.len() as f64;
        let json_row = per(json.len() as u64);
        let json_zstd_row = per(zstd_len(&json) as u64);
        println!(
            "{label}: A pushed {} batch(es), B pulled {} entries",
            ra.pushed_batches, rb.pulled_entries
        );
        println!(
            "  changesets before compression (outbox): {:.1} B/row",
            per(pending)
        );
        println!(
            "  baseline JSON objects with column names: {json_row:.1} B/row raw, {json_zstd_row:.1} B/row zstd-3"
        );
        for (what, n) in [
            ("A up (push bodies)", up),
            ("A down (push answers)", a_down),
            ("B down (pull pages)", b_down),
        ] {
            println!(
                "  {what}: {:.1} B/row = {:.2}x raw JSON, {:.2}x zstd JSON",
                per(n),
                per(n) / json_row,
                per(n) / json_zstd_row
            );
        }
    };

    let json_inserts: Vec<_> = notes.iter().map(Note::json).collect();
    measure(
        "inserts",
        &notes,
        "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, ?4)",
        json_inserts,
    );
    for n in &mut notes {
        let words = rng.random_range(3..8);
        n.title = prose.sentence(&mut rng, words);
    }
    // An app's REST call for an edit: the whole object (PUT)…
    let json_updates: Vec<_> = notes.iter().map(Note::json).collect();
    measure(
        "updates of one column (title)",
        &notes,
        "UPDATE notes SET title = ?2 WHERE id = ?1",
        json_updates,
    );
    // …or only the changed fields (PATCH): a smaller baseline, printed for comparison.
    let patch: Vec<_> = notes
        .iter()
        .map(|n| json!({"id": n.id, "title": n.title}))
        .collect();
    let patch = serde_json::to_vec(&patch).unwrap();
    println!(
        "  (a JSON PATCH baseline with only id and title: {:.1} B/row raw, {:.1} B/row zstd-3)",
        patch.len() as f64 / rows as f64,
        zstd_len(&patch) as f64 / rows as f64
    );
    a.close();
    b.close();
}
