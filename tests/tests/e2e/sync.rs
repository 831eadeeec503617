//! Devices that edit offline and then sync end up row-for-row equal to the server and to
//! each other.

use session_sync_tests::*;
use sync_client::ClientConfig;

#[test]
fn offline_edits_on_two_devices_converge_with_the_server() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    a.write(|c| {
        c.execute(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'from a', '', 1)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    b.write(|c| {
        c.execute(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), 'from b', '', 2)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 2);
    assert_eq!(query_i64(&b, "SELECT count(*) FROM notes"), 2);
    for client in [&a, &b] {
        let status = client.status().unwrap();
        assert_eq!(status.pending_changesets, 0);
        assert_eq!(status.inflight_batch, None);
    }
    a.close();
    b.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
    ]);
}

/// Three devices with overlapping offline edits — inserts, updates and deletes of shared
/// rows, a foreign-key cascade — converge: every pair of databases, devices and server, is
/// equal.
#[test]
fn three_devices_with_overlapping_offline_edits_converge() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &token, ClientConfig::default());
    exec(
        &a,
        "INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'one', 'x', 1), (2, 'two', 'y', 1), (3, 'three', 'z', 1);
         INSERT INTO tags(id, name) VALUES (1, 'work'), (2, 'home');
         INSERT INTO note_tags VALUES (1, 1), (2, 1), (3, 2);",
    );
    a.sync_now().unwrap();
    let others: Vec<_> = ["phone", "tablet"]
        .iter()
        .map(|device| {
            let t = server.token("alice", device);
            server.notes_client(
                dir.path(),
                &format!("{device}.db"),
                &t,
                ClientConfig::default(),
            )
        })
        .collect();
    let (b, c) = (&others[0], &others[1]);
    assert_eq!(query_i64(c, "SELECT count(*) FROM note_tags"), 3);

    // Offline: each device edits; some edits touch the same rows.
    exec(
        &a,
        "UPDATE notes SET title = 'one (a)' WHERE id = 1;
         DELETE FROM notes WHERE id = 2;
         INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), 'new on a', '', 2);",
    );
    exec(
        b,
        "UPDATE notes SET body = 'x (b)' WHERE id = 1;
         UPDATE notes SET title = 'two (b)' WHERE id = 2;
         INSERT INTO note_tags VALUES (3, 1);
         INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), 'new on b', '', 3);",
    );
    exec(
        c,
        "DELETE FROM tags WHERE id = 2;
         UPDATE notes SET title = 'one (c)', updated_at = 5 WHERE id = 1;
         INSERT INTO tags(id, name) VALUES (3, 'later');",
    );
    exec(c, "INSERT INTO note_tags VALUES (1, 3);");

    for client in [&a, b, c, &a, b] {
        client.sync_now().unwrap();
    }
    for client in [&a, b, c] {
        let status = client.status().unwrap();
        assert_eq!(status.pending_changesets, 0, "{status:?}");
        assert_eq!(status.cursor, a.status().unwrap().cursor);
    }
    // Last push wins per column: c's title (pushed last), b's body.
    assert_eq!(
        query_text(b, "SELECT title || '/' || body FROM notes WHERE id = 1").unwrap(),
        "one (c)/x (b)"
    );
    // Note 2 was deleted by a: b's later update of it does not bring it back.
    assert_eq!(query_i64(c, "SELECT count(*) FROM notes WHERE id = 2"), 0);
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 4);
    a.close();
    b.close();
    c.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("phone.db"),
        &dir.path().join("tablet.db"),
    ]);
}

/// Under the default last-push-wins policy an UPDATE carries only the columns it changed, so
/// one device's new title and another's new body both survive.
#[test]
fn edits_to_different_columns_of_one_row_merge() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
    exec(
        &a,
        "INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'title', 'body', 1)",
    );
    a.sync_now().unwrap();
    let b = server.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
    exec(&a, "UPDATE notes SET title = 'title by a' WHERE id = 1");
    exec(&b, "UPDATE notes SET body = 'body by b' WHERE id = 1");
    a.sync_now().unwrap();
    let report = b.sync_now().unwrap();
    assert_eq!(
        report.server_conflicts, 0,
        "disjoint columns do not conflict"
    );
    a.sync_now().unwrap();
    for client in [&a, &b] {
        assert_eq!(
            query_text(
                client,
                "SELECT title || '|' || body FROM notes WHERE id = 1"
            )
            .unwrap(),
            "title by a|body by b"
        );
    }
    assert!(server.conflicts("notes").is_empty());
    a.close();
    b.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
    ]);
}

