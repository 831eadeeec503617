//! A changeset in a file is applied in pieces (SQLite's streaming apply would keep all of it in
//! memory). These tests cut small changesets into many pieces and check that the pieces give
//! the result of one apply: the same rows, the same report, an effect that reproduces them, and
//! foreign keys judged over the whole changeset — a child before its parent is fine, an orphan
//! anywhere aborts everything and changes nothing.

use crate::common::{TempDb, int, record, text, uniform};
use std::io::Write;
use sync_core::engine::apply::{
    ApplyError, ApplyOptions, ApplyReport, apply, apply_captured_into, apply_source,
};
use sync_core::engine::changeset::Changeset;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::decode::{Change, Op};
use sync_core::engine::encode::encode;
use sync_core::engine::policy::Policy;
use sync_core::engine::spool::{Spool, Spooled};
use sync_core::engine::value::Value;

const SCHEMA: &str = "
    CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE child(
        id        INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
        label     TEXT
    );
    INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
    INSERT INTO child VALUES (10, 1, 'a'), (11, 1, 'b'), (20, 2, 'c');
";

/// Pieces of about this many bytes: a few changes each.
const TINY: usize = 64;

fn options(piece: usize) -> ApplyOptions {
    ApplyOptions {
        piece_bytes: Some(piece),
        ..uniform(Policy::Replace)
    }
}

/// `bytes` in a file (the spool's threshold is below them).
fn in_file(dir: &std::path::Path, bytes: &[u8]) -> Spooled {
    let mut spool = Spool::new(dir, 1);
    spool.write_all(bytes).unwrap();
    let spooled = spool.finish().unwrap();
    assert!(spooled.as_bytes().is_none(), "the changeset is in a file");
    spooled
}

/// A write touching both tables with every kind of change, as a device records it.
fn mixed_write() -> Changeset {
    let source = TempDb::new(SCHEMA);
    let mut sql = String::new();
    for i in 100..160 {
        sql.push_str(&format!("INSERT INTO parent VALUES ({i}, 'new {i}');"));
        sql.push_str(&format!(
            "INSERT INTO child VALUES ({}, {i}, 'kid of {i}');",
            i * 10
        ));
    }
    sql.push_str("UPDATE parent SET name = 'renamed' WHERE id = 1;");
    sql.push_str("UPDATE child SET label = 'moved', parent_id = 1 WHERE id = 20;");
    sql.push_str("DELETE FROM parent WHERE id = 2;");
    record(&source.conn, &sql)
}

fn insert(table: &str, values: Vec<Value>) -> Change {
    let mut pk = vec![0u8; values.len()];
    pk[0] = 1;
    Change {
        table: table.into(),
        op: Op::Insert,
        indirect: false,
        pk,
        old: None,
        new: Some(values.into_iter().map(Some).collect()),
    }
}

#[test]
fn pieces_give_the_rows_report_and_effect_of_one_apply() {
    let cs = mixed_write();
    let dir = tempfile::tempdir().unwrap();
    let file = in_file(dir.path(), cs.as_bytes());

    let whole = TempDb::new(SCHEMA);
    let mut whole_effect = Vec::new();
    let whole_report = apply_captured_into(
        &whole.conn,
        cs.as_bytes().into(),
        &options(TINY),
        None,
        &mut whole_effect,
    )
    .unwrap();
    let whole_effect = Changeset::from_bytes(whole_effect).validate().unwrap();
    for piece in [TINY, 200, 1 << 20] {
        let cut = TempDb::new(SCHEMA);
        let mut effect = Vec::new();
        let report =
            apply_captured_into(&cut.conn, file.source(), &options(piece), None, &mut effect)
                .unwrap();
        assert_eq!(report, whole_report, "pieces of {piece} bytes");
        assert_eq!(cut.dump(), whole.dump(), "pieces of {piece} bytes");
        // The effect — the pieces' effects one after the other — is one changeset that takes
        // a copy of the starting state to the same rows.
        let replay = TempDb::new(SCHEMA);
        let effect = Changeset::from_bytes(effect);
        assert_eq!(effect.validate().unwrap().tables, whole_effect.tables);
        let options = ApplyOptions {
            fk_no_action: true,
            ..options(TINY)
        };
        apply(&replay.conn, &effect, &options).unwrap();
        assert_eq!(replay.dump(), whole.dump(), "effect of pieces of {piece}");
    }
}

