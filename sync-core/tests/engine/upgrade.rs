//! Upgrading a local copy in place (`client::upgrade`): pending transactions captured under
//! the old schema are rewritten for the new one and kept, or rejected with the reason; a
//! failing or refused script changes nothing. And the SQLite behaviour the design rests on.

use crate::common::*;
use rusqlite::Connection;
use sync_core::client::{self, rejected};
use sync_core::engine::apply::{ApplyError, apply};
use sync_core::engine::capture::capture;
use sync_core::engine::conflict::Resolution;
use sync_core::engine::ffi::{ApplyFlags, apply_v2};
use sync_core::engine::outbox;
use sync_core::protocol::migrations::MigrationScript;

fn script(version: u32, sql: &str) -> MigrationScript {
    MigrationScript {
        version,
        name: format!("{version:04}_test.sql"),
        sql: sql.into(),
        at_seq: None,
    }
}

fn write(conn: &Connection, sql: &str) {
    capture(conn, |c| c.execute_batch(sql)).unwrap();
}

/// A client copy at schema version 1 with synced rows.
fn client_db() -> TempDb {
    let db = TempDb::new(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
         CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO notes VALUES (1, 'one', 'b1'), (2, 'two', 'b2'), (3, 'three', NULL);
         INSERT INTO tags VALUES (1, 'red');",
    );
    client::install(&db.conn).unwrap();
    client::state::set_schema_version(&db.conn, 1).unwrap();
    db
}

#[test]
fn sqlite_takes_a_changeset_with_fewer_columns_but_the_fit_check_does_not() {
    // Checked rather than assumed: the behaviour decides whether pending changesets must be
    // rewritten after an ADD COLUMN.
    let v1 = TempDb::new("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT);");
    let insert = record(&v1.conn, "INSERT INTO t VALUES (1, 'x')");
    let v2 = TempDb::new(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'd';",
    );
    apply_v2(
        &v2.conn,
        insert.as_bytes(),
        ApplyFlags::default(),
        None,
        &mut |_, _| Resolution::Abort,
    )
    .unwrap();
    assert_eq!(v2.rows("t"), vec![vec![int(1), text("x"), text("d")]]);
    let v3 = TempDb::new(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); ALTER TABLE t ADD COLUMN b TEXT;",
    );
    let err = apply(
        &v3.conn,
        &insert,
        &uniform(sync_core::engine::policy::Policy::Abort),
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Schema(_)), "{err}");
    assert!(v3.rows("t").is_empty());
}

#[test]
fn pending_transactions_are_rewritten_by_column_name_or_rejected_with_the_reason() {
    let db = client_db();
    let conn = &db.conn;
    write(conn, "INSERT INTO notes VALUES (10, 'ten', 'b10')");
    write(conn, "UPDATE tags SET name = 'blue' WHERE id = 1");
    write(conn, "UPDATE notes SET title = 'two!' WHERE id = 2");
    write(conn, "DELETE FROM notes WHERE id = 3");
    write(conn, "UPDATE notes SET body = 'changed' WHERE id = 1");
    assert_eq!(outbox::entries(conn).unwrap().len(), 5);

    let report = client::upgrade::upgrade(
        conn,
        &[
            script(2, "ALTER TABLE notes RENAME COLUMN title TO heading;"),
            script(
                3,
                "ALTER TABLE notes ADD COLUMN color TEXT DEFAULT 'grey'; DROP TABLE tags;",
            ),
            script(4, "ALTER TABLE notes DROP COLUMN body;"),
        ],
        None,
        7,
    )
    .unwrap();
    assert_eq!((report.from, report.to), (1, 4));
    // The tag update (its table is gone) and the body update (its column is gone) are
    // rejected; the insert (body non-NULL) too; the rename, the delete are kept.
    assert_eq!(report.rejected, 3, "{report:?}");
    assert_eq!(report.kept, 2, "{report:?}");
    assert_eq!(client::state::schema_version(conn).unwrap(), 4);
    let queue = rejected::list(conn).unwrap();
    let reasons: Vec<_> = queue.iter().map(|r| (r.reason, r.by)).collect();
    assert!(
        reasons.iter().all(|r| *r
            == (
                rejected::RejectedReason::Schema,
                rejected::RejectedBy::Upgrade
            )),
        "{reasons:?}"
    );
    assert!(queue[0].detail.contains("\"body\""), "{}", queue[0].detail);
    assert!(queue[1].detail.contains("\"tags\""), "{}", queue[1].detail);
    assert!(queue[2].detail.contains("\"body\""), "{}", queue[2].detail);
    assert_eq!(
        db.rows("notes"),
        vec![
            vec![int(1), text("one"), text("grey")],
            vec![int(2), text("two!"), text("grey")],
        ]
    );
    // The kept ones are stored in the new shape: id, heading, color.
    for e in outbox::entries(conn).unwrap() {
        for c in e.changeset.inspect().unwrap() {
            assert_eq!(c.column_count(), 3, "{c:?}");
        }
    }
    // Their inverses restore the synced state exactly (what the next rebase relies on).
    let pending = outbox::entries(conn).unwrap();
    let all =
        sync_core::engine::changeset::Changeset::concat_all(pending.iter().map(|e| &e.changeset))
            .unwrap();
    apply(
        conn,
        &all.invert().unwrap(),
        &uniform(sync_core::engine::policy::Policy::Abort),
    )
    .unwrap();
    assert_eq!(
        db.rows("notes"),
        vec![
            vec![int(1), text("one"), text("grey")],
            vec![int(2), text("two"), text("grey")],
            vec![int(3), text("three"), text("grey")],
        ]
    );
}

#[test]
fn a_failing_or_refused_script_changes_nothing() {
    for bad in [
        "ALTER TABLE notes ADD COLUMN color TEXT; SELECT no_such_function();",
        "ALTER TABLE notes ADD COLUMN color TEXT; DELETE FROM _SYNC_OUTBOX;",
        "CREATE TABLE logbook(at INTEGER, msg TEXT);",
    ] {
        let db = client_db();
        write(&db.conn, "INSERT INTO notes VALUES (10, 'ten', NULL)");
        let before = db.dump();
        let err = client::upgrade::upgrade(
            &db.conn,
            &[
                script(2, "CREATE TABLE extra(id INTEGER PRIMARY KEY);"),
                script(3, bad),
            ],
            None,
            7,
        )
        .unwrap_err();
        assert!(
            matches!(err, client::ClientError::Upgrade { from: 1, .. }),
            "{bad}: {err}"
        );
        assert_eq!(db.dump(), before, "{bad}");
        assert_eq!(client::state::schema_version(&db.conn).unwrap(), 1);
    }
    // Scripts that do not follow the local version are refused before anything runs.
    let db = client_db();
    let err = client::upgrade::upgrade(&db.conn, &[script(3, "SELECT 1;")], None, 7).unwrap_err();
    assert!(matches!(err, client::ClientError::Upgrade { .. }), "{err}");
}
