//! The hostile-client suite: each test is one attack on a real server over HTTP, and asserts
//! both the answer and that no database changed (the files' bytes, or a full dump).

use crate::common::*;
use reqwest::StatusCode;
use sync_core::Value;

/// Three spellings of a name that SQLite treats as one.
fn case_variants(name: &str) -> [String; 3] {
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    [name.to_string(), name.to_ascii_uppercase(), mixed]
}

/// Every internal table, with its real column count and key, so that the only thing wrong with
/// a changeset for it is its name: the server's own, the client's own (which a server database
/// does not have) and SQLite's.
fn internal_tables() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("_sync_log", vec![1, 0, 0, 0, 0, 0]),
        ("_sync_batches", vec![1, 2, 0, 0]),
        ("_sync_conflicts", vec![1, 0, 0, 0, 0, 0]),
        ("_sync_meta", vec![1, 0]),
        ("_sync_leases", vec![1, 0, 0, 0, 0]),
        ("_sync_outbox", vec![1, 0, 0]),
        ("_sync_outbox_floor", vec![1, 0]),
        ("_sync_client", vec![1, 0]),
        ("_sync_inflight", vec![1, 0, 0, 0, 0]),
        ("_sync_local_conflicts", vec![1, 0, 0, 0, 0, 0, 0, 0]),
        ("_sync_remote", vec![1, 0]),
        ("_sync_server_conflicts", vec![1, 0, 0, 0, 0, 0]),
        ("_sync_rowid_ranges", vec![1, 0, 0]),
        ("_sync_fts_dirty", vec![1, 2, 0]),
        ("sqlite_sequence", vec![1, 0]),
    ]
}

fn row_for(pk: &[u8]) -> Vec<Value> {
    pk.iter()
        .enumerate()
        .map(|(i, _)| match i {
            0 => Value::Integer(1),
            1 => Value::Text("demo-device".into()),
            _ => Value::Blob(b"planted".to_vec()),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_tables_in_any_letter_case_are_refused_and_nothing_changes() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 'keep', 'me', 1)");
    s.push_ok(&token, "notes", "base", 0, &cs).await;
    let path = s.db_path("notes");
    let before = file_fingerprint(&path);
    let mut tried = 0;
    for (table, pk) in internal_tables() {
        for name in case_variants(table) {
            let body = insert_changeset(&name, &pk, row_for(&pk));
            let (status, json) = s
                .push(&token, "notes", &format!("attack-{tried}"), 1, &body)
                .await;
            assert_eq!(
                (status, json["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("internal_table")),
                "{name}: {json}"
            );
            assert_eq!(json["table"], name.as_str(), "{json}");
            assert_eq!(
                file_fingerprint(&path),
                before,
                "pushing {name} changed the database file"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 45);
    // The same table hidden behind a harmless one in the same changeset is refused too.
    let mut both = Local::new().change("INSERT INTO notes VALUES (2, 'cover', '', 1)");
    both.extend(insert_changeset(
        "_SYNC_META",
        &[1, 0],
        vec![Value::Text("head_seq".into()), Value::Integer(0)],
    ));
    let (status, json) = s.push(&token, "notes", "attack-mixed", 1, &both).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(file_fingerprint(&path), before);
    // Nothing was recorded as processed: the log still has the one entry.
    assert_eq!(s.pull(&token, "notes", 0).await.entries.len(), 1);
    s.stop().await;
}
