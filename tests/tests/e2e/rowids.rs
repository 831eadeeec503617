//! Row ids chosen offline on different devices: leased ranges never collide, running out of a
//! lease offline is a typed error, and a collision of explicit (or random) ids is detected by
//! the server and reported to the device whose insert met it.

use session_sync_tests::*;
use std::collections::BTreeSet;
use sync_client::{ClientConfig, ErrorKind, RowidStrategy, SyncClient};
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::conflict::Resolution;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;

fn ranges(lease_size: i64, refill_below: i64) -> ClientConfig {
    ClientConfig {
        rowids: RowidStrategy::Ranges {
            lease_size,
            refill_below,
        },
        ..ClientConfig::default()
    }
}

/// Inserts `n` notes with ids from `sync_id()` in SQL and `m` with ids from `new_id()`.
fn insert_notes(client: &SyncClient, n: usize, m: usize, label: &str) {
    for i in 0..n {
        let title = format!("{label} sql {i}");
        client
            .write(move |c| {
                c.execute(
                    "INSERT INTO notes(id, title, updated_at) VALUES (sync_id(), ?1, 1)",
                    [title],
                )?;
                Ok(())
            })
            .unwrap();
    }
    for i in 0..m {
        let id = client.new_id().unwrap();
        let title = format!("{label} api {i}");
        client
            .write(move |c| {
                c.execute(
                    "INSERT INTO notes(id, title, updated_at) VALUES (?1, ?2, 1)",
                    rusqlite::params![id, title],
                )?;
                Ok(())
            })
            .unwrap();
    }
}

fn ids(client: &SyncClient) -> BTreeSet<i64> {
    client
        .read(|c| {
            let mut stmt = c.prepare("SELECT id FROM notes")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap()
}

#[test]
fn leased_ranges_from_two_offline_devices_never_collide() {
    let mut server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ranges(100, 10));
    let b = server.notes_client(dir.path(), "b.db", &tb, ranges(100, 10));
    // The first sync leases a range.
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(a.status().unwrap().rowids_remaining, Some(100));

    server.stop();
    insert_notes(&a, 30, 20, "a");
    insert_notes(&b, 25, 25, "b");
    let (ids_a, ids_b) = (ids(&a), ids(&b));
    assert!(
        ids_a.is_disjoint(&ids_b),
        "offline devices chose the same ids"
    );
    assert_eq!(a.status().unwrap().rowids_remaining, Some(50));

    server.restart_with(|_| {});
    for client in [&a, &b, &a] {
        client.sync_now().unwrap();
    }
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 100);
    assert_eq!(ids(&b), &ids_a | &ids_b);
    assert!(server.conflicts("notes").is_empty());
    a.close();
    b.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
    ]);
}

#[test]
fn using_up_the_lease_offline_is_a_typed_error_until_the_next_sync() {
    let mut server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ranges(5, 2));
    a.sync_now().unwrap();
    server.stop();

    insert_notes(&a, 3, 2, "a");
    assert_eq!(a.status().unwrap().rowids_remaining, Some(0));
    let err = a
        .write(|c| {
            c.execute(
                "INSERT INTO notes(id, title, updated_at) VALUES (sync_id(), 'one too many', 1)",
                [],
            )?;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RowidsExhausted, "{err}");
    assert_eq!(a.new_id().unwrap_err().kind(), ErrorKind::RowidsExhausted);
    // The failed write left nothing behind.
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 5);
    assert_eq!(a.status().unwrap().pending_changesets, 5);

    server.restart_with(|_| {});
    a.sync_now().unwrap();
    assert_eq!(a.status().unwrap().rowids_remaining, Some(5));
    insert_notes(&a, 1, 1, "a again");
    a.sync_now().unwrap();
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 7);
}

/// Two devices insert the same id with different contents (what a random-id collision looks
/// like). The server meets a CONFLICT, resolves it by policy (last-push-wins: the second
/// insert replaces the row), records it, and the second device's sync reports it.
#[test]
fn a_rowid_collision_is_detected_and_reported_to_the_device() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (777, 'a''s note', 1)",
    );
    exec(
        &b,
        "INSERT INTO notes(id, title, updated_at) VALUES (777, 'b''s note', 1)",
    );
    assert_eq!(a.sync_now().unwrap().server_conflicts, 0);
    let report = b.sync_now().unwrap();
    assert_eq!(report.server_conflicts, 1);

    let status = b.status().unwrap();
    assert_eq!(status.server_conflicts.len(), 1);
    let seen = &status.server_conflicts[0];
    assert_eq!(seen.conflict.kind, ConflictKind::Conflict);
    assert_eq!(seen.conflict.op, Some(Op::Insert));
    assert_eq!(seen.conflict.table, "notes");
    assert_eq!(seen.conflict.pk, vec![Value::Integer(777)]);
    assert_eq!(seen.conflict.resolution, Resolution::Replace);
    // What b's insert overwrote is in the record: a's row.
    let current = seen.conflict.current.as_ref().unwrap();
    assert!(
        current.contains(&Value::Text("a's note".into())),
        "{current:?}"
    );

    let records = server.conflicts("notes");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].device, "phone");
    assert_eq!(records[0].batch_id, seen.batch_id);
    assert_eq!(records[0].conflict, seen.conflict);

    a.sync_now().unwrap();
    assert_eq!(
        query_text(&a, "SELECT title FROM notes WHERE id = 777").unwrap(),
        "b's note"
    );
    assert!(a.status().unwrap().server_conflicts.is_empty());
    a.close();
    b.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
    ]);
}
