//! Full-text search: rows that arrive from other devices become searchable, the index can be
//! deleted and is rebuilt, and nothing of it ever reaches the synced database.

use session_sync_tests::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use sync_client::{ClientConfig, FtsTable, SyncClient};

fn fts_config() -> ClientConfig {
    ClientConfig {
        fts: vec![FtsTable {
            table: "notes".into(),
            columns: vec!["title".into(), "body".into()],
        }],
        ..ClientConfig::default()
    }
}

fn hits(client: &SyncClient, terms: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = client
        .search(terms, 10)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

/// Tables of a database file other than the sync's internal ones, and whether any is a
/// virtual table.
fn schema_of(path: &Path) -> (BTreeSet<String>, bool) {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'table'")
        .unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let virtual_tables = rows
        .iter()
        .any(|(_, sql)| sql.to_uppercase().starts_with("CREATE VIRTUAL"));
    let names = rows
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with("_sync_") && !n.starts_with("sqlite_"))
        .collect();
    (names, virtual_tables)
}

#[test]
fn rows_from_another_device_become_searchable_and_the_index_is_never_synced() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &ta, fts_config());
    let b_path = dir.path().join("b.db");
    let b = server.notes_client(dir.path(), "b.db", &tb, fts_config());
    b.start_background().unwrap();

    exec(
        &a,
        "INSERT INTO notes(id, title, body, updated_at) VALUES
           (1, 'zebra crossing', 'stripes', 1),
           (2, 'shopping', 'milk and zebra cakes', 1),
           (3, 'unrelated', 'nothing', 1)",
    );
    a.sync_now().unwrap();
    wait_until(Duration::from_secs(10), "b finds a's notes", || {
        hits(&b, "zebra") == [1, 2]
    });
    wait_until(Duration::from_secs(10), "b's index caught up", || {
        b.status().unwrap().fts_lag == 0
    });

    // Remote updates and deletes reach the index too.
    exec(
        &a,
        "UPDATE notes SET title = 'giraffe crossing' WHERE id = 1; DELETE FROM notes WHERE id = 2;",
    );
    a.sync_now().unwrap();
    wait_until(
        Duration::from_secs(10),
        "b's index follows a's edits",
        || hits(&b, "zebra").is_empty() && hits(&b, "giraffe") == [1],
    );
    // A local write on a is searchable once indexed.
    exec(
        &a,
        "INSERT INTO notes(id, title, body, updated_at) VALUES (4, 'okapi', '', 1)",
    );
    a.index_now().unwrap();
    assert_eq!(hits(&a, "okapi"), [4]);
    assert_eq!(hits(&a, "giraffe"), [1]);
    a.sync_now().unwrap();

    // Deleting the index file: reopening rebuilds it (the FTS tables are remembered by the
    // database, so this open names none).
    b.close();
    let fts_file = dir.path().join("b.db.fts");
    assert!(fts_file.exists());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("b.db.fts{suffix}")));
    }
    let b = SyncClient::open(&b_path, ClientConfig::default()).unwrap();
    b.sync_now().unwrap();
    assert!(fts_file.exists());
    assert_eq!(
        b.status().unwrap().fts_lag,
        3,
        "every row is queued for indexing"
    );
    b.index_now().unwrap();
    assert_eq!(b.status().unwrap().fts_lag, 0);
    assert_eq!(hits(&b, "okapi"), [4]);
    assert_eq!(hits(&b, "crossing"), [1]);

    // Nothing of the index is in the synced databases or went over the wire.
    a.close();
    b.close();
    let app_tables: BTreeSet<String> = ["notes", "tags", "note_tags"].map(String::from).into();
    for path in [
        dir.path().join("a.db"),
        b_path.clone(),
        server.db_path("notes"),
    ] {
        assert_eq!(schema_of(&path), (app_tables.clone(), false), "{path:?}");
    }
    let (fts_tables, fts_virtual) = schema_of(&fts_file);
    assert!(
        fts_virtual && fts_tables.contains("notes"),
        "{fts_tables:?}"
    );
    // Remote applies are not captured (invariant 5): b only ever received rows — applied them,
    // indexed them, rebuilt its index — and pushed nothing back.
    let devices: BTreeSet<String> = server.log("notes").into_iter().map(|e| e.1).collect();
    assert_eq!(
        devices,
        ["laptop".to_string()].into(),
        "only a pushed; b echoed nothing back"
    );
    let mut logged = BTreeSet::new();
    for (_, _, _, effect) in server.log("notes") {
        for change in effect.changes() {
            logged.insert(change.unwrap().table);
        }
    }
    assert_eq!(logged, ["notes".to_string()].into());
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db"), &b_path]);
}
