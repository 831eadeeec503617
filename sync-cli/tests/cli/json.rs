//! The JSON outputs, read the way a consumer would: `serde_json`, and sync-core's own types.
//! The field-by-field format is documented in docs/changeset-json.md; these tests pin it.

use crate::common::{Scratch, changes_in, sqlite3, sync_cli};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::conflict::Resolution;
use sync_core::engine::decode::Change;
use sync_core::engine::decode::Op;
use sync_core::protocol::conflicts::Conflict;

/// Chinook before/after the edits, and our changeset between them.
fn changeset(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let (orig, edited) = scratch.chinook_pair();
    let out = scratch.path("edits.cs");
    sync_cli([
        "diff".as_ref(),
        orig.as_os_str(),
        edited.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect(1);
    (orig, out)
}

fn json_lines(args: &[&std::ffi::OsStr]) -> Vec<String> {
    let run = sync_cli(args).expect(0);
    assert!(run.stdout.ends_with('\n'), "every line ends with a newline");
    run.stdout.lines().map(str::to_string).collect()
}

fn inspect_json(file: &Path) -> Vec<String> {
    json_lines(&[
        "inspect".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        file.as_os_str(),
    ])
}

#[test]
fn inspect_json_lines_round_trip_to_sync_core_changes() {
    let scratch = Scratch::new();
    let (_, file) = changeset(&scratch);
    let lines = inspect_json(&file);
    let parsed: Vec<Change> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Same changes, same order as sync-core decodes them…
    assert_eq!(parsed, changes_in(&file));
    // …and serializing them again gives the very same lines.
    for (change, line) in parsed.iter().zip(&lines) {
        assert_eq!(&serde_json::to_string(change).unwrap(), line);
    }
}

#[test]
fn inspect_json_encodes_values_as_documented() {
    let scratch = Scratch::new();
    let (_, file) = changeset(&scratch);
    let lines: Vec<Json> = inspect_json(&file)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |table: &str, op: &str, key: i64| -> &Json {
        lines
            .iter()
            .find(|l| l["table"] == table && l["op"] == op && pk_of(l) == key)
            .unwrap_or_else(|| panic!("no {op} {table} {key}"))
    };

    // UPDATE: `old` holds the key and the changed columns' old values; `new` the new values;
    // JSON null = column not changed; {"type":"null"} = SQL NULL.
    let track_1 = find("Track", "UPDATE", 1);
    assert_eq!(track_1["indirect"], json!(false));
    assert_eq!(track_1["pk"], json!([1, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(
        track_1["old"],
        json!([
            {"type": "integer", "value": 1}, null, null, null, null,
            {"type": "text", "value": "Angus Young, Malcolm Young, Brian Johnson"},
            null, null,
            {"type": "real", "value": 0.99}
        ])
    );
    assert_eq!(
        track_1["new"],
        json!([null, null, null, null, null, {"type": "null"}, null, null, {"type": "real", "value": 1.29}])
    );

    // BLOB: standard base64 with padding.
    assert_eq!(
        find("Artist", "UPDATE", 2)["new"][1],
        json!({"type": "blob", "value": "AP8Q"})
    );
    // Non-finite REAL: a string.
    assert_eq!(
        find("Invoice", "UPDATE", 2)["new"][8],
        json!({"type": "real", "value": "inf"})
    );
    // INSERT has no "old"; DELETE has no "new".
    let insert = find("Track", "INSERT", 3504);
    assert!(insert.get("old").is_none(), "{insert}");
    assert_eq!(
        insert["new"][1],
        json!({"type": "text", "value": "Two\nlines"})
    );
    let delete = find("InvoiceLine", "DELETE", 1);
    assert!(delete.get("new").is_none(), "{delete}");
    assert_eq!(
        delete.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["indirect", "old", "op", "pk", "table"]
    );
}

fn pk_of(line: &Json) -> i64 {
    let record = if line["op"] == "INSERT" {
        &line["new"]
    } else {
        &line["old"]
    };
    record[0]["value"].as_i64().unwrap()
}

#[test]
fn summary_json_from_inspect_and_validate() {
    let scratch = Scratch::new();
    let (_, file) = changeset(&scratch);
    let bytes = std::fs::metadata(&file).unwrap().len();
    let expected = json!({
        "changes": 10,
        "bytes": bytes,
        "tables": {
            "Album": {"columns": 3, "pk": [1, 0, 0], "insert": 1, "update": 0, "delete": 0},
            "Artist": {"columns": 2, "pk": [1, 0], "insert": 1, "update": 1, "delete": 0},
            "Invoice": {"columns": 9, "pk": [1, 0, 0, 0, 0, 0, 0, 0, 0], "insert": 0, "update": 2, "delete": 0},
            "InvoiceLine": {"columns": 5, "pk": [1, 0, 0, 0, 0], "insert": 0, "update": 0, "delete": 1},
            "PlaylistTrack": {"columns": 2, "pk": [1, 2], "insert": 1, "update": 0, "delete": 1},
            "Track": {"columns": 9, "pk": [1, 0, 0, 0, 0, 0, 0, 0, 0], "insert": 1, "update": 1, "delete": 0},
        }
    });
    for command in ["inspect --summary", "validate"] {
        let mut args: Vec<&std::ffi::OsStr> =
            command.split(' ').map(std::ffi::OsStr::new).collect();
        args.extend(["--format".as_ref(), "json".as_ref(), file.as_os_str()]);
        let lines = json_lines(&args);
        assert_eq!(lines.len(), 1, "{command}: one JSON document");
        let parsed: Json = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(parsed, expected, "{command}");
    }
}

#[test]
fn apply_report_json_parses_into_sync_core_conflicts() {
    let scratch = Scratch::new();
    let (_, file) = changeset(&scratch);
    let target = scratch.chinook("target.db");
    sqlite3(
        &target,
        "UPDATE Track SET Composer = 'Someone else' WHERE TrackId = 1;",
    );
    let args = |policy: &'static str| {
        vec![
            std::ffi::OsString::from("apply"),
            file.as_os_str().to_owned(),
            target.as_os_str().to_owned(),
            "--on-conflict".into(),
            policy.into(),
            "--format".into(),
            "json".into(),
        ]
    };

    let aborted = sync_cli(args("abort")).expect(2);
    let report: Json = serde_json::from_str(aborted.stdout.trim()).unwrap();
    assert_eq!(report["status"], "aborted");
    assert_eq!(report["changes"], 10);
    assert_eq!(report["applied"], 0);

    let run = sync_cli(args("omit")).expect(1);
    assert_eq!(run.lines().len(), 1, "one JSON document:\n{}", run.stdout);
    let report: Json = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["status"], "conflicts");
    assert_eq!(report["changes"], 10);
    assert_eq!(report["applied"], 9);
    let conflicts: Vec<Conflict> = serde_json::from_value(report["conflicts"].clone()).unwrap();
    assert_eq!(conflicts.len(), 1);
    let conflict = &conflicts[0];
    assert_eq!(
        (
            conflict.kind,
            conflict.table.as_str(),
            conflict.op,
            conflict.resolution
        ),
        (
            ConflictKind::Data,
            "Track",
            Some(Op::Update),
            Resolution::Omit
        )
    );
    assert_eq!(
        conflict.pk,
        vec![sync_core::engine::value::Value::Integer(1)]
    );
    assert_eq!(
        conflict.current.as_ref().unwrap()[5],
        sync_core::engine::value::Value::Text("Someone else".into())
    );
    assert_eq!(report["conflicts"][0]["kind"], "DATA");
}
