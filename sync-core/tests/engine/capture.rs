//! Capture, outbox and savepoint behaviour on real SQLite files.

use rusqlite::Connection;
use sync_core::engine::capture::CaptureError;
use sync_core::engine::capture::SchemaChanges;
use sync_core::engine::capture::capture;
use sync_core::engine::capture::{CaptureOptions, capture_with};
use sync_core::engine::decode::Op;
use sync_core::engine::outbox;
use sync_core::engine::savepoint::savepoint;
use sync_core::engine::value::Value;

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("app.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
         CREATE TABLE nokey(x);",
    )
    .unwrap();
    outbox::install(&conn).unwrap();
    (dir, conn)
}

#[test]
fn capture_stores_the_changeset_in_the_outbox_in_the_same_transaction() {
    let (_dir, conn) = db();
    let captured = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'a', 'b')", [])?;
        c.execute("INSERT INTO notes VALUES (2, 'c', NULL)", [])
    })
    .unwrap();
    let seq = captured.outbox_seq.expect("a change was captured");
    let entries = outbox::entries(&conn).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, seq);
    assert_eq!(entries[0].changeset, captured.changeset);
    let changes = entries[0].changeset.inspect().unwrap();
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .all(|c| c.op == Op::Insert && c.table == "notes")
    );
    assert_eq!(
        changes[0].new.as_ref().unwrap()[1],
        Some(Value::Text("a".into()))
    );
}

#[test]
fn failed_write_rolls_back_rows_and_outbox() {
    let (_dir, conn) = db();
    let err = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'a', 'b')", [])?;
        c.execute("INSERT INTO notes VALUES (1, 'dup', 'b')", [])
    })
    .unwrap_err();
    assert!(matches!(err, CaptureError::Write(_)));
    let n: i64 = conn
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    assert!(outbox::entries(&conn).unwrap().is_empty());
    assert!(conn.is_autocommit(), "no transaction left open");
}

#[test]
fn empty_changes_are_not_stored_and_internal_tables_are_not_captured() {
    let (_dir, conn) = db();
    let captured = capture(&conn, |c| {
        c.execute("INSERT INTO nokey VALUES (1)", [])?;
        c.execute(
            "INSERT INTO _sync_outbox(changeset, created_ms) VALUES (x'00', 0)",
            [],
        )
    })
    .unwrap();
    assert_eq!(captured.outbox_seq, None);
    assert!(captured.changeset.is_empty());
    // Insert then delete of one row nets to nothing.
    let captured = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (9, 'x', NULL)", [])?;
        c.execute("DELETE FROM notes WHERE id = 9", [])
    })
    .unwrap();
    assert_eq!(captured.outbox_seq, None);
}

#[test]
fn nested_capture_is_refused_and_closing_the_transaction_is_detected() {
    let (_dir, conn) = db();
    conn.execute_batch("BEGIN").unwrap();
    let err = capture(&conn, |_| Ok::<_, rusqlite::Error>(())).unwrap_err();
    assert!(matches!(err, CaptureError::NestedTransaction));
    conn.execute_batch("ROLLBACK").unwrap();

    let err = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'a', 'b')", [])?;
        c.execute_batch("COMMIT")
    })
    .unwrap_err();
    assert!(matches!(err, CaptureError::TransactionEnded));
}

