//! One large transaction end to end, measured: a single write of N rows (default 300,000 notes
//! of ~235 B: a ~70 MB changeset) on device A, A's sync (uploaded in parts to a server with
//! default settings), then device B's sync (the effect pulled in ranges and applied in pieces).
//!
//! ```text
//! cargo bench -p sync-cli --bench large_transaction
//! ```
//!
//! The devices are the real `sync-cli` binary as child processes; each one's peak RSS comes
//! from `wait4` (`ru_maxrss`) and is printed against the peak of the same binary running
//! `status` on the same database (the cost of opening it) — measured in the same run. The
//! server runs in this process (the `sync_testkit` harness, default settings), which does
//! nothing else meanwhile: its growth is this process's `VmHWM` after the step minus its
//! `VmRSS` before, the peak reset first (`clear_refs`). Target: ≤ 64 MiB growth for the
//! server and for each client step. The benchmark reports; it asserts only that the rows
//! arrived.
//!
//! Without `--bench` (`cargo test --benches`) it runs with 3,000 rows as a smoke test.
//! `SYNC_BENCH_ROWS=N` sets the rows.

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use sync_testkit::{Admin, Blocking};

const MIB: f64 = 1024.0 * 1024.0;
const TARGET: f64 = 64.0 * MIB;

/// Runs `sync-cli args`, returns (peak RSS in bytes, seconds, stdout).
// The child is reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(args: &[&str]) -> (f64, f64, String) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_sync-cli"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sync-cli");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.expect("stdout");
    let mut err = child.stderr.expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to fill; `pid` is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let exited = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    assert!(
        exited.is_some_and(|c| c <= 1),
        "sync-cli {args:?} exited {status}: {stderr}"
    );
    (
        usage.ru_maxrss as f64 * 1024.0,
        started.elapsed().as_secs_f64(),
        stdout,
    )
}

/// This process's (RSS, peak RSS).
fn own() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc (Linux only)");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            * 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / MIB)
}

fn verdict(growth: f64) -> String {
    format!(
        "target ≤ 64 MiB: {} ({:.2}× the target)",
        if growth <= TARGET { "yes" } else { "NO" },
        growth / TARGET
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows: u64 = std::env::var("SYNC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 300_000 } else { 3_000 });
    let data = tempfile::tempdir().unwrap();
    let running = Blocking::start(sync_testkit::config(data.path()));
    let url = running.server().expect("started").base.clone();
    let c = Admin(data.path()).catalog();
    sync_server::catalog::add_user(&c, "alice").unwrap();
    sync_server::catalog::create_database(&c, "notes", "alice").unwrap();
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for (db, device) in [(&a, "laptop"), (&b, "phone")] {
        let token = Admin(data.path()).token("alice", device);
        run(&[
            "init",
            &s(db),
            "--server",
            &url,
            "--token",
            &token,
            "--database",
            "notes",
        ]);
    }
    println!(
        "large-transaction benchmark: one write of {rows} rows, sync-cli as child processes, the \
         server in this process with default settings; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (base_a, _, _) = run(&["status", &s(&a)]);
    println!(
        "client baseline (`status` on the same database): peak RSS {}",
        mib(base_a)
    );

    let insert = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO notes(id, title, body, updated_at) \
         SELECT i, 'note ' || i, hex(randomblob(100)), i FROM n"
    );
    let (peak, secs, _) = run(&["exec", &s(&a), &insert]);
    let (_, _, status) = run(&["status", &s(&a), "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    let bytes = status["pending_bytes"].as_f64().unwrap_or(0.0);
    println!(
        "A: the write ({:.1} MB changeset) in {secs:.1} s: client peak RSS {}, growth {} — {}",
        bytes / 1e6,
        mib(peak),
        mib(peak - base_a),
        verdict(peak - base_a)
    );

    let (rss, _) = own();
    let reset = reset_peak();
    let (peak, secs, out) = run(&["sync", &s(&a)]);
    let (_, server_peak) = own();
    println!(
        "A: sync (upload in parts, push) in {secs:.1} s: {}; client peak RSS {}, growth {} — {}",
        out.lines().next().unwrap_or(""),
        mib(peak),
        mib(peak - base_a),
        verdict(peak - base_a)
    );
    println!(
        "   server meanwhile: peak growth {}{} — {}",
        mib(server_peak - rss),
        if reset {
            ""
        } else {
            " (peak not reset: includes start-up)"
        },
        verdict(server_peak - rss)
    );

    // The lower of the two baselines: the growth is not flattered by a heavier `status`.
    let (base_b, _, _) = run(&["status", &s(&b)]);
    let base_b = base_b.min(base_a);
    let (rss, _) = own();
    reset_peak();
    let (peak, secs, out) = run(&["sync", &s(&b)]);
    let (_, server_peak) = own();
    println!(
        "B: sync (pull, the effect in ranges, applied in pieces) in {secs:.1} s: {}; client \
         peak RSS {}, growth {} — {}",
        out.lines().next().unwrap_or(""),
        mib(peak),
        mib(peak - base_b),
        verdict(peak - base_b)
    );
    println!(
        "   server meanwhile: peak growth {} — {}",
        mib(server_peak - rss),
        verdict(server_peak - rss)
    );
    let (_, _, count) = run(&["query", &s(&b), "SELECT count(*) FROM notes"]);
    assert!(
        count.contains(&rows.to_string()),
        "B has every row: {count}"
    );
    drop(running);
}
