//! `sync-cli upgrade`: a local copy with a pending write brought to the server's new schema
//! version in place, the write kept and pushed.

use crate::common::{Scratch, query_value, sync_cli, tool};
use crate::server::Server;
use rusqlite::types::Value as SqlValue;
use std::path::Path;

const DEMO_INIT: &str = include_str!("../../../sync-server/schema/0001_init.sql");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sqldiff --primarykey --table T` prints nothing for every app table.
#[track_caller]
fn assert_tables_equal(a: &Path, b: &Path, tables: &[&str]) {
    for t in tables {
        let run = tool(
            "sqldiff",
            &[
                "--primarykey".as_ref(),
                "--table".as_ref(),
                t.as_ref(),
                a.as_os_str(),
                b.as_os_str(),
            ],
            &[],
        )
        .expect(0);
        assert!(run.stdout.is_empty(), "table {t} differs:\n{}", run.stdout);
    }
}

#[test]
fn upgrade_brings_a_copy_with_a_pending_write_to_the_new_schema_version() {
    let schema = Scratch::new();
    let dir = schema.path("schema");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("0001_init.sql"), DEMO_INIT).unwrap();
    let mut server = Server::start_with_schema(Some(&dir));
    let scratch = Scratch::new();
    let a = scratch.path("a.db");
    let token = server.token("laptop");
    sync_cli([
        "init",
        s(&a),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ])
    .expect(0);
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'synced', 1)",
        "--sync",
    ])
    .expect(0);
    // Offline: a write that waits in the outbox.
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'pending', 2)",
    ])
    .expect(0);

    std::fs::write(
        dir.join("0002_color.sql"),
        "ALTER TABLE notes ADD COLUMN color TEXT NOT NULL DEFAULT 'grey';
         CREATE TABLE notebooks (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();
    server.restart_with_schema(&dir);

    let run = sync_cli(["upgrade", s(&a)]).expect(0);
    assert_eq!(
        run.lines(),
        [
            "upgraded from schema version 1 to 2 with 1 pending transaction(s)",
            "pushed 1 transaction(s), 0 rejected, pulled 0 log entries, cursor 2"
        ],
        "{}",
        run.stdout
    );
    let status = sync_cli(["status", s(&a)]).expect(0);
    assert!(
        status
            .stdout
            .contains("cursor:           2 (schema version 2)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("pending:          0 changesets"),
        "{}",
        status.stdout
    );
    assert_eq!(
        query_value(&a, "SELECT title || '/' || color FROM notes WHERE id = 2"),
        SqlValue::Text("pending/grey".into())
    );
    assert_eq!(
        query_value(&server.db_path(), "SELECT color FROM notes WHERE id = 2"),
        SqlValue::Text("grey".into())
    );
    // The new table is usable at once, and travels.
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notebooks(id, name) VALUES (1, 'work')",
        "--sync",
    ])
    .expect(0);
    assert_tables_equal(
        &server.db_path(),
        &a,
        &["notes", "tags", "note_tags", "notebooks"],
    );

    // Again: nothing to do.
    let run = sync_cli(["upgrade", s(&a)]).expect(0);
    assert_eq!(
        run.lines()[0],
        "already at the server's schema version (2)",
        "{}",
        run.stdout
    );
    let run = sync_cli(["upgrade", s(&a), "--format", "json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(json["upgraded"], false);
    assert_eq!(
        (json["from"].clone(), json["to"].clone()),
        (2.into(), 2.into())
    );

    // No such database: exit 2, nothing created.
    let missing = scratch.path("missing.db");
    let run = sync_cli(["upgrade", s(&missing)]).expect(2);
    assert!(run.stderr.contains("no such database"), "{}", run.stderr);
    assert!(!missing.exists());
}
