//! Resource attacks: slow and stalled clients, too many connections and streams, more body
//! bytes than the budget, a full disk. Each asserts the answer, that a legitimate client keeps
//! working, and that nothing changed that should not have.

use crate::common::*;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Pushes one small note every `every` until `stop`, counting successes; panics on any
/// answer other than 200 (the legitimate client must keep working through the attack).
fn legitimate_client(
    http: reqwest::Client,
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
    every: Duration,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut ok = 0;
        let mut id = 1000;
        while !stop.load(Ordering::Relaxed) {
            id += 1;
            let cs = Local::new().change(&format!("INSERT INTO notes VALUES ({id}, 'ok', '', 1)"));
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/vnd.sqlite-changeset")
                .header("sync-batch-id", format!("legit-{id}"))
                .header("sync-cursor", "0")
                .header("sync-schema-version", "1")
                .body(cs)
                .send()
                .await
                .expect("the legitimate client reaches the server");
            let (status, json) = json_of(r).await;
            assert_eq!(status, StatusCode::OK, "legitimate push refused: {json}");
            ok += 1;
            tokio::time::sleep(every).await;
        }
        ok
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_header_connections_are_cut_at_the_header_timeout() {
    const SLOW: usize = 500;
    let header_timeout = Duration::from_secs(2);
    sync_server::storage::raise_open_files_limit(8192);
    let s = TestServer::start_with(|c| c.header_timeout = header_timeout).await;
    let token = s.setup("alice", "notes");
    let stop = Arc::new(AtomicBool::new(false));
    let legit = legitimate_client(
        s.http.clone(),
        s.url("notes", "/push"),
        token.clone(),
        Arc::clone(&stop),
        Duration::from_millis(100),
    );
    let addr = s.addr;
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                // One byte every 300 ms of a request that would take a minute to send.
                let request = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: ".repeat(4);
                for b in request {
                    if tcp.write_all(&[b]).await.is_err() {
                        return started.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                }
                Duration::MAX
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for task in slow {
        worst = worst.max(task.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let pushed = legit.await.unwrap();
    println!(
        "{SLOW} slow-header connections: all closed, the last after {worst:?} \
         (header timeout {header_timeout:?}); the legitimate client pushed {pushed} times meanwhile"
    );
    // Closed within the timeout plus the watchdog's tick and one write interval to notice.
    assert!(
        worst <= header_timeout + Duration::from_secs(1),
        "a slow connection lived {worst:?}"
    );
    assert!(
        pushed >= 10,
        "the legitimate client pushed only {pushed} times"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_stalled_maximum_size_bodies_stay_within_the_budget_and_are_cut() {
    const CONNECTIONS: usize = 100;
    const MAX_BODY: usize = 8 * 1024 * 1024;
    const BUDGET: u64 = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_server(
        vec![
            "serve".into(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        vec![],
        dir.path().join("server.log"),
    )
    .await;
    let pid = server.child.id();
    let c = sync_server::catalog::open(&data).unwrap();
    sync_server::catalog::add_user(&c, "alice").unwrap();
    sync_server::catalog::create_database(&c, "notes", "alice").unwrap();
    let token = sync_server::catalog::issue_token(&c, "alice", "laptop")
        .unwrap()
        .token;
    let (rss_before, _) = rss_of(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let legit = legitimate_client(
        reqwest::Client::new(),
        format!("http://{}/v1/databases/notes/push", server.addr),
        token.clone(),
        Arc::clone(&stop),
        Duration::from_millis(200),
    );
    let watching = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (watching, peak) = (Arc::clone(&watching), Arc::clone(&peak));
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid).0 as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let head = push_head("notes", &token, &format!("stall-{i}"), MAX_BODY);
            let addr = server.addr;
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                let _ = tcp.write_all(&head).await;
                let chunk = vec![b'T'; 64 * 1024];
                let mut sent = 0;
                while sent < MAX_BODY - 1 {
                    let n = chunk.len().min(MAX_BODY - 1 - sent);
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                }
                // Stall with one byte missing, until the server closes the connection.
                let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(40)).await;
                let status = String::from_utf8_lossy(&answer)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("none")
                    .to_string();
                (closed, status, started.elapsed())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut last_closed = Duration::ZERO;
    for a in attackers {
        let (closed, status, at) = a.await.unwrap();
        assert!(closed, "a stalled connection was never closed");
        *statuses.entry(status).or_default() += 1;
        last_closed = last_closed.max(at);
    }
    watching.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let pushed = legit.await.unwrap();
    let peak = peak.load(Ordering::Relaxed) as u64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{CONNECTIONS} stalled {MAX_BODY}-byte bodies: answers {statuses:?}; all closed after \
         {last_closed:?}; server RSS {:.0} MiB before, peak {:.0} MiB (limit: budget {:.0} MiB + 64 MiB); \
         the legitimate client pushed {pushed} times meanwhile",
        mib(rss_before),
        mib(peak),
        mib(BUDGET)
    );
    assert!(peak < BUDGET + 64 * 1024 * 1024, "peak RSS {peak}");
    assert!(
        statuses.get("503").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    assert!(
        statuses.get("408").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    assert!(
        pushed >= 5,
        "the legitimate client pushed only {pushed} times"
    );
    // Nothing of the stalled bodies reached the database.
    let id: i64 = c
        .query_row("SELECT id FROM databases WHERE name = 'notes'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let notes: i64 = rusqlite::Connection::open(data.join(format!("dbs/{id}.db")))
        .unwrap()
        .query_row("SELECT count(*) FROM _sync_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes as usize, pushed);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_body_budget_uploads_get_503_with_retry_after_and_small_pushes_still_work() {
    const MAX: usize = 1024 * 1024;
    let s = TestServer::start_with(|c| {
        c.max_body_bytes = MAX;
        c.body_budget_bytes = 4 * MAX;
        c.body_timeout = Duration::from_secs(3);
    })
    .await;
    let token = s.setup("alice", "notes");
    let before = file_fingerprint(&s.db_path("notes"));
    // Three uploads declare the maximum and send almost nothing: they hold 3 MiB of the
    // 4 MiB budget, of which large bodies may use 3.5 MiB.
    let mut holders = Vec::new();
    for i in 0..3 {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(&push_head("notes", &token, &format!("hold-{i}"), MAX))
            .await
            .unwrap();
        tcp.write_all(b"T").await.unwrap();
        holders.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = vec![b'T'; MAX];
    let r = s
        .http
        .post(s.url("notes", "/push"))
        .bearer_auth(&token)
        .header("sync-batch-id", "big")
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 503, "overloaded");
    assert_eq!(file_fingerprint(&s.db_path("notes")), before);
    // The reserved share keeps ordinary pushes going.
    let small = Local::new().change("INSERT INTO notes VALUES (1, 'small', '', 1)");
    s.push_ok(&token, "notes", "small", 0, &small).await;
    // The holders are cut by the body timeout and answered 408; their budget comes back.
    for mut tcp in holders {
        let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
        assert!(closed);
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    let metrics = r.text().await.unwrap();
    assert!(metrics.contains("sync_body_bytes_in_flight 0"), "{metrics}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_connections_past_the_limit_get_503() {
    let s = TestServer::start_with(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.max_connections = 4;
    })
    .await;
    // Idle keep-alive: closed by the server after the idle timeout.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle keep-alive connection stayed open");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Four connections are all the server takes; the fifth is told so.
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(s.addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut fifth, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"code\":\"overloaded\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    // One closes; a new connection is served again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(s.addr).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout() {
    let s = TestServer::start_with(|c| c.send_timeout = Duration::from_secs(1)).await;
    let token = s.setup("alice", "notes");
    // About 8 MB of notes, so a snapshot cannot fit in the socket buffers.
    let body = "x".repeat(2 * 1024 * 1024);
    for i in 0..4 {
        let cs = Local::new().change(&format!("INSERT INTO notes VALUES ({i}, 't', '{body}', 1)"));
        s.push_ok(&token, "notes", &format!("b{i}"), i, &cs).await;
    }
    let open = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("sync_connections "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let metrics = || async {
        s.http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = open(&metrics().await);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(s.addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /v1/databases/notes/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Read nothing: the connection shows up, then the server gives up on it.
    eventually(Duration::from_secs(10), || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        (open(&metrics().await) > before).then_some(())
    })
    .await;
    let started = Instant::now();
    eventually(Duration::from_secs(10), || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        (open(&metrics().await) == before).then_some(())
    })
    .await;
    let cut_after = started.elapsed();
    let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(got.len() < 8 * 1024 * 1024, "the whole snapshot arrived");
    println!(
        "a client that read nothing was cut within {cut_after:?} (send timeout 1 s), after {} bytes",
        got.len()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_device_and_server_wide() {
    let s = TestServer::start_with(|c| {
        c.max_event_streams = 3;
        c.max_event_streams_per_device = 2;
    })
    .await;
    let a = s.setup("alice", "notes");
    let b = s.token("alice", "phone");
    let c = s.token("alice", "tablet");
    let open = |token: &str| {
        s.http
            .get(s.url("notes", "/events"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
    };
    let a1 = open(&a).await.unwrap();
    let _a2 = open(&a).await.unwrap();
    assert_eq!(a1.status(), StatusCode::OK);
    let (status, json) = json_of(open(&a).await.unwrap()).await;
    assert_error(status, &json, 429, "too_many_streams");
    assert_eq!(json["limit"], 2);
    let _b1 = open(&b).await.unwrap();
    let (status, json) = json_of(open(&c).await.unwrap()).await;
    assert_error(status, &json, 503, "overloaded");
    // A stream that ends gives its place back.
    drop(a1);
    let c1 = eventually(Duration::from_secs(5), || async {
        let r = open(&c).await.unwrap();
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    drop(c1);
    s.stop().await;
}

/// A size-limited file system for the data directory (tmpfs), unmounted on drop. `None` when
/// this process may not mount (not root, or no CAP_SYS_ADMIN): the caller then skips, saying
/// so.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }

    /// Fills the file system to the last byte with a file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_and_loses_nothing_acknowledged() {
    let Some(disk) = SmallDisk::mount(24 * 1024 * 1024) else {
        println!("SKIPPED: cannot mount a tmpfs here (run as root to test a full disk)");
        return;
    };
    let data = disk.path.join("data");
    // The log is on the full disk too: the server must answer even when it cannot log.
    let server = spawn_server(
        vec![
            "serve".into(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-demo".into(),
        ],
        vec![("SYNC_LOG".into(), "debug".into())],
        disk.path.join("server.log"),
    )
    .await;
    let c = sync_server::catalog::open(&data).unwrap();
    sync_server::catalog::add_user(&c, "alice").unwrap();
    sync_server::catalog::create_database(&c, "notes", "alice").unwrap();
    let token = sync_server::catalog::issue_token(&c, "alice", "laptop")
        .unwrap()
        .token;
    drop(c);
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/databases/notes/push", server.addr);
    let push = |batch: String, cursor: i64, body: Vec<u8>| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("sync-batch-id", batch)
                .header("sync-cursor", cursor.to_string())
                .header("sync-schema-version", "1")
                .body(body)
                .send()
                .await
                .expect("every request gets an answer");
            json_of(r).await
        }
    };
    let mut acked = Vec::new();
    for i in 0..5i64 {
        let cs = Local::new().change(&format!("INSERT INTO notes VALUES ({i}, 'before', '', 1)"));
        let (status, json) = push(format!("ok-{i}"), i, cs).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        acked.push(format!("ok-{i}"));
    }
    let filler = disk.fill();
    // Pushes of growing size until the disk refuses; every answer is 200 or 507.
    let mut full = 0;
    let mut body_len = 1024;
    for i in 0..40i64 {
        let text = "y".repeat(body_len);
        let cs = Local::new().change(&format!(
            "INSERT INTO notes VALUES ({}, 'full', '{text}', 1)",
            100 + i
        ));
        let (status, json) = push(format!("full-{i}"), 0, cs).await;
        match status.as_u16() {
            200 => acked.push(format!("full-{i}")),
            507 => {
                assert_eq!(json["code"], "insufficient_storage", "{json}");
                full += 1;
            }
            other => panic!("a push on a full disk answered {other}: {json}"),
        }
        body_len = (body_len * 2).min(4 * 1024 * 1024);
    }
    assert!(full > 0, "the disk never filled");
    // A body large enough to be spooled to disk is refused the same way.
    let big = Local::new().change(&format!(
        "INSERT INTO notes VALUES (999, 'spooled', '{}', 1)",
        "z".repeat(3 * 1024 * 1024)
    ));
    let (status, json) = push("spooled".into(), 0, big).await;
    assert_eq!(
        (status.as_u16(), json["code"].as_str()),
        (507, Some("insufficient_storage")),
        "{json}"
    );
    // Space returns: the server works again and everything acknowledged is there.
    std::fs::remove_file(filler).unwrap();
    let cs = Local::new().change("INSERT INTO notes VALUES (5000, 'after', '', 1)");
    let (status, json) = push("after".into(), 0, cs).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    acked.push("after".into());
    server.terminate().await;
    let conn = rusqlite::Connection::open(data.join("dbs/1.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let logged: Vec<String> = conn
        .prepare("SELECT batch_id FROM _sync_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        logged, acked,
        "the log holds exactly the acknowledged pushes"
    );
    println!(
        "full disk: {} pushes acknowledged, {full} answered 507, integrity ok after space returned",
        acked.len()
    );
}
