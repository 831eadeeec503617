//! Each command's behaviour as a user sees it: exit statuses, messages, files written or left
//! alone, `-` for standard input/output, `--help`, and a reader that goes away (`| head`).

use crate::common::{
    Run, Scratch, assert_rows_differ, assert_same_rows, changes_in, query_value, sha256, sqlite3,
    sync_cli, sync_cli_path, sync_cli_with_stdin,
};
use rusqlite::types::Value as SqlValue;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const COMMANDS: [&str; 6] = ["diff", "inspect", "validate", "apply", "invert", "concat"];

/// `sync-cli diff FROM TO -o OUT`, expecting `status`.
fn diff(from: &Path, to: &Path, out: &Path, status: i32) -> Run {
    sync_cli([
        "diff".as_ref(),
        from.as_os_str(),
        to.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect(status)
}

/// `sync-cli apply FILE DB EXTRA…`.
fn apply(changeset: &Path, db: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec!["apply".as_ref(), changeset.as_os_str(), db.as_os_str()];
    args.extend(extra.iter().map(|a| OsStr::new(*a)));
    sync_cli(args)
}

/// Chinook before and after the edits, and our changeset between them.
fn edited_with_changeset(scratch: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let (orig, edited) = scratch.chinook_pair();
    let changeset = scratch.path("edits.cs");
    diff(&orig, &edited, &changeset, 1);
    (orig, edited, changeset)
}

/// A copy of Chinook where two rows the edits touch were changed differently: Track 1's
/// Composer (a DATA conflict for the UPDATE) and the PlaylistTrack row the edits delete
/// (a NOTFOUND conflict).
fn diverged_copy(scratch: &Scratch, name: &str) -> PathBuf {
    let db = scratch.chinook(name);
    sqlite3(
        &db,
        "UPDATE Track SET Composer = 'Someone else' WHERE TrackId = 1;
         DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId = 3390;",
    );
    db
}

#[test]
fn help_works_for_every_subcommand() {
    let top = sync_cli(["--help"]).expect(0);
    for command in COMMANDS {
        assert!(
            top.stdout.contains(&format!("\n  {command} ")),
            "top-level help lists {command}:\n{}",
            top.stdout
        );
        for help in [vec![command, "--help"], vec!["help", command]] {
            let run = sync_cli(&help).expect(0);
            assert!(
                run.stdout.contains(&format!("Usage: sync-cli {command}")),
                "{help:?}:\n{}",
                run.stdout
            );
            assert!(
                run.stdout.contains("Exit status: 0"),
                "{command} --help documents its exit statuses:\n{}",
                run.stdout
            );
        }
        sync_cli([command, "-h"]).expect(0);
    }
    let version = sync_cli(["--version"]).expect(0);
    assert!(
        version.stdout.starts_with("sync-cli "),
        "{}",
        version.stdout
    );
}

#[test]
fn usage_errors_exit_2() {
    let scratch = Scratch::new();
    let db = scratch.chinook("db.db");
    let cs = scratch.write("x.cs", b"T");
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["diff", "a.db"],
        vec!["concat", "only-one.cs", "-o", "out.cs"],
    ] {
        let run = sync_cli(&args).expect(2);
        assert!(run.stdout.is_empty(), "{args:?}: usage goes to stderr");
        assert!(!run.stderr.is_empty(), "{args:?}: says what is wrong");
    }
    let bad_policy = apply(&cs, &db, &["--on-conflict", "sometimes"]).expect(2);
    assert!(
        bad_policy.stderr.contains("unknown conflict policy"),
        "{}",
        bad_policy.stderr
    );
    let bad_table_policy = apply(&cs, &db, &["--table-policy", "Track"]).expect(2);
    assert!(
        bad_table_policy.stderr.contains("TABLE=POLICY"),
        "{}",
        bad_table_policy.stderr
    );
    let db_with_json = sync_cli([
        "inspect".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
        cs.as_os_str(),
    ])
    .expect(2);
    assert!(
        db_with_json
            .stderr
            .starts_with("sync-cli: error: --db names columns"),
        "{}",
        db_with_json.stderr
    );
}

#[test]
fn diff_exits_0_for_no_differences_and_still_writes_an_empty_file() {
    let scratch = Scratch::new();
    let a = scratch.chinook("a.db");
    let b = scratch.chinook("b.db");
    let out = scratch.path("none.cs");
    let run = diff(&a, &b, &out, 0);
    assert!(run.stdout.is_empty() && run.stderr.is_empty(), "{run:?}");
    assert_eq!(std::fs::read(&out).expect("OUT exists").len(), 0);

    // The empty changeset is "no changes" for inspect and apply; validate wants --allow-empty.
    assert_eq!(
        sync_cli(["inspect".as_ref(), out.as_os_str()])
            .expect(0)
            .stdout,
        ""
    );
    let hash = sha256(&a);
    assert_eq!(
        apply(&out, &a, &[]).expect(0).stdout.trim(),
        "applied 0 of 0 changes, no conflicts"
    );
    assert_eq!(sha256(&a), hash);
    sync_cli(["validate".as_ref(), out.as_os_str()]).expect(2);
    let allowed = sync_cli([
        "validate".as_ref(),
        "--allow-empty".as_ref(),
        out.as_os_str(),
    ])
    .expect(0);
    assert_eq!(
        allowed.stdout.trim(),
        "valid: 0 changes in 0 tables, 0 bytes"
    );
}

#[test]
fn diff_exits_1_for_differences_and_2_for_errors() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let out = scratch.path("out.cs");
    diff(&orig, &edited, &out, 1);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);

    let missing = scratch.path("missing.db");
    let unwritten = scratch.path("unwritten.cs");
    let run = diff(&missing, &edited, &unwritten, 2);
    assert!(
        run.stderr.starts_with("sync-cli: error: cannot open") && run.stderr.contains("missing.db"),
        "{}",
        run.stderr
    );
    assert!(!missing.exists(), "diff does not create its inputs");
    assert!(!unwritten.exists(), "nothing is written on error");

    let not_a_db = scratch.write("text.db", b"this is not a database, just some text...");
    diff(&not_a_db, &edited, &unwritten, 2);

    // Different schemas cannot be diffed into a changeset.
    let other = scratch.path("other.db");
    sqlite3(&other, "CREATE TABLE t(id INTEGER PRIMARY KEY);");
    let run = diff(&orig, &other, &unwritten, 2);
    assert!(run.stderr.contains("exists only in"), "{}", run.stderr);
}

