//! A server database's history rewound under its devices — its file put back from an older
//! copy, as an OS crash under relaxed durability or a restore by hand would — and a device's
//! synced state changed behind the library's back: each is detected at the next sync and
//! repaired from a snapshot, pending transactions kept; `verify` tells before the repair.

use session_sync_tests::*;
use std::path::Path;
use sync_client::{ClientConfig, SyncClient};
use sync_server::datadir::DataDir;

fn insert(client: &SyncClient, title: &str) {
    let title = title.to_string();
    client
        .write(move |c| {
            c.execute(
                "INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), ?1, '', 1)",
                [&title],
            )?;
            Ok(())
        })
        .unwrap();
}

/// A consistent copy of a live server database (SQLite's online backup).
fn backup(from: &Path, to: &Path) {
    let src = rusqlite::Connection::open(from).unwrap();
    src.backup(
        rusqlite::MAIN_DB,
        to,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .unwrap();
}

/// Puts `copy` back as the server's file for `notes` (server stopped), as if the last entries
/// had never been written.
fn put_back(server: &mut Server, copy: &Path) {
    server.stop();
    let db = server.db_path("notes");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(copy, &db).unwrap();
    server.restart_with(|_| {});
}

#[test]
fn a_log_that_lost_its_tail_and_grew_again_is_detected_and_repaired() {
    let mut server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let te = server.token("alice", "e");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    let e = server.notes_client(dir.path(), "e.db", &te, ClientConfig::default());
    for i in 0..3 {
        insert(&a, &format!("kept {i}"));
        a.sync_now().unwrap();
    }
    let copy = dir.path().join("at-3.db");
    backup(&server.db_path("notes"), &copy);
    // The tail the server will lose: e integrates it.
    for i in 0..3 {
        insert(&a, &format!("lost {i}"));
        a.sync_now().unwrap();
    }
    e.sync_now().unwrap();
    assert_eq!(e.status().unwrap().cursor, 6);
    insert(&e, "pending on e");
    put_back(&mut server, &copy);
    // a re-bases too (its cursor is past the head), then pushes past e's cursor: seqs 4..=7
    // exist again, with other entries.
    a.sync_now().unwrap();
    for i in 0..4 {
        insert(&a, &format!("new {i}"));
        a.sync_now().unwrap();
    }
    assert!(
        sync_core::server::bounds(&read_server(&server))
            .unwrap()
            .head_seq
            > 6
    );
    let report = e.sync_now().unwrap();
    assert!(report.bootstrapped, "{report:?}");
    // Told by the chain value at e's cursor, before anything was applied.
    let (_, metrics) = server.http_get("", "/metrics");
    assert!(
        metrics.contains("sync_snapshots_total{reason=\"chain\"} 1"),
        "{metrics}"
    );
    e.sync_now().unwrap();
    a.sync_now().unwrap();
    let on_e = titles(&e);
    assert!(on_e.contains(&"pending on e".to_string()), "{on_e:?}");
    assert!(!on_e.iter().any(|t| t.starts_with("lost")), "{on_e:?}");
    assert_eq!(on_e, titles(&a));
    a.close();
    e.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("e.db"),
    ]);
}

