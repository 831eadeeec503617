//! Interoperability with SQLite's own tools: changesets written by Debian's `sqldiff` and by
//! the `sqlite3` shell's `.session` command, and `sqldiff` as the judge of equality.

use crate::common::{
    EDITED_TABLES, Scratch, assert_rows_differ, assert_same_rows, changes_in, inspect_sorted,
    sqldiff_changeset, sqlite3, sync_cli,
};
use sync_core::engine::decode::Change;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;

// `sqldiff` writes a table header for every table, even one without differences; SQLite reads
// and applies such changesets, and so must we (`table_header_without_changes_is_valid`).

#[test]
fn sqldiff_changeset_validates_inspects_and_applies() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let changeset = scratch.path("sqldiff.cs");
    sqldiff_changeset(&orig, &edited, &changeset, None);

    let bytes = std::fs::metadata(&changeset).unwrap().len();
    let validate = sync_cli(["validate".as_ref(), changeset.as_os_str()]).expect(0);
    assert_eq!(
        validate.stdout.trim(),
        format!("valid: 10 changes in 6 tables, {bytes} bytes")
    );
    let inspect = sync_cli(["inspect".as_ref(), changeset.as_os_str()]).expect(0);
    assert_eq!(inspect.lines().len(), 10, "{}", inspect.stdout);

    let target = scratch.copy(&orig, "target.db");
    let apply = sync_cli(["apply".as_ref(), changeset.as_os_str(), target.as_os_str()]).expect(0);
    assert_eq!(
        apply.stdout.trim(),
        "applied 10 of 10 changes, no conflicts"
    );
    assert_same_rows(&target, &edited);
}

#[test]
fn sqldiff_and_our_diff_describe_the_same_changes() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let theirs = scratch.path("sqldiff.cs");
    sqldiff_changeset(&orig, &edited, &theirs, None);
    let ours = scratch.path("ours.cs");
    sync_cli([
        "diff".as_ref(),
        orig.as_os_str(),
        edited.as_os_str(),
        "-o".as_ref(),
        ours.as_os_str(),
    ])
    .expect(1);
    assert_eq!(inspect_sorted(&theirs), inspect_sorted(&ours));
}

/// What works today with sqldiff: one changeset per edited table (`sqldiff --table`), joined
/// with `sync-cli concat`. It must describe exactly what our own `diff` finds, and applying it
/// must reproduce the edited database.
#[test]
fn per_table_sqldiff_changesets_concat_inspect_and_apply() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let mut concat_args = vec!["concat".into()];
    for table in EDITED_TABLES {
        let out = scratch.path(&format!("{table}.cs"));
        sqldiff_changeset(&orig, &edited, &out, Some(table));
        sync_cli(["validate".as_ref(), out.as_os_str()]).expect(0);
        concat_args.push(out.into_os_string());
    }
    let joined = scratch.path("joined.cs");
    concat_args.extend(["-o".into(), joined.clone().into_os_string()]);
    sync_cli(&concat_args).expect(0);

    let ours = scratch.path("ours.cs");
    sync_cli([
        "diff".as_ref(),
        orig.as_os_str(),
        edited.as_os_str(),
        "-o".as_ref(),
        ours.as_os_str(),
    ])
    .expect(1);
    let theirs_listed = inspect_sorted(&joined);
    assert_eq!(theirs_listed.len(), 10, "{theirs_listed:#?}");
    assert_eq!(theirs_listed, inspect_sorted(&ours));

    let target = scratch.copy(&orig, "target.db");
    assert_rows_differ(&target, &edited);
    let apply = sync_cli(["apply".as_ref(), joined.as_os_str(), target.as_os_str()]).expect(0);
    assert_eq!(
        apply.stdout.trim(),
        "applied 10 of 10 changes, no conflicts"
    );
    assert_same_rows(&target, &edited);
}

#[test]
fn our_diff_applied_to_a_fresh_copy_makes_sqldiff_print_nothing() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let ours = scratch.path("ours.cs");
    let diff = sync_cli([
        "diff".as_ref(),
        orig.as_os_str(),
        edited.as_os_str(),
        "-o".as_ref(),
        ours.as_os_str(),
    ])
    .expect(1);
    assert_eq!(diff.stdout, "", "diff writes the changeset to OUT only");

    // What the changeset holds, value by value, for the edits that are easy to get wrong.
    let changes = changes_in(&ours);
    assert_eq!(changes.len(), 10);
    let track_1 = find(&changes, "Track", Op::Update, &[Value::Integer(1)]);
    assert_eq!(
        track_1.new.as_ref().unwrap()[5],
        Some(Value::Null),
        "Composer set to NULL"
    );
    assert_eq!(track_1.new.as_ref().unwrap()[8], Some(Value::Real(1.29)));
    assert_eq!(track_1.new.as_ref().unwrap()[1], None, "Name unchanged");
    let artist_2 = find(&changes, "Artist", Op::Update, &[Value::Integer(2)]);
    assert_eq!(
        artist_2.new.as_ref().unwrap()[1],
        Some(Value::Blob(vec![0x00, 0xff, 0x10]))
    );
    let invoice_2 = find(&changes, "Invoice", Op::Update, &[Value::Integer(2)]);
    assert_eq!(
        invoice_2.new.as_ref().unwrap()[8],
        Some(Value::Real(f64::INFINITY))
    );
    find(
        &changes,
        "PlaylistTrack",
        Op::Delete,
        &[Value::Integer(1), Value::Integer(3390)],
    );
    find(
        &changes,
        "PlaylistTrack",
        Op::Insert,
        &[Value::Integer(1), Value::Integer(3504)],
    );

    let target = scratch.chinook("fresh.db");
    sync_cli(["apply".as_ref(), ours.as_os_str(), target.as_os_str()]).expect(0);
    assert_same_rows(&target, &edited);
}