#[test]
fn diff_warns_about_tables_it_cannot_compare() {
    let scratch = Scratch::new();
    let schema = "CREATE TABLE keyed(id INTEGER PRIMARY KEY, v); CREATE TABLE log(line TEXT);";
    let a = scratch.path("a.db");
    let b = scratch.path("b.db");
    sqlite3(
        &a,
        &format!("{schema} INSERT INTO log VALUES ('only in a');"),
    );
    sqlite3(&b, &format!("{schema} INSERT INTO keyed VALUES (1, 'x');"));
    let out = scratch.path("out.cs");
    let run = diff(&a, &b, &out, 1);
    assert_eq!(
        run.stderr.trim(),
        "sync-cli: warning: table log not compared: no PRIMARY KEY"
    );
    let listed = sync_cli(["inspect".as_ref(), out.as_os_str()]).expect(0);
    assert_eq!(listed.stdout, "INSERT keyed pk(1): c0=1, c1='x'\n");
}

#[test]
fn validate_accepts_a_changeset_with_a_one_line_summary() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let bytes = std::fs::metadata(&changeset).unwrap().len();
    let run = sync_cli(["validate".as_ref(), changeset.as_os_str()]).expect(0);
    assert_eq!(
        run.stdout,
        format!("valid: 10 changes in 6 tables, {bytes} bytes\n")
    );
}

#[test]
fn validate_rejects_garbage_truncated_and_empty_files_with_the_byte_offset() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let good = std::fs::read(&changeset).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage.cs",
            b"hello, world".to_vec(),
            "invalid changeset at byte 0: expected a table header ('T', 0x54), found byte 0x68",
        ),
        (
            "empty.cs",
            Vec::new(),
            "invalid changeset at byte 0: the changeset is empty (0 bytes)",
        ),
        (
            "truncated.cs",
            good[..good.len() - 3].to_vec(),
            "truncated: input ends inside",
        ),
        ("bad-op.cs", bad_op(&good), "unknown operation byte 0x55"),
    ];
    for (name, bytes, expected) in cases {
        let file = scratch.write(name, &bytes);
        let run = sync_cli(["validate".as_ref(), file.as_os_str()]).expect(2);
        assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        let stderr = run.stderr.trim_end();
        assert!(
            stderr.starts_with(&format!(
                "sync-cli: error: {}: invalid changeset at byte ",
                file.display()
            )) && stderr.contains(expected)
                && stderr.lines().count() == 1,
            "{name}: {stderr}"
        );
        let offset: usize = stderr
            .split("at byte ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no offset in {stderr}"));
        assert!(
            offset <= bytes.len(),
            "{name}: offset {offset} within the file"
        );
    }
}