fn read_server(server: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        server.db_path("notes"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

#[test]
fn a_row_changed_behind_the_librarys_back_is_found_by_verify_and_repaired_by_sync() {
    let server = Server::start();
    let pair = server.pair();
    for i in 0..5 {
        insert(&pair.a, &format!("note {i}"));
    }
    pair.a.sync_now().unwrap();
    pair.b.sync_now().unwrap();
    assert!(pair.b.verify().unwrap().equal);
    insert(&pair.b, "pending on b");
    // Another connection edits a synced row: no capture, no outbox.
    let outside = rusqlite::Connection::open(pair.path("b.db")).unwrap();
    outside
        .execute(
            "UPDATE notes SET title = 'tampered' WHERE title = 'note 2'",
            [],
        )
        .unwrap();
    drop(outside);
    let v = pair.b.verify().unwrap();
    assert!(!v.equal, "{v:?}");
    assert!(v.difference.contains("content differs"), "{v:?}");
    assert_eq!(pair.b.status().unwrap().repairs, 0);
    // Nothing to pull: the sync's full check (another connection wrote the file) finds it.
    let report = pair.b.sync_now().unwrap();
    assert!(report.bootstrapped, "{report:?}");
    let status = pair.b.status().unwrap();
    assert_eq!(status.repairs, 1);
    assert_eq!(status.pending_changesets, 0, "the pending write was pushed");
    assert!(pair.b.verify().unwrap().equal);
    assert_eq!(
        query_i64(
            &pair.b,
            "SELECT count(*) FROM notes WHERE title = 'tampered'"
        ),
        0
    );
    let (code, metrics) = server.http_get("", "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("sync_snapshots_total{reason=\"checksum\"} 1"),
        "{metrics}"
    );
    pair.a.sync_now().unwrap();
    pair.assert_converged(&server);
}

#[test]
fn a_tampered_row_is_caught_while_integrating_a_pulled_change_to_it() {
    let server = Server::start();
    let pair = server.pair();
    insert(&pair.a, "shared");
    pair.a.sync_now().unwrap();
    pair.b.sync_now().unwrap();
    let outside = rusqlite::Connection::open(pair.path("b.db")).unwrap();
    outside
        .execute("UPDATE notes SET body = 'tampered'", [])
        .unwrap();
    drop(outside);
    pair.a
        .write(|c| {
            c.execute("UPDATE notes SET updated_at = 2", [])?;
            Ok(())
        })
        .unwrap();
    pair.a.sync_now().unwrap();
    let report = pair.b.sync_now().unwrap();
    assert!(report.bootstrapped, "{report:?}");
    assert_eq!(pair.b.status().unwrap().repairs, 1);
    pair.assert_converged(&server);
}

fn titles(c: &SyncClient) -> Vec<String> {
    c.read(|conn| {
        let mut s = conn.prepare("SELECT title FROM notes ORDER BY title")?;
        let rows = s.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .unwrap()
}

fn admin(server: &Server, run: impl FnOnce(&DataDir, &mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    run(&DataDir::plain(server.data_dir()), &mut out);
    String::from_utf8(out).unwrap()
}

/// The restore the issue describes: a backup while devices push, more pushes, a restore, then
/// other devices push the restored server past device E's cursor. E re-bases (new lineage),
/// keeps its pending write, and equals the server.
#[test]
fn a_restore_makes_devices_rebase_on_the_restored_history_keeping_pending_writes() {
    use sync_server::lifecycle::{self, RestorePoint};
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let te = server.token("alice", "e");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    let e = server.notes_client(dir.path(), "e.db", &te, ClientConfig::default());
    for i in 0..3 {
        insert(&a, &format!("before {i}"));
        a.sync_now().unwrap();
    }
    let file = dir.path().join("notes.backup");
    let said = admin(&server, |d, out| {
        lifecycle::backup(d, "notes", &file, out).unwrap()
    });
    assert!(said.contains("at seq 3"), "{said}");
    for i in 0..3 {
        insert(&a, &format!("after {i}"));
        a.sync_now().unwrap();
    }
    e.sync_now().unwrap();
    insert(&e, "pending on e");
    let said = admin(&server, |d, out| {
        lifecycle::restore(d, "notes", &file, RestorePoint::Backup, out).unwrap()
    });
    assert!(said.contains("restored notes to seq 3"), "{said}");
    a.sync_now().unwrap();
    for i in 0..5 {
        insert(&a, &format!("new {i}"));
        a.sync_now().unwrap();
    }
    let report = e.sync_now().unwrap();
    assert!(report.bootstrapped, "{report:?}");
    let (_, metrics) = server.http_get("", "/metrics");
    assert!(
        metrics.contains("sync_snapshots_total{reason=\"lineage\"} 2"),
        "a and e each re-based once: {metrics}"
    );
    e.sync_now().unwrap();
    a.sync_now().unwrap();
    let on_e = titles(&e);
    assert!(on_e.contains(&"pending on e".to_string()), "{on_e:?}");
    assert!(!on_e.iter().any(|t| t.starts_with("after")), "{on_e:?}");
    assert_eq!(on_e, titles(&a));
    assert!(e.verify().unwrap().equal);
    a.close();
    e.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("e.db"),
    ]);
}

#[test]
fn point_in_time_restores_to_a_seq_and_to_a_time_rewind_and_roll_forward() {
    use sync_server::lifecycle::{self, RestorePoint};
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    insert(&a, "one");
    a.sync_now().unwrap();
    let file = dir.path().join("at-1.backup");
    admin(&server, |d, out| {
        lifecycle::backup(d, "notes", &file, out).unwrap()
    });
    insert(&a, "two");
    a.sync_now().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = sync_server::catalog::now_ms();
    std::thread::sleep(std::time::Duration::from_millis(20));
    insert(&a, "three");
    a.sync_now().unwrap();
    let later = dir.path().join("at-3.backup");
    admin(&server, |d, out| {
        lifecycle::backup(d, "notes", &later, out).unwrap()
    });
    // Forward from the older backup along the live log, to seq 2.
    let said = admin(&server, |d, out| {
        lifecycle::restore(d, "notes", &file, RestorePoint::Seq(2), out).unwrap()
    });
    assert!(said.contains("to seq 2"), "{said}");
    a.sync_now().unwrap();
    assert_eq!(titles(&a), ["one", "two"]);
    // Back along the newer backup's own log, to a time between "two" and "three".
    let said = admin(&server, |d, out| {
        lifecycle::restore(d, "notes", &later, RestorePoint::Time(between), out).unwrap()
    });
    assert!(said.contains("to seq 2"), "{said}");
    a.sync_now().unwrap();
    assert_eq!(titles(&a), ["one", "two"]);
    // A seq the backup's log does not reach, and no live log continues it: refused, nothing
    // changed.
    let before = server.db_path("notes");
    let err = lifecycle::restore(
        &DataDir::plain(server.data_dir()),
        "notes",
        &later,
        RestorePoint::Seq(99),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    assert_eq!(server.db_path("notes"), before);
    a.sync_now().unwrap();
    assert_eq!(titles(&a), ["one", "two"]);
    a.close();
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db")]);
}

#[test]
fn reverting_a_batch_converges_on_three_devices() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let tc = server.token("alice", "tablet");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    let c = server.notes_client(dir.path(), "c.db", &tc, ClientConfig::default());
    insert(&a, "keep");
    a.sync_now().unwrap();
    // The bad batch: b deletes everything and adds junk.
    b.sync_now().unwrap();
    b.write(|t| {
        t.execute("DELETE FROM notes", [])?;
        t.execute(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), 'junk', '', 1)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    let bad = b.sync_now().unwrap();
    assert_eq!(bad.cursor, 2);
    insert(&c, "later");
    c.sync_now().unwrap();
    let said = admin(&server, |d, out| {
        sync_server::lifecycle::revert(d, "notes", 2, out).unwrap()
    });
    assert!(
        said.contains("reverted entry 2 of notes as entry 4"),
        "{said}"
    );
    for client in [&a, &b, &c] {
        client.sync_now().unwrap();
    }
    for client in [&a, &b, &c] {
        assert_eq!(titles(client), ["keep", "later"]);
    }
    // An entry that changed nothing cannot be reverted; nothing is logged.
    let err = sync_server::lifecycle::revert(
        &DataDir::plain(server.data_dir()),
        "notes",
        99,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    a.close();
    b.close();
    c.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
        &dir.path().join("c.db"),
    ]);
}
