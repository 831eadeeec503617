//! The real binary is SIGKILLed again and again while clients push with retries (same batch
//! id on every retry). After a final restart, every acknowledged batch is in the log exactly
//! once, with the seq it was acknowledged with, and its row is in the data.
//!
//! Seeded: the seed is printed; `SYNC_CRASH_SEED=N` replays a run.

use crate::common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_core::protocol::push::PushResponse;
use sync_server::catalog;
use tokio::sync::watch;

const CLIENTS: usize = 4;
const BATCHES: usize = 40;
const KILLS: usize = 6;

#[derive(Debug, Clone)]
struct Ack {
    db: String,
    device: String,
    batch: String,
    note: i64,
    seq: i64,
    duplicate: bool,
    attempts: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_repeated_sigkill() {
    let seed: u64 = std::env::var("SYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed} (replay with SYNC_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut clients = Vec::new();
    {
        let c = catalog::open(&data).unwrap();
        catalog::add_user(&c, "u").unwrap();
        for db in ["crash-a", "crash-b"] {
            catalog::create_database(&c, db, "u").unwrap();
        }
        for i in 0..CLIENTS {
            let device = format!("dev{i}");
            let db = if i % 2 == 0 { "crash-a" } else { "crash-b" };
            let token = catalog::issue_token(&c, "u", &device).unwrap().token;
            clients.push((i, device, db.to_string(), token));
        }
    }
    let args = vec![
        "--data".to_string(),
        data.display().to_string(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--log".into(),
        "warn".into(),
    ];
    let mut generation = 0;
    let mut start = async || {
        generation += 1;
        spawn_server(
            args.clone(),
            vec![],
            dir.path().join(format!("server-{generation}.log")),
        )
        .await
    };
    let mut server = start().await;
    let (addr_tx, addr_rx) = watch::channel(Some(format!("http://{}", server.addr)));
    let (acked_tx, acked_rx) = watch::channel(0usize);
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));

    let mut tasks = Vec::new();
    for (i, device, db, token) in clients {
        // Changesets are made up front: a connection cannot be held across awaits.
        let local = Local::new();
        let bodies: Vec<(i64, Vec<u8>)> = (0..BATCHES)
            .map(|b| {
                let note = (i * 100_000 + b) as i64;
                (
                    note,
                    local.change(&format!(
                        "INSERT INTO notes VALUES ({note}, 'c{i} b{b}', '', {b})"
                    )),
                )
            })
            .collect();
        let mut addr = addr_rx.clone();
        let acked = acked_tx.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            for (b, (note, body)) in bodies.into_iter().enumerate() {
                let batch = format!("s{seed}-c{i}-b{b}");
                let mut attempts = 0;
                let answer: PushResponse = loop {
                    attempts += 1;
                    assert!(attempts < 1000, "batch {batch} never acknowledged");
                    let base = addr
                        .wait_for(Option::is_some)
                        .await
                        .unwrap()
                        .clone()
                        .unwrap();
                    let sent = http
                        .post(format!("{base}/v1/databases/{db}/push"))
                        .bearer_auth(&token)
                        .header("sync-batch-id", &batch)
                        .header("sync-cursor", "0")
                        .header("sync-schema-version", "1")
                        .body(body.clone())
                        .send()
                        .await;
                    // An error means the server died before or while answering: retry.
                    if let Ok(r) = sent {
                        let status = r.status();
                        if let Ok(bytes) = r.bytes().await {
                            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                            break serde_json::from_slice(&bytes).unwrap();
                        }
                    }
                    // Retry when the server is back (or after a short backoff if the failure
                    // was something else).
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        addr.wait_for(|a| a.as_deref() != Some(base.as_str())),
                    )
                    .await;
                };
                assert_eq!(answer.batch_id, batch);
                acks.lock().unwrap().push(Ack {
                    db: db.clone(),
                    device: device.clone(),
                    batch,
                    note,
                    seq: answer.seq,
                    duplicate: answer.duplicate,
                    attempts,
                });
                acked.send_modify(|n| *n += 1);
            }
        }));
    }

    let total = CLIENTS * BATCHES;
    let mut acked = acked_rx.clone();
    for _ in 0..KILLS {
        let now = *acked.borrow();
        let target = (now + rng.random_range(1..=total / KILLS)).min(total);
        acked.wait_for(|n| *n >= target).await.unwrap();
        if target == total {
            break;
        }
        addr_tx.send_replace(None);
        server.kill();
        server = start().await;
        addr_tx.send_replace(Some(format!("http://{}", server.addr)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(server.terminate().await.success());
    let acks = acks.lock().unwrap().clone();
    println!(
        "crash test: {generation} server starts, {total} batches, {} retried, {} answered as duplicates \
         (committed before a kill, answer lost)",
        acks.iter().filter(|a| a.attempts > 1).count(),
        acks.iter().filter(|a| a.duplicate).count()
    );
    assert_eq!(acks.len(), total);
    // The kills must have hit pushes in progress, or this test proves nothing. (Whether a
    // kill lands between commit and answer is timing; runs here see 1–6 such duplicates. The
    // committed-but-unanswered retry is covered deterministically in `api.rs`.)
    assert!(
        acks.iter().any(|a| a.attempts > 1),
        "no push was retried: the kills missed every push"
    );
    let ids: std::collections::HashMap<String, i64> =
        catalog::database_ids(&catalog::open(&data).unwrap())
            .unwrap()
            .into_iter()
            .map(|(id, name)| (name, id))
            .collect();
    for db in ["crash-a", "crash-b"] {
        let conn = Connection::open(data.join(format!("dbs/{}.db", ids[db]))).unwrap();
        let logged: i64 = conn
            .query_row("SELECT count(*) FROM _sync_log", [], |r| r.get(0))
            .unwrap();
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.db == db).collect();
        assert_eq!(
            logged as usize,
            mine.len(),
            "{db}: one log entry per batch, no more"
        );
        for a in mine {
            let (count, seq): (i64, i64) = conn
                .query_row(
                    "SELECT count(*), max(seq) FROM _sync_log WHERE device = ?1 AND batch_id = ?2",
                    [&a.device, &a.batch],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((count, seq), (1, a.seq), "{a:?} (seed {seed})");
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM notes WHERE id = ?1", [a.note], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(rows, 1, "{a:?} (seed {seed})");
        }
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM _sync_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gaps");
    }
}

/// A 7 MB push (spooled to disk, streamed into SQLite, its effect written in pieces) with the
/// server SIGKILLed at a random moment of it: after a restart the database is intact and the
/// batch is there whole or not at all; pushing it again applies it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_of_a_large_push_leaves_it_whole_or_absent() {
    let seed: u64 = std::env::var("SYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("large-push crash test seed {seed} (replay with SYNC_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = {
        let c = catalog::open(&data).unwrap();
        catalog::add_user(&c, "u").unwrap();
        catalog::create_database(&c, "big", "u").unwrap();
        catalog::create_database(&c, "probe", "u").unwrap();
        catalog::issue_token(&c, "u", "dev").unwrap().token
    };
    const ROWS: i64 = 28_000;
    let local = Local::new();
    let text = "n".repeat(240);
    local.conn.execute_batch("BEGIN").unwrap();
    let body = local.change(&format!(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {ROWS}) \
         INSERT INTO notes SELECT i, 'big', '{text}', i FROM k"
    ));
    local.conn.execute_batch("COMMIT").unwrap();
    assert!(
        body.len() > 7_000_000 && body.len() < 8 * 1024 * 1024,
        "{}",
        body.len()
    );
    let args = vec![
        "--data".to_string(),
        data.display().to_string(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--log".into(),
        "warn".into(),
    ];
    let http = reqwest::Client::new();
    // How long this push takes here, so that kills land inside it.
    let probe = spawn_server(args.clone(), vec![], dir.path().join("probe.log")).await;
    let started = std::time::Instant::now();
    let r = http
        .post(format!("http://{}/v1/databases/probe/push", probe.addr))
        .bearer_auth(&token)
        .header("sync-batch-id", "probe")
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let took = started.elapsed().as_millis() as u64;
    assert!(probe.terminate().await.success());
    let mut outcomes = Vec::new();
    for round in 0..6 {
        let server = spawn_server(
            args.clone(),
            vec![],
            dir.path().join(format!("s{round}.log")),
        )
        .await;
        // The database file exists (and has its schema) before the attack.
        let info = http
            .get(format!("http://{}/v1/databases/big", server.addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200);
        // Even rounds: killed while the body arrives (at a random point of it). Odd rounds:
        // killed just after the last byte, while the server spools, validates and applies.
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        tcp.write_all(&push_head(
            "big",
            &token,
            &format!("big-{round}"),
            body.len(),
        ))
        .await
        .unwrap();
        let cut = if round % 2 == 0 {
            rng.random_range(0..body.len())
        } else {
            body.len()
        };
        for piece in body[..cut].chunks(256 * 1024) {
            tcp.write_all(piece).await.unwrap();
        }
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..=took))).await;
        }
        server.kill();
        drop(tcp);
        // Restarted: intact, and the batch whole or absent.
        let server = spawn_server(
            args.clone(),
            vec![],
            dir.path().join(format!("r{round}.log")),
        )
        .await;
        let file = data.join(format!(
            "dbs/{}.db",
            catalog::database_ids(&catalog::open(&data).unwrap())
                .unwrap()
                .into_iter()
                .find(|(_, name)| name == "big")
                .unwrap()
                .0
        ));
        let conn = Connection::open(&file).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let logged: i64 = conn
            .query_row(
                "SELECT count(*) FROM _sync_log WHERE batch_id = ?1",
                [format!("big-{round}")],
                |r| r.get(0),
            )
            .unwrap();
        // Every round inserts the same rows (later rounds replace them with themselves).
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        let before: i64 = if round == 0 { 0 } else { ROWS };
        assert_eq!(
            rows,
            if logged == 1 { ROWS } else { before },
            "round {round} (seed {seed})"
        );
        drop(conn);
        // Pushed again with the same id: applied exactly once.
        let r = http
            .post(format!("http://{}/v1/databases/big/push", server.addr))
            .bearer_auth(&token)
            .header("sync-batch-id", format!("big-{round}"))
            .header("sync-cursor", "0")
            .header("sync-schema-version", "1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, json) = json_of(r).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["duplicate"], logged == 1, "{json}");
        outcomes.push((cut == body.len(), logged == 1));
        assert!(server.terminate().await.success());
    }
    assert!(
        outcomes.iter().any(|(_, committed)| !committed),
        "no kill landed before the commit: {outcomes:?}"
    );
    println!(
        "large-push kills (one push takes {took} ms): (whole body sent, committed) = {outcomes:?}"
    );
}
