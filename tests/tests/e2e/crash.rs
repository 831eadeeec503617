//! A client process killed with SIGKILL loses no write that `write` acknowledged: the rows
//! and their changesets commit together, so after a restart every acknowledged write is in
//! the table *and* in the outbox, and the next sync delivers it to the server and to other
//! devices.
//!
//! The child process is this very test binary, re-run with [`CHILD_ENV`] set to the database
//! path: it then acts as a client app that writes one row per transaction and prints
//! `ack ID` after each `write` returns, until the parent kills it mid-stream.

use session_sync_tests::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use sync_client::{ClientConfig, SyncClient};

const CHILD_ENV: &str = "SESSION_SYNC_E2E_CRASH_CHILD_DB";
/// Acknowledged writes the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 25;

#[test]
fn writes_acknowledged_before_sigkill_are_kept_and_synced() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&path));
    }
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    a.close();
    let path = dir.path().join("a.db");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::writes_acknowledged_before_sigkill_are_kept_and_synced",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Vec<i64> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < ACKS_BEFORE_KILL {
        let line = lines
            .next()
            .expect("the child ended before acknowledging enough writes")
            .unwrap();
        if let Some(id) = ack_in(&line) {
            acked.push(id);
        }
    }
    // The child keeps writing: the kill lands at some point inside a write.
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements still in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = ack_in(&line) {
            acked.push(id);
        }
    }

    let a = SyncClient::open(&path, ClientConfig::default()).unwrap();
    let ids: Vec<i64> = a
        .read(|c| {
            let mut stmt = c.prepare("SELECT id FROM notes ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .unwrap();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged write {id} was lost");
    }
    // At most the write in progress at the kill committed without being acknowledged; every
    // committed write has its changeset in the outbox, nothing half-written.
    assert!(
        ids.len() >= acked.len() && ids.len() <= acked.len() + 1,
        "{} rows committed, {} writes acknowledged: {ids:?} vs {acked:?}",
        ids.len(),
        acked.len()
    );
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, ids.len() as u64);

    let report = a.sync_now().unwrap();
    assert!(report.pushed_batches >= 1);
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    assert_eq!(
        query_i64(&b, "SELECT count(*) FROM notes"),
        ids.len() as i64
    );
    a.close();
    b.close();
    assert_all_equal(&[&server.db_path("notes"), &path, &dir.path().join("b.db")]);
}

/// The id of an `ack ID` line of a child. The child's own test harness may have printed
/// `test NAME ... ` (no newline) just before the first one, from another thread.
fn ack_in(line: &str) -> Option<i64> {
    line.rsplit_once("ack ")?.1.trim().parse().ok()
}

/// The child: an app writing one note per transaction, offline, acknowledging each.
fn child(path: &std::path::Path) -> ! {
    let client = SyncClient::open(path, ClientConfig::default()).unwrap();
    for i in 1.. {
        let id = client
            .write(move |c| {
                c.execute(
                    "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', ?1)",
                    rusqlite::params![i, format!("note {i}")],
                )?;
                Ok(i)
            })
            .unwrap();
        println!("ack {id}");
    }
    unreachable!()
}

const SYNC_CHILD_ENV: &str = "SESSION_SYNC_E2E_SYNC_CRASH_CHILD_DB";
const SYNC_CHILD_BASE_ENV: &str = "SESSION_SYNC_E2E_SYNC_CRASH_CHILD_BASE";

/// The same guarantee while the client is *syncing*: the child writes on one thread and runs
/// `sync_now` in a loop on another (pushes, settles, pulls and re-bases over pending writes),
/// while another device edits the same rows, and is SIGKILLed at some point of that, three
/// times over. Afterwards every acknowledged write reaches the server, and every device
/// equals it.
#[test]
fn a_client_killed_while_syncing_loses_nothing_and_converges() {
    if let Some(path) = std::env::var_os(SYNC_CHILD_ENV) {
        let base = std::env::var(SYNC_CHILD_BASE_ENV).unwrap().parse().unwrap();
        syncing_child(std::path::Path::new(&path), base);
    }
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    for id in 1..=10 {
        exec(
            &a,
            &format!("INSERT INTO notes(id, title, body, updated_at) VALUES ({id}, 't', 'b', 0)"),
        );
    }
    a.sync_now().unwrap();
    a.close();
    let path = dir.path().join("a.db");
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    // The other device keeps editing the shared rows and syncing throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (b, stop) = (b.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                exec(
                    &b,
                    &format!("UPDATE notes SET title = 'b{k}' WHERE id = {}", k % 10 + 1),
                );
                let _ = b.sync_now();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };

    let mut acked: Vec<i64> = Vec::new();
    let mut syncs = 0;
    for round in 0..3 {
        let wanted = acked.len() + 30 + rand::random_range(0..60);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::a_client_killed_while_syncing_loses_nothing_and_converges",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SYNC_CHILD_ENV, &path)
            .env(SYNC_CHILD_BASE_ENV, ((round + 1) * 100_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while acked.len() < wanted {
            let line = lines
                .next()
                .expect("the child ended before acknowledging enough writes")
                .unwrap();
            if let Some(id) = ack_in(&line) {
                acked.push(id);
            } else if line.ends_with("synced") {
                syncs += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-write or mid-sync
        child.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Some(id) = ack_in(&line) {
                acked.push(id);
            } else if line.ends_with("synced") {
                syncs += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    editor.join().unwrap();
    assert!(
        syncs >= 3,
        "the children completed only {syncs} syncs: too few to have been killed inside one"
    );

    let a = SyncClient::open(&path, ClientConfig::default()).unwrap();
    for _ in 0..3 {
        a.sync_now().unwrap();
        b.sync_now().unwrap();
    }
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 0, "{status:?}");
    assert!(status.local_conflicts.is_empty(), "{status:?}");
    let on_server: std::collections::HashSet<i64> = {
        let conn = rusqlite::Connection::open(server.db_path("notes")).unwrap();
        let mut stmt = conn.prepare("SELECT id FROM notes").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    for id in &acked {
        assert!(
            on_server.contains(id),
            "acknowledged write {id} never reached the server"
        );
    }
    eprintln!(
        "{} acknowledged writes over 3 kills, {syncs} completed syncs in the children",
        acked.len()
    );
    a.close();
    b.close();
    assert_all_equal(&[&server.db_path("notes"), &path, &dir.path().join("b.db")]);
}

/// The syncing child: writes on this thread (new notes, and edits of the shared ones),
/// acknowledging each; syncs in a loop on another.
fn syncing_child(path: &std::path::Path, base: i64) -> ! {
    let client = SyncClient::open(path, ClientConfig::default()).unwrap();
    let syncer = client.clone();
    std::thread::spawn(move || {
        loop {
            if syncer.sync_now().is_ok() {
                println!("synced");
            }
        }
    });
    for i in 1.. {
        let id = base + i;
        client
            .write(move |c| {
                c.execute(
                    "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, 'a', '', 1)",
                    [id],
                )?;
                if i % 3 == 0 {
                    c.execute(
                        "UPDATE notes SET body = ?1 WHERE id = ?2",
                        rusqlite::params![format!("a{i}"), i % 10 + 1],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        println!("ack {id}");
        // An app's pace, so that syncs run between (and during) writes.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    unreachable!()
}