/// A pull page larger than the server keeps in memory (it goes to a file on the server, and
/// arrives compressed or not) reaches the other device whole: six megabytes of
/// incompressible text in one transaction.
#[test]
fn a_page_spooled_to_a_file_on_the_server_pulls_whole() {
    let server = Server::start();
    let p = server.pair();
    let (a, b) = (&p.a, &p.b);
    exec(
        a,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
         INSERT INTO notes(id, title, body, updated_at)
         SELECT i, 'n' || i, hex(randomblob(2000)), i FROM n;",
    );
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(query_i64(b, "SELECT count(*) FROM notes"), 1500);
    assert_eq!(
        query_i64(b, "SELECT sum(length(body)) FROM notes"),
        1500 * 4000
    );
    p.assert_converged(&server);
}

/// One transaction several times the server's body limit (the limit lowered to 1 MiB): it is
/// uploaded in parts, its effect is larger than a pull page and reaches the other device in
/// ranges, and nothing of the upload is left on the server.
#[test]
fn a_transaction_larger_than_the_body_limit_is_uploaded_in_parts_and_pulled_in_ranges() {
    let server = Server::start_with(|c| c.max_body_bytes = 1 << 20);
    let p = server.pair();
    let (a, b) = (&p.a, &p.b);
    exec(
        a,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO notes(id, title, body, updated_at)
         SELECT i, 'bulk', hex(randomblob(120)), i FROM n;",
    );
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 1);
    assert!(status.pending_bytes > 5 << 20, "{status:?}");
    let report = a.sync_now().unwrap();
    assert_eq!(report.pushed_transactions, 1, "{report:?}");
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    let report = b.sync_now().unwrap();
    assert_eq!(report.pulled_entries, 1, "{report:?}");
    assert_eq!(report.changed_tables, ["notes"]);
    assert_eq!(query_i64(b, "SELECT count(*) FROM notes"), 20_000);
    let uploads = server.data_dir().join("uploads");
    let left: Vec<_> = walk(&uploads);
    assert!(left.is_empty(), "upload files left behind: {left:?}");
    p.assert_converged(&server);
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// A write larger than one transaction may hold fails when it commits, names the limit and
/// leaves nothing behind — whether the limit is the app's or the server's (learnt on a sync).
#[test]
fn a_write_past_the_transaction_limit_fails_at_commit_and_changes_nothing() {
    let server = Server::start_with(|c| c.max_transaction_bytes = 2 << 20);
    let ta = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let bulk = |n: u32| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
             INSERT INTO notes(id, title, body, updated_at)
             SELECT i, 'bulk', hex(randomblob(120)), i FROM n;"
        )
    };
    let capped = ClientConfig {
        max_transaction_bytes: Some(100_000),
        ..ClientConfig::default()
    };
    let a = server.notes_client(dir.path(), "a.db", &ta, capped);
    let sql = bulk(1000);
    let err = a.write(move |c| Ok(c.execute_batch(&sql)?)).unwrap_err();
    assert_eq!(err.kind(), sync_client::ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("100000 bytes"), "{err}");
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 0);
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    a.close();

    // No cap of its own: the server's 2 MiB, once a sync has told it.
    let a =
        sync_client::SyncClient::open(dir.path().join("a.db"), ClientConfig::default()).unwrap();
    a.sync_now().unwrap();
    let sql = bulk(12_000);
    let err = a.write(move |c| Ok(c.execute_batch(&sql)?)).unwrap_err();
    assert_eq!(err.kind(), sync_client::ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains(&(2u64 << 20).to_string()), "{err}");
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 0);
    // Under the limit: fine.
    exec(&a, &bulk(100));
    assert_eq!(a.sync_now().unwrap().pushed_transactions, 1);
    a.close();
}