#[test]
fn a_child_before_its_parent_in_an_earlier_piece_is_not_a_violation() {
    // Children first, parents after: the first pieces end with rows whose parent is missing.
    let mut changes: Vec<Change> = (0..20)
        .map(|i| insert("child", vec![int(1000 + i), int(500 + i), text("early")]))
        .collect();
    changes.extend((0..20).map(|i| insert("parent", vec![int(500 + i), text("late")])));
    let cs = Changeset::from_bytes(encode(&changes));
    let dir = tempfile::tempdir().unwrap();
    let file = in_file(dir.path(), cs.as_bytes());
    let db = TempDb::new(SCHEMA);
    let report = apply_source(&db.conn, file.source(), &options(TINY), None).unwrap();
    assert_eq!(
        report,
        ApplyReport {
            changes: 40,
            applied: 40,
            conflicts: vec![]
        }
    );
    let n: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM child JOIN parent ON parent.id = child.parent_id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3 + 20);
}

#[test]
fn an_orphan_in_an_early_piece_aborts_every_piece_and_changes_nothing() {
    // The orphan first, then enough valid changes for several more pieces.
    let mut changes = vec![insert("child", vec![int(999), int(77), text("orphan")])];
    changes.extend((0..30).map(|i| insert("parent", vec![int(600 + i), text("fine")])));
    let cs = Changeset::from_bytes(encode(&changes));
    let dir = tempfile::tempdir().unwrap();
    let file = in_file(dir.path(), cs.as_bytes());

    // On its own (the apply's own transaction): the file is byte-for-byte unchanged.
    let db = TempDb::new(SCHEMA);
    let before = db.snapshot();
    let err = apply_source(&db.conn, file.source(), &options(TINY), None).unwrap_err();
    let ApplyError::Aborted { report } = err else {
        panic!("expected an abort, got {err:?}");
    };
    let last = report.conflicts.last().unwrap();
    assert_eq!(last.kind, ConflictKind::ForeignKey);
    assert_eq!(last.fk_violations, Some(1));
    assert_eq!(report.applied, 0);
    before.assert_unchanged(&db);

    // Inside the caller's transaction (the server's push): the pieces' savepoint is undone,
    // the caller's own earlier write is kept.
    db.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    db.conn
        .execute("INSERT INTO parent VALUES (3, 'mine')", [])
        .unwrap();
    let mut effect = Vec::new();
    let err = apply_captured_into(&db.conn, file.source(), &options(TINY), None, &mut effect)
        .unwrap_err();
    assert!(matches!(err, ApplyError::Aborted { .. }), "{err:?}");
    let names: Vec<String> = db
        .conn
        .prepare("SELECT name FROM parent ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, ["p1", "p2", "mine"]);
    db.conn.execute_batch("COMMIT").unwrap();
}

#[test]
fn an_abort_in_a_later_piece_undoes_the_earlier_pieces() {
    let mut changes: Vec<Change> = (0..30)
        .map(|i| insert("parent", vec![int(700 + i), text("fine")]))
        .collect();
    // Last: an insert of an existing key with different values, which Policy::Abort aborts.
    changes.push(insert("parent", vec![int(1), text("clash")]));
    let cs = Changeset::from_bytes(encode(&changes));
    let dir = tempfile::tempdir().unwrap();
    let file = in_file(dir.path(), cs.as_bytes());
    let db = TempDb::new(SCHEMA);
    let before = db.snapshot();
    let options = ApplyOptions {
        piece_bytes: Some(TINY),
        ..uniform(Policy::Abort)
    };
    let err = apply_source(&db.conn, file.source(), &options, None).unwrap_err();
    let ApplyError::Aborted { report } = err else {
        panic!("expected an abort, got {err:?}");
    };
    assert_eq!(
        report.conflicts.last().unwrap().kind,
        ConflictKind::Conflict
    );
    before.assert_unchanged(&db);
}