/// `good` with the first change's operation byte replaced by an invalid one: the byte after
/// the first table header's NUL-terminated name.
fn bad_op(good: &[u8]) -> Vec<u8> {
    let mut bytes = good.to_vec();
    let columns = usize::from(bytes[1]); // small tables: a one-byte varint
    let name_start = 2 + columns;
    let nul = name_start + bytes[name_start..].iter().position(|b| *b == 0).unwrap();
    bytes[nul + 1] = 0x55;
    bytes
}

#[test]
fn inspect_prints_changes_before_a_malformed_one_then_fails() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let good = std::fs::read(&changeset).unwrap();
    let cut = scratch.write("cut.cs", &good[..good.len() - 3]);
    let run = sync_cli(["inspect".as_ref(), cut.as_os_str()]).expect(2);
    assert_eq!(
        run.lines().len(),
        9,
        "the 9 complete changes:\n{}",
        run.stdout
    );
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
}

#[test]
fn inspect_names_columns_from_a_database_and_summarises() {
    let scratch = Scratch::new();
    let (orig, _, changeset) = edited_with_changeset(&scratch);
    let named = sync_cli([
        "inspect".as_ref(),
        changeset.as_os_str(),
        "--db".as_ref(),
        orig.as_os_str(),
    ])
    .expect(0);
    for line in [
        "UPDATE Track pk(1): Composer: 'Angus Young, Malcolm Young, Brian Johnson' -> NULL, UnitPrice: 0.99 -> 1.29",
        "UPDATE Artist pk(2): Name: 'Accept' -> X'00FF10'",
        "UPDATE Invoice pk(2): Total: 3.96 -> 9e999",
        "INSERT Track pk(3504): TrackId=3504, Name='Two'||char(10)||'lines', AlbumId=348, MediaTypeId=1, GenreId=NULL, Composer=NULL, Milliseconds=1000, Bytes=NULL, UnitPrice=1.5",
        "DELETE PlaylistTrack pk(1, 3390): PlaylistId=1, TrackId=3390",
    ] {
        assert!(
            named.lines().contains(&line),
            "missing {line:?} in:\n{}",
            named.stdout
        );
    }
    assert!(named.stderr.is_empty(), "{}", named.stderr);

    let summary = sync_cli([
        "inspect".as_ref(),
        "--summary".as_ref(),
        changeset.as_os_str(),
    ])
    .expect(0);
    let bytes = std::fs::metadata(&changeset).unwrap().len();
    assert_eq!(
        summary.stdout,
        format!(
            "TABLE           INSERT   UPDATE   DELETE
Album                1        0        0
Artist               1        1        0
Invoice              0        2        0
InvoiceLine          0        0        1
PlaylistTrack        1        0        1
Track                1        1        0
10 changes in 6 tables, {bytes} bytes
"
        )
    );
}

#[test]
fn apply_with_conflicts_applies_the_rest_reports_each_and_exits_1() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let target = diverged_copy(&scratch, "target.db");
    let run = apply(&changeset, &target, &["--on-conflict", "omit"]).expect(1);
    let mut lines = run.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            "DATA         UPDATE Track pk(1) -> omit",
            "NOTFOUND     DELETE PlaylistTrack pk(1, 3390) -> omit",
            "applied 8 of 10 changes, 2 conflicts",
        ]
    );
    // The conflicting UPDATE was skipped whole; the others were applied.
    assert_eq!(
        query_value(&target, "SELECT Composer FROM Track WHERE TrackId = 1"),
        SqlValue::Text("Someone else".into())
    );
    assert_eq!(
        query_value(&target, "SELECT UnitPrice FROM Track WHERE TrackId = 1"),
        SqlValue::Real(0.99)
    );
    assert_eq!(
        query_value(&target, "SELECT Name FROM Artist WHERE ArtistId = 276"),
        SqlValue::Text("New Artist".into())
    );
}

#[test]
fn apply_table_policy_overrides_the_default() {
    let scratch = Scratch::new();
    let (_, edited, changeset) = edited_with_changeset(&scratch);
    let target = diverged_copy(&scratch, "target.db");
    let run = apply(
        &changeset,
        &target,
        &["--on-conflict", "omit", "--table-policy", "Track=replace"],
    )
    .expect(1);
    assert!(
        run.lines()
            .contains(&"DATA         UPDATE Track pk(1) -> replace"),
        "{}",
        run.stdout
    );
    assert!(
        run.lines()
            .contains(&"applied 9 of 10 changes, 2 conflicts"),
        "{}",
        run.stdout
    );
    // The incoming UPDATE won, and the row that was already deleted stays deleted: the
    // target now equals the edited database.
    assert_same_rows(&target, &edited);
}

