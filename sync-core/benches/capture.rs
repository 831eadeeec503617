//! Capture and apply cost against plain SQLite, measured in one run (DESIGN "What we measure").
//!
//! ```text
//! cargo bench -p sync-core --bench capture
//! ```
//!
//! Files on disk in a temporary directory, WAL, `synchronous=NORMAL`, rows of ~250 bytes.
//! Every figure is the median of `SYNC_BENCH_REPS` runs (default 3), each on a fresh database,
//! with plain and captured runs interleaved so that background load hits both alike.
//! `SYNC_BENCH_ROWS` (default 100,000) and `SYNC_BENCH_SINGLE_ROWS` (default 20,000: one
//! transaction per row is slow) change the sizes.
//!
//! Besides the ratios it prints a breakdown of capture's cost (session attached only; plus
//! changeset generation; plus the outbox insert) so a missed target points at its cause.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::apply::apply;
use sync_core::engine::capture::capture;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::checksum;
use sync_core::engine::ffi::session::Session;
use sync_core::engine::outbox;
use sync_core::engine::spool::Source;

const SCHEMA: &str = "
    CREATE TABLE note(
        id      INTEGER PRIMARY KEY,
        title   TEXT    NOT NULL,
        author  TEXT    NOT NULL,
        body    TEXT    NOT NULL,
        score   REAL,
        created INTEGER NOT NULL
    );
";
const INSERT: &str =
    "INSERT INTO note (id, title, author, body, score, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// What a session records per row of this table (measured: printed under "size").
const CHANGESET_BYTES_PER_ROW: usize = 266;

#[derive(Clone)]
struct Row {
    id: i64,
    title: String,
    author: String,
    body: String,
    score: f64,
    created: i64,
}

impl Row {
    fn insert(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(INSERT)?.execute(params![
            self.id,
            self.title,
            self.author,
            self.body,
            self.score,
            self.created
        ])?;
        Ok(())
    }