fn find<'a>(changes: &'a [Change], table: &str, op: Op, pk: &[Value]) -> &'a Change {
    changes
        .iter()
        .find(|c| c.table == table && c.op == op && c.pk_values() == pk)
        .unwrap_or_else(|| panic!("no {op} on {table} {pk:?} in {changes:#?}"))
}

/// A changeset recorded by the sqlite3 shell's `.session` command reads back value for value.
#[test]
fn shell_session_changeset_is_read_by_inspect() {
    let scratch = Scratch::new();
    let db = scratch.chinook("shell.db");
    let changeset = scratch.path("session.cs");
    let script = format!(
        ".session open main s1
.session s1 attach Genre
.session s1 attach PlaylistTrack
.session s1 attach Track
INSERT INTO Genre VALUES (26, 'Sea shanty');
INSERT INTO Genre VALUES (27, X'CAFE');
INSERT INTO Genre VALUES (28, CAST(X'FF41' AS TEXT));
UPDATE Genre SET Name = NULL WHERE GenreId = 25;
DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId = 3390;
UPDATE Track SET UnitPrice = 2.5, Bytes = NULL WHERE TrackId = 2;
.session s1 changeset {}
",
        changeset.display()
    );
    sqlite3(&db, &script);

    let mut text = sync_cli(["inspect".as_ref(), changeset.as_os_str()])
        .expect(0)
        .lines()
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>();
    text.sort();
    assert_eq!(
        text,
        [
            "DELETE PlaylistTrack pk(1, 3390): c0=1, c1=3390",
            "INSERT Genre pk(26): c0=26, c1='Sea shanty'",
            "INSERT Genre pk(27): c0=27, c1=X'CAFE'",
            // TEXT that is not UTF-8 is valid; it is shown lossily.
            "INSERT Genre pk(28): c0=28, c1='\u{FFFD}A'",
            "UPDATE Genre pk(25): c1: 'Opera' -> NULL",
            "UPDATE Track pk(2): c7: 5510424 -> NULL, c8: 0.99 -> 2.5",
        ]
    );

    let named = sync_cli([
        "inspect".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
        changeset.as_os_str(),
    ])
    .expect(0);
    assert!(
        named
            .lines()
            .contains(&"UPDATE Track pk(2): Bytes: 5510424 -> NULL, UnitPrice: 0.99 -> 2.5"),
        "{}",
        named.stdout
    );

    let json = sync_cli([
        "inspect".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        changeset.as_os_str(),
    ])
    .expect(0);
    let changes: Vec<Change> = json
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line is a Change"))
        .collect();
    let genre_25 = find(&changes, "Genre", Op::Update, &[Value::Integer(25)]);
    assert_eq!(
        *genre_25,
        Change {
            table: "Genre".into(),
            op: Op::Update,
            indirect: false,
            pk: vec![1, 0],
            old: Some(vec![
                Some(Value::Integer(25)),
                Some(Value::Text("Opera".into()))
            ]),
            new: Some(vec![None, Some(Value::Null)]),
        }
    );
    // Sessions number key columns by their position in the key.
    let playlist = find(
        &changes,
        "PlaylistTrack",
        Op::Delete,
        &[Value::Integer(1), Value::Integer(3390)],
    );
    assert_eq!(playlist.pk, vec![1, 2]);

    let summary = sync_cli(["validate".as_ref(), changeset.as_os_str()]).expect(0);
    let bytes = std::fs::metadata(&changeset).unwrap().len();
    assert_eq!(
        summary.stdout.trim(),
        format!("valid: 6 changes in 3 tables, {bytes} bytes")
    );
}

/// Minimal case for the sync-core bug above: a table header with no change after it, then a
/// table with one INSERT. SQLite applies it; sync-core's decoder calls it invalid.
#[test]
fn table_header_without_changes_is_valid() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"T\x02\x01\x00t\x00"); // table t(a PRIMARY KEY, b): no changes
    bytes.extend_from_slice(b"T\x01\x01u\x00"); // table u(a PRIMARY KEY)
    bytes.extend_from_slice(&[0x12, 0x00, 0x01]); // INSERT, direct, INTEGER
    bytes.extend_from_slice(&7i64.to_be_bytes());

    // SQLite's own reading: applies cleanly and inserts the row.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t(a PRIMARY KEY, b); CREATE TABLE u(a PRIMARY KEY);")
        .unwrap();
    sync_core::engine::ffi::apply_v2(
        &conn,
        &bytes,
        sync_core::engine::ffi::ApplyFlags::default(),
        None,
        &mut |_, _| sync_core::engine::conflict::Resolution::Abort,
    )
    .expect("SQLite applies a changeset with an empty table block");
    let a: i64 = conn.query_row("SELECT a FROM u", [], |r| r.get(0)).unwrap();
    assert_eq!(a, 7);

    let scratch = Scratch::new();
    let file = scratch.write("empty-block.cs", &bytes);
    sync_cli(["validate".as_ref(), file.as_os_str()]).expect(0);
}
