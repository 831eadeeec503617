//! Capture on an encrypted database against the same on a plain one, in one run (SQLCipher
//! with no key behaves as plain SQLite, so one build measures both).
//!
//! ```text
//! cargo bench -p sync-core --features encryption --bench encrypted
//! ```
//!
//! Files on disk in a temporary directory, WAL, `synchronous=NORMAL`, rows of ~250 bytes in
//! 1000-row transactions, each figure the median of `SYNC_BENCH_REPS` runs (default 3) on
//! fresh databases, plain and encrypted runs interleaved. `SYNC_BENCH_ROWS` (default 100,000)
//! changes the size. Also prints what opening costs with a passphrase (SQLCipher's PBKDF2,
//! paid by every connection) and with a raw key.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::{Duration, Instant};
use sync_core::engine::capture::capture;
use sync_core::engine::cipher::{self, EncryptionKey};
use sync_core::engine::outbox;

const SCHEMA: &str = "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT NOT NULL,
    author TEXT NOT NULL, body TEXT NOT NULL, score REAL, created INTEGER NOT NULL);";
const INSERT: &str =
    "INSERT INTO note (id, title, author, body, score, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

type Row = (i64, String, String, String, f64, i64);

/// `n` rows of about 250 bytes of payload each, always the same.
fn rows(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut text = |len: usize| -> String {
        const WORDS: &[&str] = &[
            "sync", "offline", "change", "device", "server", "row", "table", "commit", "merge",
            "note", "the", "a", "of", "and", "with", "conflict", "session", "first", "last",
        ];
        let mut s = String::with_capacity(len + 12);
        while s.len() < len {
            s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            s.push(' ');
        }
        s.truncate(len);
        s
    };
    (0..n)
        .map(|i| {
            let (title, author, body) = (text(40), text(20), text(170));
            (
                i as i64 + 1,
                title,
                author,
                body,
                i as f64 * 0.5,
                1_700_000_000_000 + i as i64,
            )
        })
        .collect()
}

fn open(path: &Path, key: Option<&EncryptionKey>) -> Connection {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    cipher::open(path, flags, key).unwrap()
}

/// A fresh database file set up like a client's.
fn fresh(dir: &Path, name: &str, key: Option<&EncryptionKey>) -> Connection {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = open(&path, key);
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    outbox::install(&conn).unwrap();
    conn
}

fn insert(conn: &Connection, r: &Row) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT)?
        .execute(params![r.0, r.1, r.2, r.3, r.4, r.5])?;
    Ok(())
}

/// Writes all rows in 1000-row transactions, captured or plain; the time taken.
fn run(dir: &Path, rows: &[Row], key: Option<&EncryptionKey>, captured: bool) -> Duration {
    let conn = fresh(dir, "bench.db", key);
    let start = Instant::now();
    for batch in rows.chunks(1000) {
        if captured {
            capture(&conn, |c| {
                batch.iter().try_for_each(|r| insert(c, r))?;
                Ok::<_, rusqlite::Error>(())
            })
            .unwrap();
        } else {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            batch.iter().for_each(|r| insert(&conn, r).unwrap());
            conn.execute_batch("COMMIT").unwrap();
        }
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_usize("SYNC_BENCH_ROWS", if full { 100_000 } else { 2_000 });
    let reps = env_usize("SYNC_BENCH_REPS", if full { 3 } else { 1 }).max(1);
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(n);
    let key = EncryptionKey::raw([0x5c; 32]);
    println!(
        "sync-core encrypted capture benchmark: {n} rows, 1000-row transactions, WAL, \
         synchronous=NORMAL, median of {reps}; {}",
        Connection::open_in_memory()
            .unwrap()
            .query_row("PRAGMA cipher_version", [], |r| r.get::<_, String>(0))
            .map(|v| format!("SQLCipher {v}"))
            .unwrap_or_else(|_| "no SQLCipher".into())
    );
    let mut t: [Vec<Duration>; 4] = Default::default();
    for _ in 0..reps {
        for (i, (k, captured)) in [
            (None, false),
            (Some(&key), false),
            (None, true),
            (Some(&key), true),
        ]
        .into_iter()
        .enumerate()
        {
            t[i].push(run(dir.path(), &rows, k, captured));
        }
    }
    let [plain, plain_enc, capture, capture_enc] = t.map(median);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("  plain insert           {:>10}", ms(plain));
    println!("  plain insert, encrypted{:>10}", ms(plain_enc));
    println!("  capture                {:>10}", ms(capture));
    println!("  capture, encrypted     {:>10}", ms(capture_enc));
    println!(
        "capture encrypted / capture plain: {:.2}x   (plain inserts: encrypted / plain {:.2}x; \
         capture / plain insert on encrypted files {:.2}x)",
        ratio(capture_enc, capture),
        ratio(plain_enc, plain),
        ratio(capture_enc, plain_enc)
    );

    // What one open costs: every connection of the client (writer, each reader) pays it.
    let path = dir.path().join("open.db");
    let phrase = EncryptionKey::passphrase("correct horse battery staple").unwrap();
    for (what, k) in [("raw key", &key), ("passphrase", &phrase)] {
        let _ = std::fs::remove_file(&path);
        drop(fresh(dir.path(), "open.db", Some(k)));
        let start = Instant::now();
        drop(open(&path, Some(k)));
        println!("open with a {what}: {}", ms(start.elapsed()));
    }
}