#[test]
fn a_schema_change_inside_a_capture_is_refused_and_changes_nothing() {
    let (_dir, conn) = db();
    let schema = |c: &Connection| -> Vec<String> {
        let mut stmt = c
            .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = schema(&conn);
    for ddl in [
        "CREATE TABLE extra(id INTEGER PRIMARY KEY)",
        "ALTER TABLE notes ADD COLUMN color TEXT",
        "DROP TABLE nokey",
        "CREATE INDEX notes_title ON notes(title)",
    ] {
        let err = capture(&conn, |c| {
            c.execute("INSERT INTO notes VALUES (1, 'a', 'b')", [])?;
            c.execute_batch(ddl)
        })
        .unwrap_err();
        assert!(matches!(err, CaptureError::SchemaChanged), "{ddl}: {err}");
        assert!(
            conn.is_autocommit(),
            "{ddl}: the transaction was rolled back"
        );
        assert_eq!(schema(&conn), before, "{ddl}");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "{ddl}: the row written with it was rolled back");
        assert!(outbox::entries(&conn).unwrap().is_empty(), "{ddl}");
    }
    // A database that does not sync may create tables, trackable ones only.
    let allow = CaptureOptions {
        schema_changes: SchemaChanges::AllowTrackable,
        ..CaptureOptions::default()
    };
    conn.execute_batch("DROP TABLE nokey").unwrap();
    capture_with(&conn, &allow, |c| {
        c.execute_batch("CREATE TABLE extra(id INTEGER PRIMARY KEY); INSERT INTO extra VALUES (7)")
    })
    .unwrap();
    let err =
        capture_with(&conn, &allow, |c| c.execute_batch("CREATE TABLE loose(x)")).unwrap_err();
    assert!(matches!(err, CaptureError::Untrackable(_)), "{err}");
    assert!(err.to_string().contains("loose"), "{err}");
    assert!(conn.is_autocommit());
    let loose: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'loose'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(loose, 0);
    conn.execute_batch("DROP TABLE extra; DELETE FROM _sync_outbox")
        .unwrap();
    // A TEMP trigger would outlive the write and fire, uncaptured, during remote applies.
    let err = capture(&conn, |c| {
        c.execute_batch(
            "CREATE TEMP TRIGGER sneaky AFTER INSERT ON main.notes BEGIN SELECT 1; END;
             INSERT INTO notes VALUES (2, 'b', NULL)",
        )
    })
    .unwrap_err();
    assert!(matches!(err, CaptureError::SchemaChanged), "{err}");
    let triggers: i64 = conn
        .query_row("SELECT count(*) FROM temp.sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(triggers, 0);
    // A local-only database may make TEMP objects.
    capture_with(&conn, &allow, |c| {
        c.execute_batch("CREATE TEMP TABLE scratch(x); INSERT INTO notes VALUES (2, 'b', NULL)")
    })
    .unwrap();
    assert_eq!(outbox::entries(&conn).unwrap().len(), 1);
}

#[test]
fn outbox_seq_is_never_reused_after_the_outbox_empties() {
    let (_dir, conn) = db();
    let a = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'a', NULL)", [])
    })
    .unwrap()
    .outbox_seq
    .unwrap();
    outbox::remove_through(&conn, a).unwrap();
    let b = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (2, 'b', NULL)", [])
    })
    .unwrap()
    .outbox_seq
    .unwrap();
    assert!(b > a, "seq {b} must not reuse {a}");
}

#[test]
fn savepoints_nest_and_an_inner_failure_undoes_only_its_own_writes() {
    let (_dir, conn) = db();
    let captured = capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'outer', NULL)", [])?;
        let inner: Result<(), rusqlite::Error> = savepoint(c, |c| {
            c.execute("INSERT INTO notes VALUES (2, 'inner', NULL)", [])?;
            savepoint(c, |c| {
                c.execute("INSERT INTO notes VALUES (3, 'innermost', NULL)", [])
                    .map(|_| ())
            })?;
            Err(rusqlite::Error::InvalidQuery)
        });
        assert!(inner.is_err());
        savepoint(c, |c| {
            c.execute("INSERT INTO notes VALUES (4, 'kept', NULL)", [])
                .map(|_| ())
        })
    })
    .unwrap();
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM notes ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, vec![1, 4]);
    let captured_ids: Vec<Value> = captured
        .changeset
        .inspect()
        .unwrap()
        .iter()
        .map(|c| c.pk_values()[0].clone())
        .collect();
    assert_eq!(captured_ids, vec![Value::Integer(1), Value::Integer(4)]);
}

#[test]
fn a_panicking_write_rolls_back() {
    let (_dir, conn) = db();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = capture(&conn, |c| -> Result<(), rusqlite::Error> {
            c.execute("INSERT INTO notes VALUES (1, 'a', NULL)", [])?;
            panic!("boom");
        });
    }));
    assert!(result.is_err());
    assert!(conn.is_autocommit());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}
