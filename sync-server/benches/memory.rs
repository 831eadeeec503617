//! Server memory, measured on the real `sync-server` binary running as a child process (so
//! its resident set holds nothing of the load generator), read from `/proc/PID/status`
//! (`VmRSS`, `VmHWM`, and the anonymous / file / shared-memory split). Linux only.
//!
//! ```text
//! cargo bench -p sync-server --bench memory
//! ```
//!
//! Three phases in one run, each printed against the server's own baseline (its RSS right
//! after it started listening, measured in the same run) and against its target:
//!
//! * **a. Many databases.** N databases (default 10,000), one 1-row push each (an insert
//!   into the demo schema's `notes`) at moderate concurrency over keep-alive HTTP, with the
//!   default settings (cache capacity 1024, …). RSS once every database was touched, then
//!   again once all of them went idle and were closed. The server runs with
//!   `--idle-secs 5` and `maintenance_secs = 1` so that the second figure arrives within
//!   seconds: those two settings decide *when* databases close (and when the maintenance pass
//!   returns their memory), not how much an open one takes. While databases are touched, the
//!   cache returns freed memory after every 256 closes whatever the interval: with the
//!   default `maintenance_secs = 30` the first figure measured the same (177 MiB). Target
//!   ≤ 200 MB for both.
//! * **b. A 100 MB push** (400,000 rows of ~250 B, one changeset: a bulk import): peak RSS
//!   growth during the request (`VmHWM` after − `VmRSS` before, with the peak reset first).
//! * **c. Pulling that entry** (`pull?since=0`, the whole body read) from a restarted server:
//!   peak RSS growth likewise. Target ≤ 32 MiB for b and c. A sampler also reads the split
//!   every 5 ms and prints the largest anonymous / file / shared figure seen: a peak that is
//!   anonymous memory is the server's own, a file-backed one is the page cache of its files.
//!
//! The benchmark reports; it asserts nothing about the figures (only that the server
//! answered). Without `--bench` (`cargo test --benches`, `--all-targets`) it does a quick
//! smoke run (200 databases, a 1 MB push) whose figures mean nothing.
//!
//! Knobs: `SYNC_BENCH_DATABASES` (phase a), `SYNC_BENCH_PUSH_ROWS` (phases b and c, 250 B
//! each), `SYNC_BENCH_CONCURRENCY` (phase a, default 32), `SYNC_BENCH_ONLY=databases|push`,
//! `SYNC_BENCH_SERVER_ARGS` (extra `serve` flags for phase a, space-separated, e.g.
//! `--readers 1 --page-cache-kib 128`, to compare settings), `SYNC_BENCH_PULL=1` (phase a
//! also pulls each database after its push, as a syncing device does, so every open
//! database has a reader too), `SYNC_BENCH_WRAP=PROGRAM` (start the server as
//! `PROGRAM sync-server …`, e.g. `heaptrack`, to see where a peak comes from; the RSS figures
//! are then the wrapper's).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_core::engine::decode::Change;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;
use sync_server::catalog;

const MIB: f64 = 1024.0 * 1024.0;
/// Phase a's target: 200 MB (decimal), compared in bytes.
const MANY_TARGET_BYTES: f64 = 200e6;
/// Phases b and c: peak growth of at most 32 MiB.
const LARGE_TARGET_BYTES: f64 = 32.0 * MIB;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// A reading of `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: f64,
    hwm: f64,
    anon: f64,
    file: f64,
    shmem: f64,
}

impl Mem {
    fn of(pid: u32) -> Mem {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("/proc/PID/status (this benchmark needs Linux)");
        let field = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kib| kib * 1024.0)
        };
        Mem {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
            shmem: field("RssShmem:"),
        }
    }

    /// `RSS 12.3 MiB (anon 8.1, file 4.0, shmem 0.2)`
    fn show(&self) -> String {
        format!(
            "RSS {} (anon {:.1}, file {:.1}, shmem {:.1})",
            mib(self.rss),
            self.anon / MIB,
            self.file / MIB,
            self.shmem / MIB
        )
    }
}

