//! A schema migration deployed while devices have edits pending: the server restarts with a
//! new migration, and every device upgrades its local copy in place on its next sync — no
//! re-initialisation, pending edits kept, a pending edit the new schema cannot take kept in
//! the rejected queue with its reason.

use session_sync_tests::*;
use std::path::{Path, PathBuf};
use sync_client::{ClientConfig, FtsTable, RejectedBy, RejectedReason, SyncClient};

const DEMO_INIT: &str = include_str!("../../../sync-server/schema/0001_init.sql");

/// A schema directory holding the demo schema as migration 1, and a server running it.
fn v1_server() -> (Server, tempfile::TempDir) {
    let schema = tempfile::tempdir().unwrap();
    std::fs::write(schema.path().join("0001_init.sql"), DEMO_INIT).unwrap();
    let dir = schema.path().to_path_buf();
    let server = Server::start_with(|cfg| cfg.schema_dir = Some(dir));
    (server, schema)
}

/// Ships migration 2 and restarts the server with it (it migrates the database on open).
fn deploy(server: &mut Server, schema: &Path, sql: &str) {
    std::fs::write(schema.join("0002_next.sql"), sql).unwrap();
    let dir: PathBuf = schema.to_path_buf();
    server.restart_with(|cfg| cfg.schema_dir = Some(dir));
}

fn version(c: &SyncClient) -> u32 {
    c.status().unwrap().schema_version
}

#[test]
fn an_offline_device_upgrades_in_place_and_its_three_pending_edits_land() {
    let (mut server, schema) = v1_server();
    let pair = server.pair();
    let (a, b) = (&pair.a, &pair.b);
    for id in 1..=3 {
        exec(
            b,
            &format!("INSERT INTO notes(id, title, updated_at) VALUES ({id}, 'b{id}', 1)"),
        );
    }
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    assert_eq!(query_i64(a, "SELECT count(*) FROM notes"), 3);

    // A goes offline (it does not sync from here on) and edits: an insert, an update of B's
    // row, a delete — three transactions.
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (10, 'a10', 2)",
    );
    exec(
        a,
        "UPDATE notes SET title = 'b2 edited on a', updated_at = 2 WHERE id = 2",
    );
    exec(a, "DELETE FROM notes WHERE id = 3");
    assert_eq!(a.status().unwrap().pending_changesets, 3);
    // B edits once more at version 1: A's cursor is now behind the seq the migration will
    // run at, so A must integrate that entry under version 1 before it upgrades.
    exec(b, "UPDATE notes SET body = 'written at v1' WHERE id = 1");
    b.sync_now().unwrap();

    // The operator ships migration 2: a column and a table.
    deploy(
        &mut server,
        schema.path(),
        "ALTER TABLE notes ADD COLUMN color TEXT NOT NULL DEFAULT 'none';
         CREATE TABLE notebooks (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    );

    // B has nothing to push: its next sync upgrades it all the same (the pull answer shows
    // the newer version), before any version-2 change exists.
    let report = b.sync_now().unwrap();
    assert_eq!(report.upgraded_to, Some(2), "{report:?}");
    assert_eq!(version(b), 2);
    exec(
        b,
        "INSERT INTO notes(id, title, updated_at, color) VALUES (4, 'b4', 3, 'red');
         INSERT INTO notebooks(id, name) VALUES (1, 'work');",
    );
    b.sync_now().unwrap();

    // A syncs without re-init: upgraded, its three edits pushed, B's v2 rows pulled.
    let report = a.sync_now().unwrap();
    assert_eq!(report.upgraded_to, Some(2), "{report:?}");
    assert_eq!(report.rejected_transactions, 0, "{report:?}");
    let status = a.status().unwrap();
    assert_eq!(status.schema_version, 2);
    assert_eq!(status.pending_changesets, 0);
    assert!(a.rejected().unwrap().is_empty());
    assert_eq!(
        query_text(a, "SELECT title || '/' || color FROM notes WHERE id = 10").as_deref(),
        Some("a10/none")
    );
    assert_eq!(
        query_text(a, "SELECT title FROM notes WHERE id = 2").as_deref(),
        Some("b2 edited on a")
    );
    assert_eq!(query_i64(a, "SELECT count(*) FROM notes WHERE id = 3"), 0);
    assert_eq!(
        query_text(a, "SELECT name FROM notebooks WHERE id = 1").as_deref(),
        Some("work")
    );
    assert_eq!(
        query_text(a, "SELECT body || '/' || color FROM notes WHERE id = 1").as_deref(),
        Some("written at v1/none")
    );
    // Writes at version 2 work on the upgraded copy and travel.
    exec(a, "UPDATE notes SET color = 'blue' WHERE id = 10");
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(
        query_text(b, "SELECT color FROM notes WHERE id = 10").as_deref(),
        Some("blue")
    );
    assert_eq!(
        query_text(b, "SELECT title FROM notes WHERE id = 2").as_deref(),
        Some("b2 edited on a")
    );
    assert_eq!(version(b), 2);
    pair.assert_converged(&server);
}