#[test]
fn apply_abort_exits_2_and_leaves_the_file_byte_for_byte_unchanged() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let target = diverged_copy(&scratch, "target.db");
    let before = sha256(&target);
    for extra in [&["--on-conflict", "abort"][..], &[]] {
        let run = apply(&changeset, &target, extra).expect(2);
        let lines = run.lines();
        assert_eq!(
            lines.len(),
            2,
            "the aborting conflict and the summary:\n{}",
            run.stdout
        );
        assert!(lines[0].ends_with("-> abort"), "{}", run.stdout);
        assert_eq!(
            lines[1],
            "aborted: applied 0 of 10 changes, 1 conflict; the database is unchanged"
        );
        assert!(
            run.stderr.starts_with(&format!(
                "sync-cli: error: {}: apply aborted by a ",
                target.display()
            )),
            "{}",
            run.stderr
        );
        assert_eq!(sha256(&target), before, "{extra:?}: the file is unchanged");
    }
    assert!(
        !scratch.path("target.db-journal").exists(),
        "no journal is left behind"
    );
}

#[test]
fn apply_to_a_missing_database_exits_2_and_creates_nothing() {
    let scratch = Scratch::new();
    let (_, _, changeset) = edited_with_changeset(&scratch);
    let missing = scratch.path("typo.db");
    let run = apply(&changeset, &missing, &[]).expect(2);
    assert!(
        run.stderr.starts_with(&format!(
            "sync-cli: error: cannot open database {}",
            missing.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!missing.exists(), "apply must not create a database");
    assert!(std::fs::read_dir(scratch.path("")).unwrap().all(|e| {
        let name = e.unwrap().file_name();
        !name.to_string_lossy().starts_with("typo.db")
    }));
}

#[test]
fn apply_of_an_invalid_or_mismatched_changeset_changes_nothing() {
    let scratch = Scratch::new();
    let target = scratch.chinook("target.db");
    let before = sha256(&target);

    let garbage = scratch.write("garbage.cs", b"T\x02\x01\x00Genre\x00\x12\x00\x01");
    let run = apply(&garbage, &target, &["--on-conflict", "replace"]).expect(2);
    assert!(
        run.stderr.contains("invalid changeset at byte"),
        "{}",
        run.stderr
    );

    // A valid changeset for a table Chinook does not have.
    let a = scratch.path("a.db");
    let b = scratch.path("b.db");
    sqlite3(&a, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);");
    sqlite3(
        &b,
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'a');",
    );
    let foreign = scratch.path("notes.cs");
    diff(&a, &b, &foreign, 1);
    let run = apply(&foreign, &target, &["--on-conflict", "replace"]).expect(2);
    assert!(
        run.stderr.contains("\"notes\" does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(sha256(&target), before);
}

#[test]
fn invert_then_apply_undoes() {
    let scratch = Scratch::new();
    let (orig, edited, changeset) = edited_with_changeset(&scratch);
    let target = scratch.copy(&orig, "target.db");
    apply(&changeset, &target, &[]).expect(0);
    assert_same_rows(&target, &edited);

    let inverse = scratch.path("inverse.cs");
    let run = sync_cli([
        "invert".as_ref(),
        changeset.as_os_str(),
        "-o".as_ref(),
        inverse.as_os_str(),
    ])
    .expect(0);
    assert!(run.stdout.is_empty() && run.stderr.is_empty(), "{run:?}");
    let listed = sync_cli(["inspect".as_ref(), inverse.as_os_str()]).expect(0);
    assert!(
        listed
            .lines()
            .contains(&"DELETE Artist pk(276): c0=276, c1='New Artist'"),
        "{}",
        listed.stdout
    );
    apply(&inverse, &target, &[]).expect(0);
    assert_same_rows(&target, &orig);

    // Inverting twice gives the original changes back.
    let twice = scratch.path("twice.cs");
    sync_cli([
        "invert".as_ref(),
        inverse.as_os_str(),
        "-o".as_ref(),
        twice.as_os_str(),
    ])
    .expect(0);
    assert_eq!(changes_in(&twice), changes_in(&changeset));

    let garbage = scratch.write("garbage.cs", b"nope");
    let out = scratch.path("never.cs");
    sync_cli([
        "invert".as_ref(),
        garbage.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect(2);
    assert!(!out.exists());
}

#[test]
fn concat_of_a_and_b_equals_applying_a_then_b() {
    let scratch = Scratch::new();
    let (orig, edited, a) = edited_with_changeset(&scratch);
    // B edits rows that A inserted or changed, so the combination must merge them.
    let stage2 = scratch.copy(&edited, "stage2.db");
    sqlite3(
        &stage2,
        "UPDATE Artist SET Name = 'Renamed' WHERE ArtistId = 276;
         DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId = 3504;
         UPDATE Track SET Composer = 'Back again' WHERE TrackId = 1;
         INSERT INTO Genre VALUES (26, 'Sea shanty');",
    );
    let b = scratch.path("b.cs");
    diff(&edited, &stage2, &b, 1);

    let ab = scratch.path("ab.cs");
    sync_cli([
        "concat".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        "-o".as_ref(),
        ab.as_os_str(),
    ])
    .expect(0);
    let listed = sync_cli(["inspect".as_ref(), ab.as_os_str()]).expect(0);
    assert!(
        listed
            .lines()
            .contains(&"INSERT Artist pk(276): c0=276, c1='Renamed'"),
        "INSERT then UPDATE is one INSERT:\n{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains("pk(1, 3504)"),
        "INSERT then DELETE is nothing:\n{}",
        listed.stdout
    );

    let one_go = scratch.copy(&orig, "one-go.db");
    apply(&ab, &one_go, &[]).expect(0);
    let in_turn = scratch.copy(&orig, "in-turn.db");
    apply(&a, &in_turn, &[]).expect(0);
    apply(&b, &in_turn, &[]).expect(0);
    assert_same_rows(&one_go, &in_turn);
    assert_same_rows(&one_go, &stage2);
    assert_rows_differ(&one_go, &orig);
}

#[test]
fn dash_means_standard_input_and_output() {
    let scratch = Scratch::new();
    let (orig, edited, changeset) = edited_with_changeset(&scratch);
    let bytes = std::fs::read(&changeset).unwrap();

    let to_stdout = sync_cli([
        "diff".as_ref(),
        orig.as_os_str(),
        edited.as_os_str(),
        "-o".as_ref(),
        "-".as_ref(),
    ])
    .expect(1);
    assert_eq!(to_stdout.stdout_bytes, bytes);

    let from_file = sync_cli(["inspect".as_ref(), changeset.as_os_str()]).expect(0);
    let from_stdin = sync_cli_with_stdin(["inspect", "-"], &bytes).expect(0);
    assert_eq!(from_stdin.stdout, from_file.stdout);
    sync_cli_with_stdin(["validate", "-"], &bytes).expect(0);

    let inverse = sync_cli_with_stdin(["invert", "-", "-o", "-"], &bytes).expect(0);
    let back = sync_cli_with_stdin(["invert", "-", "-o", "-"], &inverse.stdout_bytes).expect(0);
    assert_eq!(
        sync_core::engine::changeset::Changeset::from_bytes(back.stdout_bytes)
            .inspect()
            .unwrap(),
        changes_in(&changeset)
    );

    let both = sync_cli_with_stdin(
        [
            "concat".as_ref(),
            "-".as_ref(),
            changeset.as_os_str(),
            "-o".as_ref(),
            "-".as_ref(),
        ],
        &inverse.stdout_bytes,
    )
    .expect(0);
    assert!(
        both.stdout_bytes.is_empty(),
        "the inverse followed by the changes cancels out"
    );
    let twice = sync_cli_with_stdin(["concat", "-", "-", "-o", "-"], &bytes).expect(2);
    assert!(twice.stderr.contains("only once"), "{}", twice.stderr);

    let target = scratch.copy(&orig, "target.db");
    sync_cli_with_stdin(["apply".as_ref(), "-".as_ref(), target.as_os_str()], &bytes).expect(0);
    assert_same_rows(&target, &edited);
}

/// `sync-cli inspect big.cs | head -1`: the reader leaves after one line; sync-cli must exit
/// quietly with status 0, not panic or complain.
#[test]
fn a_closed_pipe_ends_inspect_quietly() {
    let scratch = Scratch::new();
    let orig = scratch.chinook("orig.db");
    let emptied = scratch.chinook("emptied.db");
    sqlite3(&emptied, "DELETE FROM PlaylistTrack;");
    let big = scratch.path("big.cs");
    diff(&orig, &emptied, &big, 1);

    for format in ["text", "json"] {
        let mut child = Command::new(sync_cli_path())
            .args([
                "inspect".as_ref(),
                "--format".as_ref(),
                format.as_ref(),
                big.as_os_str(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(first.contains("PlaylistTrack"), "{first}");
        // 8715 lines are far more than a pipe buffers, so sync-cli is still writing when
        // the read end closes here.
        drop(reader);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).as_ref()
            ),
            (Some(0), ""),
            "{format}"
        );
    }
}