/// Samples a process's RSS by kind every few milliseconds until dropped, keeping the largest
/// value of each kind: the peak `VmHWM` reports does not say what it was made of.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Mem>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = Mem::of(pid);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Mem::of(pid);
                max.rss = max.rss.max(now.rss);
                max.anon = max.anon.max(now.anon);
                max.file = max.file.max(now.file);
                max.shmem = max.shmem.max(now.shmem);
                std::thread::sleep(Duration::from_millis(5));
            }
            max
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// The largest sample of each kind (each may come from a different moment).
    fn finish(mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let max = self.thread.take().unwrap().join().unwrap();
        format!(
            "largest samples: anon {:.1}, file {:.1}, shmem {:.1} MiB",
            max.anon / MIB,
            max.file / MIB,
            max.shmem / MIB
        )
    }
}

/// The real binary as a child process; SIGTERM on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[String]) -> Server {
        let log = data.with_extension("log");
        let mut command = match std::env::var("SYNC_BENCH_WRAP") {
            Ok(w) => {
                let mut c = Command::new(w);
                c.arg(env!("CARGO_BIN_EXE_sync-server"));
                c
            }
            Err(_) => Command::new(env!("CARGO_BIN_EXE_sync-server")),
        };
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sync-server");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("sync-server listening on http://") {
                        break a.parse().unwrap();
                    }
                }
                _ => panic!(
                    "sync-server exited before listening ({:?}); log:\n{}",
                    child.wait(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, addr, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn mem(&self) -> Mem {
        Mem::of(self.pid())
    }

    /// Resets `VmHWM` to the current RSS (`clear_refs` value 5), so the next peak belongs
    /// to what follows. Returns false where the kernel refuses.
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    fn url(&self, rest: &str) -> String {
        format!("http://{}{rest}", self.addr)
    }

    /// SIGTERM (a graceful stop: databases closed, WALs checkpointed), then wait.
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        if !status.success() {
            eprintln!(
                "sync-server exited with {status}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// `sync_open_databases` from `/metrics`.
async fn open_databases(http: &reqwest::Client, server: &Server) -> usize {
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sync_open_databases "))
        .and_then(|v| v.trim().parse().ok())
        .expect("sync_open_databases in /metrics")
}

/// Text of `len` bytes from a small vocabulary (note-like, not very compressible).
fn text(rng: &mut StdRng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "sync", "offline", "change", "device", "server", "row", "table", "commit", "merge", "note",
        "the", "a", "of", "and", "with", "conflict", "session", "first", "last", "list", "todo",
        "meeting", "draft", "idea", "call", "buy", "read", "plan", "week", "done",
    ];
    let mut s = String::with_capacity(len + 12);
    while s.len() < len {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    s.truncate(len);
    s
}

/// A changeset inserting `rows` notes (ids from 1): title 40 B, body `body_len` B.
fn notes_changeset(rows: usize, body_len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let changes: Vec<Change> = (0..rows)
        .map(|i| Change {
            table: "notes".into(),
            op: Op::Insert,
            indirect: false,
            pk: vec![1, 0, 0, 0],
            old: None,
            new: Some(vec![
                Some(Value::Integer(i as i64 + 1)),
                Some(Value::Text(text(&mut rng, 40))),
                Some(Value::Text(text(&mut rng, body_len))),
                Some(Value::Integer(1_700_000_000_000 + i as i64)),
            ]),
        })
        .collect();
    sync_core::engine::encode::encode(&changes)
}

/// One push of `body` as batch `bench-1` of a new device (cursor 0); panics unless applied.
async fn push(http: &reqwest::Client, base: &str, db: &str, token: &str, body: Vec<u8>) {
    let r = http
        .post(format!("{base}/v1/databases/{db}/push"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.sqlite-changeset")
        .header("sync-batch-id", "bench-1")
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "push to {db}: {status} {text}");
}

/// Phase a: touch `n` databases, then wait until they are closed.
fn many_databases(dir: &Path, n: usize, concurrency: usize, extra: &[String], pull: bool) {
    println!(
        "\n## a. {n} databases, one 1-row push each{} (concurrency {concurrency}), default settings",
        if pull { " and a pull" } else { "" }
    );
    let data = dir.join("many");
    let setup = Instant::now();
    let targets: Vec<(String, String)> = {
        let c = catalog::open(&data).unwrap();
        // The bench's own catalog connection: no fsync per admin transaction.
        c.execute_batch("PRAGMA synchronous = OFF").unwrap();
        catalog::add_user(&c, "bench").unwrap();
        (0..n)
            .map(|i| {
                let name = format!("db-{i:05}");
                catalog::create_database(&c, &name, "bench").unwrap();
                let token = catalog::issue_token(&c, "bench", &format!("dev-{i:05}"))
                    .unwrap()
                    .token;
                (name, token)
            })
            .collect()
    };
    println!(
        "setup: {n} databases and device tokens in the catalog in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let config = dir.join("many.toml");
    std::fs::write(&config, "maintenance_secs = 1\n").unwrap();
    let mut args: Vec<String> = vec![
        "--idle-secs".into(),
        "5".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    println!(
        "server: sync-server serve {} (idle-secs 5 and maintenance_secs 1 only decide *when* idle \
         databases close and the pass returns their memory; everything else default)",
        args.join(" ")
    );
    let server = Server::start(&data, &args);
    let rt = runtime();
    let http = http();
    rt.block_on(async { assert_eq!(open_databases(&http, &server).await, 0) });
    let baseline = server.mem();
    println!("baseline right after start: {}", baseline.show());

    let touched = Instant::now();
    let body = Arc::new(notes_changeset(1, 60, 1));
    rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(n);
        for (name, token) in targets {
            let permit = sem.clone().acquire_owned().await.unwrap();
            let (http, base, body) = (http.clone(), server.url(""), body.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                push(&http, &base, &name, &token, body.to_vec()).await;
                if pull {
                    let r = http
                        .get(format!("{base}/v1/databases/{name}/pull?since=0"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "pull from {name}: {}", r.status());
                    r.bytes().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = touched.elapsed().as_secs_f64();
    let after = server.mem();
    let open = rt.block_on(open_databases(&http, &server));
    let growth = after.rss - baseline.rss;
    println!(
        "after touching all {n} in {elapsed:.1} s ({:.0} pushes/s): {}, peak {}; {open} databases open",
        n as f64 / elapsed,
        after.show(),
        mib(after.hwm),
    );
    println!(
        "  growth over the baseline {} = {:.1} KiB per open database — target RSS ≤ 200 MB \
         ({}): {} ({:.2}× the target)",
        mib(growth),
        growth / open.max(1) as f64 / 1024.0,
        mib(MANY_TARGET_BYTES),
        met(after.rss <= MANY_TARGET_BYTES),
        after.rss / MANY_TARGET_BYTES
    );

    // Idle: poll until the cache is empty, then until RSS stops falling for two maintenance
    // passes (whatever a pass gives back comes right after its evictions).
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(120);
    rt.block_on(async {
        while open_databases(&http, &server).await > 0 {
            assert!(
                Instant::now() < deadline,
                "databases still open after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed_after = waited.elapsed().as_secs_f64();
    let mut idle = server.mem();
    let mut steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.mem();
        if now.rss < idle.rss - 64.0 * 1024.0 {
            steady = Instant::now();
        }
        idle = now;
    }
    println!(
        "after all went idle and were closed ({closed_after:.1} s later): {}; \
         {} above the baseline — target RSS ≤ 200 MB: {} ({:.2}× the target)",
        idle.show(),
        mib(idle.rss - baseline.rss),
        met(idle.rss <= MANY_TARGET_BYTES),
        idle.rss / MANY_TARGET_BYTES
    );
    drop(http);
    server.stop();
}

/// Phases b and c: one large push, then pulling it from a restarted server.
fn large_entry(dir: &Path, rows: usize) {
    let body = notes_changeset(rows, 190, 2);
    let size = body.len() as f64;
    println!(
        "\n## b. one push of {:.1} MB ({rows} rows of ~{:.0} B, one changeset), then c. pulling it",
        size / 1e6,
        size / rows as f64
    );
    let data = dir.join("large");
    let token = {
        let c = catalog::open(&data).unwrap();
        catalog::add_user(&c, "bench").unwrap();
        catalog::create_database(&c, "big", "bench").unwrap();
        catalog::issue_token(&c, "bench", "importer").unwrap().token
    };
    // Room for the body, whatever the default.
    let limit = ((body.len() + (16 << 20)) >> 20) << 20;
    let args = vec!["--max-body-bytes".to_string(), limit.to_string()];
    println!("server: sync-server serve {}", args.join(" "));
    let rt = runtime();
    let http = http();
    // Opens (creates, migrates) the database on the writer and one reader, so the measured
    // request finds it open, as a busy server would.
    let info = |server: &Server| {
        rt.block_on(async {
            let r = http
                .get(server.url("/v1/databases/big"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "info: {}", r.status());
        })
    };

    let server = Server::start(&data, &args);
    info(&server);
    let before = server.mem();
    let reset = server.reset_peak();
    println!(
        "baseline after start (database open): {}{}",
        before.show(),
        if reset {
            ""
        } else {
            " — could not reset the peak: figures include the start-up peak"
        }
    );
    let started = Instant::now();
    let sampler = Sampler::start(server.pid());
    rt.block_on(push(&http, &server.url(""), "big", &token, body));
    let took = started.elapsed().as_secs_f64();
    let samples = sampler.finish();
    let after = server.mem();
    let growth = after.hwm - before.rss;
    println!(
        "b. push of {:.1} MB in {took:.1} s: peak RSS {} — growth {} = {:.2}× the body; \
         target growth ≤ 32 MiB: {} ({:.1}× the target); {samples}; afterwards {}",
        size / 1e6,
        mib(after.hwm),
        mib(growth),
        growth / size,
        met(growth <= LARGE_TARGET_BYTES),
        growth / LARGE_TARGET_BYTES,
        after.show()
    );
    server.stop();

    // A fresh process, so that the pull starts from a clean heap.
    let server = Server::start(&data, &args);
    info(&server);
    let reset = server.reset_peak();
    let before = server.mem();
    println!(
        "restarted; baseline (database open): {}{}",
        before.show(),
        if reset { "" } else { " — peak not reset" }
    );
    let started = Instant::now();
    let sampler = Sampler::start(server.pid());
    let page = rt.block_on(async {
        let r = http
            .get(server.url(&format!(
                "/v1/databases/big/pull?since=0&max_bytes={}",
                16 << 20
            )))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "pull: {}", r.status());
        r.bytes().await.unwrap()
    });
    let took = started.elapsed().as_secs_f64();
    let samples = sampler.finish();
    let after = server.mem();
    let decoded = sync_core::protocol::pull::decode(&page).expect("a valid log page");
    assert_eq!(decoded.entries.len(), 1, "the pull returns the one entry");
    let growth = after.hwm - before.rss;
    println!(
        "c. pull of the entry ({:.1} MB page) in {took:.1} s: peak RSS {} — growth {} = {:.2}× \
         the page; target growth ≤ 32 MiB: {} ({:.1}× the target); {samples}; afterwards {}",
        page.len() as f64 / 1e6,
        mib(after.hwm),
        mib(growth),
        growth / page.len() as f64,
        met(growth <= LARGE_TARGET_BYTES),
        growth / LARGE_TARGET_BYTES,
        after.show()
    );
    server.stop();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` / `--all-targets` does not, and
    // then a small smoke run checks that the benchmark still works without taking minutes.
    let full = std::env::args().any(|a| a == "--bench");
    let databases = env_usize("SYNC_BENCH_DATABASES", if full { 10_000 } else { 200 });
    let rows = env_usize("SYNC_BENCH_PUSH_ROWS", if full { 400_000 } else { 4_000 });
    let concurrency = env_usize("SYNC_BENCH_CONCURRENCY", 32).max(1);
    let only = std::env::var("SYNC_BENCH_ONLY").unwrap_or_default();
    let extra: Vec<String> = std::env::var("SYNC_BENCH_SERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "sync-server memory benchmark: the {} binary as a child process on 127.0.0.1, \
         RSS from /proc/PID/status; {} CPUs; load average at start {}",
        // Cargo builds the binary with the benchmark's own profile.
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if !full {
        println!("(smoke run without --bench: the figures mean nothing)");
    }
    if only.is_empty() || only == "databases" {
        let pull = std::env::var("SYNC_BENCH_PULL").is_ok_and(|v| v == "1");
        many_databases(dir.path(), databases, concurrency, &extra, pull);
    }
    if only.is_empty() || only == "push" {
        large_entry(dir.path(), rows);
    }
    println!("\nload average at end: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