#[test]
fn a_pending_transaction_that_wrote_a_dropped_column_goes_to_the_rejected_queue() {
    let (mut server, schema) = v1_server();
    let pair = server.pair();
    let (a, b) = (&pair.a, &pair.b);
    exec(
        b,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one', 1);
         INSERT INTO notes(id, title, updated_at) VALUES (2, 'two', 1);",
    );
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    server.stop();
    // One transaction writes the column the migration drops, the other does not.
    exec(a, "UPDATE notes SET body = 'a long text' WHERE id = 1");
    exec(a, "UPDATE notes SET title = 'two, kept' WHERE id = 2");
    deploy(
        &mut server,
        schema.path(),
        "ALTER TABLE notes DROP COLUMN body;",
    );

    let report = a.sync_now().unwrap();
    assert_eq!(report.upgraded_to, Some(2), "{report:?}");
    assert_eq!(report.rejected_transactions, 1, "{report:?}");
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    let rejected = a.rejected().unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let r = &rejected[0];
    assert_eq!(r.reason, RejectedReason::Schema);
    assert_eq!(r.by, RejectedBy::Upgrade);
    assert!(
        r.detail.contains("\"body\"") && r.detail.contains("drops"),
        "{}",
        r.detail
    );
    // The rejected transaction is kept whole: its changeset still says what it did.
    let shown = a.rejected_transaction(r.id).unwrap().expect("kept");
    assert!(!shown.changeset.is_empty());

    b.sync_now().unwrap();
    assert_eq!(version(b), 2);
    assert_eq!(
        query_text(b, "SELECT title FROM notes WHERE id = 2").as_deref(),
        Some("two, kept")
    );
    pair.assert_converged(&server);
}

#[test]
fn upgrade_on_demand_and_the_migrations_route() {
    let (mut server, schema) = v1_server();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &token, ClientConfig::default());
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one', 1)",
    );
    a.sync_now().unwrap();
    deploy(
        &mut server,
        schema.path(),
        "CREATE TABLE notebooks (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    );

    // The route: the scripts after a version, each with the log head it ran at.
    let (status, body) = server.http_get(&token, "/v1/databases/notes/migrations?after=1");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["schema_version"], 2);
    assert_eq!(answer["migrations"][0]["version"], 2);
    assert_eq!(answer["migrations"][0]["name"], "0002_next.sql");
    assert_eq!(answer["migrations"][0]["at_seq"], 1);
    assert!(
        answer["migrations"][0]["sql"]
            .as_str()
            .unwrap()
            .contains("notebooks")
    );
    let (_, all) = server.http_get(&token, "/v1/databases/notes/migrations");
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["migrations"].as_array().unwrap().len(), 2);
    let (status, body) = server.http_get(&token, "/v1/databases/notes/migrations?after=x");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_request"), "{body}");
    let (status, body) = server.http_get("sst_nope", "/v1/databases/notes/migrations");
    assert_eq!(status, 401, "{body}");
    let (status, _) = server.http_get(&token, "/v1/databases/other/migrations");
    assert_eq!(status, 404);

    let report = a.upgrade().unwrap();
    assert_eq!(report.upgraded_to, Some(2), "{report:?}");
    assert_eq!(version(&a), 2);
    exec(&a, "INSERT INTO notebooks(id, name) VALUES (1, 'home')");
    let again = a.upgrade().unwrap();
    assert_eq!(again.upgraded_to, None, "already at the server's version");
    a.close();
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db")]);
}

#[test]
fn the_search_index_survives_an_upgrade_and_indexes_what_the_migration_changed() {
    let (mut server, schema) = v1_server();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let config = || ClientConfig {
        fts: vec![FtsTable {
            table: "notes".into(),
            columns: vec!["title".into()],
        }],
        ..ClientConfig::default()
    };
    let a = server.notes_client(dir.path(), "a.db", &token, config());
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'apple', 1)",
    );
    a.sync_now().unwrap();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'banana', 1)",
    );
    // The migration changes indexed rows itself (a data migration): the index follows.
    deploy(
        &mut server,
        schema.path(),
        "ALTER TABLE notes ADD COLUMN color TEXT;
         UPDATE notes SET title = title || ' pie' WHERE id = 1;",
    );
    let report = a.sync_now().unwrap();
    assert_eq!(report.upgraded_to, Some(2), "{report:?}");
    let ids = |terms: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = a
            .search(terms, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        ids.sort();
        ids
    };
    a.index_now().unwrap();
    assert_eq!(ids("pie"), [1]);
    assert_eq!(ids("apple"), [1]);
    assert_eq!(ids("banana"), [2]);
    assert_eq!(a.status().unwrap().fts_lag, 0);
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at, color) VALUES (3, 'cherry', 2, 'red')",
    );
    a.index_now().unwrap();
    assert_eq!(ids("cherry"), [3]);
    a.sync_now().unwrap();
    a.close();
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db")]);
    // Reopened: the index and its triggers come back as before.
    let a = SyncClient::open(dir.path().join("a.db"), config()).unwrap();
    assert_eq!(a.status().unwrap().schema_version, 2);
    assert_eq!(a.search("cherry", 10).unwrap().len(), 1);
}
