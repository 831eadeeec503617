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