    fn json(&self) -> Vec<u8> {
        format!(
            r#"{{"id":{},"title":{:?},"author":{:?},"body":{:?},"score":{},"created":{}}}"#,
            self.id, self.title, self.author, self.body, self.score, self.created
        )
        .into_bytes()
    }
}

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
        .map(|i| Row {
            id: i as i64 + 1,
            title: text(40),
            author: text(20),
            body: text(170),
            score: i as f64 * 0.5,
            created: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

/// A fresh database file set up like a client's.
fn fresh(dir: &Path, name: &str) -> (PathBuf, Connection) {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    outbox::install(&conn).unwrap();
    (path, conn)
}

/// How a batch of rows is written.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Plain SQLite: BEGIN IMMEDIATE, inserts, COMMIT.
    Plain,
    /// Plain, plus a blob of the changeset's size stored in the outbox (no session): the cost
    /// of writing every byte twice.
    PlainOutbox,
    /// A session attached for the transaction, dropped without generating a changeset.
    SessionOnly,
    /// Session attached and the changeset generated, but not stored.
    SessionChangeset,
    /// `sync_core::engine::capture::capture`: all of the above plus the outbox insert.
    Capture,
}

fn write_batch(conn: &Connection, batch: &[Row], mode: Mode) {
    match mode {
        Mode::Plain => {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for r in batch {
                r.insert(conn).unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        Mode::PlainOutbox => {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for r in batch {
                r.insert(conn).unwrap();
            }
            outbox::push(conn, &vec![0x5a; batch.len() * CHANGESET_BYTES_PER_ROW], 0).unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
        Mode::SessionOnly | Mode::SessionChangeset => {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            {
                let mut session = Session::new(conn).unwrap();
                session.table_filter(Some(|t: &str| !t.starts_with("_sync_")));
                session.attach(None).unwrap();
                for r in batch {
                    r.insert(conn).unwrap();
                }
                if mode == Mode::SessionChangeset {
                    let mut bytes = Vec::new();
                    session.changeset_strm(&mut bytes).unwrap();
                    std::hint::black_box(bytes);
                }
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        Mode::Capture => {
            capture(conn, |c| {
                for r in batch {
                    r.insert(c)?;
                }
                Ok::<_, rusqlite::Error>(())
            })
            .unwrap();
        }
    }
}

/// Wall-clock time and the CPU time of this thread (user + system, from the scheduler's own
/// accounting). Other processes on a busy machine stretch the first, hardly the second; the
/// second leaves out waiting for the disk (fsync at checkpoints).
#[derive(Clone, Copy, Debug, Default)]
struct Time {
    wall: Duration,
    cpu: Duration,
}

/// This thread's time on CPU so far (`/proc/thread-self/schedstat`, nanoseconds). The kernel
/// updates it at scheduler ticks and context switches, so it lags by up to a tick (~4 ms):
/// fine for runs of tenths of a second.
fn cpu_now() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Times `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (Time, T) {
    let (wall, cpu) = (Instant::now(), cpu_now());
    let out = f();
    let time = Time {
        wall: wall.elapsed(),
        cpu: cpu_now().saturating_sub(cpu),
    };
    (time, out)
}

/// Writes `rows` in transactions of `per_tx` rows into a fresh database; returns the time.
fn run(dir: &Path, rows: &[Row], per_tx: usize, mode: Mode) -> (Time, Connection) {
    let (_, conn) = fresh(dir, "bench.sqlite");
    let (time, ()) = timed(|| {
        for batch in rows.chunks(per_tx) {
            write_batch(&conn, batch, mode);
        }
    });
    (time, conn)
}

/// The median wall time and the median CPU time (each on its own).
fn median(v: &[Time]) -> Time {
    let pick = |f: fn(&Time) -> Duration| {
        let mut d: Vec<Duration> = v.iter().map(f).collect();
        d.sort();
        d[d.len() / 2]
    };
    Time {
        wall: pick(|t| t.wall),
        cpu: pick(|t| t.cpu),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `wall s (cpu s)`.
fn secs(t: Time) -> String {
    format!(
        "{:.3} s ({:.3} s)",
        t.wall.as_secs_f64(),
        t.cpu.as_secs_f64()
    )
}

/// `a / b` in wall time and in CPU time.
fn ratio(a: Time, b: Time) -> (f64, f64) {
    (
        a.wall.as_secs_f64() / b.wall.as_secs_f64(),
        a.cpu.as_secs_f64() / b.cpu.as_secs_f64(),
    )
}

/// `1.23x (cpu 1.20x)`; `n/a` when a run was too short to register CPU time.
fn times(r: (f64, f64)) -> String {
    let x = |v: f64| {
        if v.is_finite() && v > 0.0 {
            format!("{v:.2}x")
        } else {
            "n/a".to_string()
        }
    };
    format!("{} (cpu {})", x(r.0), x(r.1))
}

/// Times `modes` over `reps` interleaved repetitions; returns the medians in `modes` order.
fn compare(dir: &Path, rows: &[Row], per_tx: usize, modes: &[Mode], reps: usize) -> Vec<Time> {
    let mut samples = vec![Vec::new(); modes.len()];
    for _ in 0..reps {
        for (i, mode) in modes.iter().enumerate() {
            samples[i].push(run(dir, rows, per_tx, *mode).0);
        }
    }
    samples.iter().map(|s| median(s)).collect()
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::Plain,
        Mode::PlainOutbox,
        Mode::SessionOnly,
        Mode::SessionChangeset,
        Mode::Capture,
    ];

    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "plain SQLite",
            Mode::PlainOutbox => "plain + same-size blob in outbox",
            Mode::SessionOnly => "session attached only",
            Mode::SessionChangeset => "session + changeset generated",
            Mode::Capture => "capture (+ outbox insert)",
        }
    }
}

/// Times every mode for `rows` written `per_tx` rows per transaction and prints the figures.
/// Returns (plain, capture).
fn section(dir: &Path, rows: &[Row], per_tx: usize, reps: usize, target: f64) -> (Time, Time) {
    let t = compare(dir, rows, per_tx, &Mode::ALL, reps);
    let plain = t[0];
    println!("  {:<34} {:>19}", "", "wall (cpu)");
    for (mode, time) in Mode::ALL.iter().zip(&t) {
        let note = match mode {
            Mode::Plain => String::new(),
            Mode::Capture => format!(
                "{} plain  (target <= {target:.2}x)",
                times(ratio(*time, plain))
            ),
            _ => format!("{} plain", times(ratio(*time, plain))),
        };
        println!("  {:<34} {:>19}  {note}", mode.label(), secs(*time));
    }
    let txs = rows.len().div_ceil(per_tx) as f64;
    println!(
        "  per transaction (wall): plain {:.1} us, capture {:.1} us",
        plain.wall.as_secs_f64() * 1e6 / txs,
        t[4].wall.as_secs_f64() * 1e6 / txs
    );
    (plain, t[4])
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` / `--all-targets` does not, and
    // then a small smoke run checks that the benchmark still works without taking minutes.
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_usize("SYNC_BENCH_ROWS", if full { 100_000 } else { 2_000 });
    let n_single = env_usize("SYNC_BENCH_SINGLE_ROWS", if full { 20_000 } else { 200 }).min(n);
    let reps = env_usize("SYNC_BENCH_REPS", if full { 3 } else { 1 }).max(1);
    // For profiling one part: SYNC_BENCH_ONLY=batch|single|apply.
    let only = std::env::var("SYNC_BENCH_ONLY").ok();
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(n);
    let payload: usize = rows
        .iter()
        .map(|r| 8 + r.title.len() + r.author.len() + r.body.len() + 8 + 8)
        .sum::<usize>()
        / n;
    println!(
        "sync-core capture/apply benchmark: {n} rows of ~{payload} B, WAL, synchronous=NORMAL, \
         median of {reps}, files in {}",
        dir.path().display()
    );
    let mut summary = Vec::new();

    if wanted("batch") {
        println!();
        println!("insert {n} rows in 1000-row transactions");
        let (plain, capture) = section(dir.path(), &rows, 1000, reps, 1.10);
        summary.push(format!(
            "capture {} plain (1000-row tx)",
            times(ratio(capture, plain))
        ));
    }

    if wanted("single") {
        println!();
        println!("insert {n_single} rows, one transaction per row");
        let (plain, capture) = section(dir.path(), &rows[..n_single], 1, reps, 1.30);
        summary.push(format!("{} (1-row tx)", times(ratio(capture, plain))));
    }

    if wanted("apply") {
        let (_, captured) = run(dir.path(), &rows, 1000, Mode::Capture);
        let entries = outbox::entries(&captured).unwrap();
        let (count, bytes) = outbox::stats(&captured).unwrap();
        drop(captured);
        let (concat_time, all) =
            timed(|| Changeset::concat_all(entries.iter().map(|e| &e.changeset)).unwrap());
        drop(entries);
        // The rows in the order the changeset holds them (a session's hash order, not key
        // order): inserting in that order is what SQLite's apply has to do.
        let by_id: std::collections::HashMap<i64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
        let changeset_order: Vec<Row> = all
            .changes()
            .map(|c| match c.unwrap().pk_values()[0] {
                sync_core::engine::value::Value::Integer(id) => by_id[&id].clone(),
                ref other => panic!("unexpected key {other:?}"),
            })
            .collect();
        drop(by_id);
        let mut plain_one_tx = Vec::new();
        let mut plain_shuffled = Vec::new();
        let mut plain_1000 = Vec::new();
        let mut applies = Vec::new();
        let mut last_target = None;
        for _ in 0..reps {
            plain_one_tx.push(run(dir.path(), &rows, n, Mode::Plain).0);
            plain_shuffled.push(run(dir.path(), &changeset_order, n, Mode::Plain).0);
            plain_1000.push(run(dir.path(), &rows, 1000, Mode::Plain).0);
            let (_, target) = fresh(dir.path(), "target.sqlite");
            let (time, report) = timed(|| apply(&target, &all, &ApplyOptions::default()).unwrap());
            applies.push(time);
            assert_eq!((report.applied, report.conflicts.len()), (n as u64, 0));
            let stored: i64 = target
                .query_row("SELECT count(*) FROM note", [], |r| r.get(0))
                .unwrap();
            assert_eq!(stored, n as i64);
            last_target = Some(target);
        }
        let (plain_one_tx, plain_shuffled, plain_1000, apply_time) = (
            median(&plain_one_tx),
            median(&plain_shuffled),
            median(&plain_1000),
            median(&applies),
        );
        let (validate_time, _) = timed(|| all.validate().unwrap());
        println!();
        println!("apply the captured changeset ({n} inserts) to an empty database");
        println!("  {:<34} {:>19}", "", "wall (cpu)");
        println!(
            "  {:<34} {:>19}",
            format!("concat_all of {count} outbox entries"),
            secs(concat_time)
        );
        println!(
            "  {:<34} {:>19}",
            "plain insert, one transaction",
            secs(plain_one_tx)
        );
        println!(
            "  {:<34} {:>19}",
            "plain insert, 1000-row tx",
            secs(plain_1000)
        );
        println!(
            "  {:<34} {:>19}",
            "plain insert, one tx, cs order",
            secs(plain_shuffled)
        );
        println!(
            "  {:<34} {:>19}  {} plain speed (target >= 0.80x)",
            "apply (one transaction)",
            secs(apply_time),
            times(ratio(plain_one_tx, apply_time)),
        );
        println!(
            "  {:<34} {:>19}  {} the speed of 1000-row transactions",
            "",
            "",
            times(ratio(plain_1000, apply_time)),
        );
        println!(
            "  {:<34} {:>19}  {} plain speed in the changeset's row order",
            "",
            "",
            times(ratio(plain_shuffled, apply_time)),
        );
        println!(
            "  {:<34} {:>19}",
            "  of which validate (Rust decoder)",
            secs(validate_time)
        );
        summary.push(format!(
            "apply {} plain insert speed",
            times(ratio(plain_one_tx, apply_time))
        ));

        // The content checksum the server and the client follow through every applied
        // effect (engine::checksum::delta): its cost next to the apply's.
        let target = last_target.expect("at least one rep");
        let (insert_delta, _) = timed(|| checksum::delta(Source::Bytes(all.as_bytes())).unwrap());
        let mut update = Vec::new();
        {
            let mut session = Session::new(&target).unwrap();
            session.attach(None).unwrap();
            target
                .execute("UPDATE note SET score = score + 1", [])
                .unwrap();
            session.changeset_strm(&mut update).unwrap();
        }
        let update = Changeset::from_bytes(update);
        apply(&target, &update.invert().unwrap(), &ApplyOptions::default()).unwrap();
        let (update_apply, _) =
            timed(|| apply(&target, &update, &ApplyOptions::default()).unwrap());
        let (update_delta, _) =
            timed(|| checksum::delta(Source::Bytes(update.as_bytes())).unwrap());
        let (full_sum, _) = timed(|| checksum::table_sum(&target).unwrap());
        let share = |d: Time, a: Time| 100.0 * d.cpu.as_secs_f64() / a.cpu.as_secs_f64();
        println!();
        println!("content checksum (engine::checksum), next to the apply it follows");
        println!(
            "  {:<34} {:>19}  {:.1} % of the apply (target <= 5 %)",
            format!("delta of {n} inserts"),
            secs(insert_delta),
            share(insert_delta, apply_time)
        );
        println!(
            "  {:<34} {:>19}",
            format!("apply of {n} one-column updates"),
            secs(update_apply)
        );
        println!(
            "  {:<34} {:>19}  {:.1} % of the apply (only the cells it changed)",
            format!("delta of {n} updates"),
            secs(update_delta),
            share(update_delta, update_apply)
        );
        println!(
            "  {:<34} {:>19}  (the full check: first sync after open, verify)",
            format!("checksum of all {n} rows"),
            secs(full_sum)
        );
        summary.push(format!(
            "checksum {:.1} % of an insert apply, {:.1} % of an update apply",
            share(insert_delta, apply_time),
            share(update_delta, update_apply)
        ));

        let json: usize = rows.iter().map(|r| r.json().len()).sum();
        println!();
        println!("size");
        println!(
            "  outbox: {count} changesets, {bytes} B = {:.1} B/row; concatenated {} B = {:.1} B/row",
            bytes as f64 / n as f64,
            all.len(),
            all.len() as f64 / n as f64
        );
        println!(
            "  JSON object per row for comparison: {:.1} B/row",
            json as f64 / n as f64
        );
    }
    println!();
    println!("summary: {}", summary.join(", "));
}
