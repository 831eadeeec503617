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
    let a = init_client(
        dir.path(),
        "a.db",
        server.remote(&ta, "notes"),
        ClientConfig::default(),
    );
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
        if let Some(id) = line.strip_prefix("ack ") {
            acked.push(id.parse().unwrap());
        }
    }
    // The child keeps writing: the kill lands at some point inside a write.
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements still in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("ack ").and_then(|id| id.parse().ok()) {
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
    assert!(ids.len() >= acked.len() && ids.len() <= acked.len() + 1);
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, ids.len() as u64);

    let report = a.sync_now().unwrap();
    assert!(report.pushed_batches >= 1);
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    let b = init_client(
        dir.path(),
        "b.db",
        server.remote(&tb, "notes"),
        ClientConfig::default(),
    );
    assert_eq!(
        query_i64(&b, "SELECT count(*) FROM notes"),
        ids.len() as i64
    );
    a.close();
    b.close();
    assert_all_equal(&[&server.db_path("notes"), &path, &dir.path().join("b.db")]);
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
