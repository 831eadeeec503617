//! The hostile-client suite: each test is one attack on a real server over HTTP, and asserts
//! both the answer and that no database changed (the files' bytes, or a full dump).

use crate::common::*;
use reqwest::StatusCode;
use sync_core::engine::value::Value;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_value_for_an_integer_primary_key_is_400_type_mismatch_and_changes_nothing() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    s.push_ok(
        &token,
        "notes",
        "base",
        0,
        &Local::new().change("INSERT INTO notes VALUES (1, 'keep', 'me', 1)"),
    )
    .await;
    let path = s.db_path("notes");
    let before = file_fingerprint(&path);
    let body = insert_changeset(
        "notes",
        &[1, 0, 0, 0],
        vec![
            Value::Text("not an integer".into()),
            Value::Text("t".into()),
            Value::Null,
            Value::Integer(1),
        ],
    );
    let (status, json) = s.push(&token, "notes", "mismatch", 1, &body).await;
    assert_error(status, &json, 400, "type_mismatch");
    assert_eq!(file_fingerprint(&path), before);
    // Not recorded as processed: the same id with a good body applies.
    let good = Local::new().change("INSERT INTO notes VALUES (2, 'ok', '', 1)");
    assert_eq!(
        s.push_ok(&token, "notes", "mismatch", 1, &good).await.seq,
        2
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_internal_fault_is_a_bare_500_and_unknown_paths_are_404() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 'keep', 'me', 1)");
    s.push_ok(&token, "notes", "b1", 0, &cs).await;
    // Damage the stored answer behind the server's back: its retry cannot be answered.
    rusqlite::Connection::open(s.db_path("notes"))
        .unwrap()
        .execute(
            "UPDATE _sync_batches SET response = 'SELECT secret FROM _sync_meta' WHERE batch_id = 'b1'",
            [],
        )
        .unwrap();
    let before = file_fingerprint(&s.db_path("notes"));
    let (status, json) = s.push(&token, "notes", "b1", 0, &cs).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json,
        serde_json::json!({"v": 1, "code": "internal", "message": "internal error"}),
        "a 500 shows no internals"
    );
    assert_eq!(file_fingerprint(&s.db_path("notes")), before);

    for (method, path, status, code) in [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/v2/databases/notes", 404, "not_found"),
        ("GET", "/v1/databases/notes/pull/extra", 404, "not_found"),
        (
            "POST",
            "/v1/databases/notes/pull",
            405,
            "method_not_allowed",
        ),
        ("DELETE", "/v1/databases/notes", 405, "method_not_allowed"),
    ] {
        let r = s
            .http
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (got, json) = json_of(r).await;
        assert_error(got, &json, status, code);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_at_the_limit_are_taken_and_one_byte_more_is_413() {
    const LIMIT: usize = 64 * 1024;
    let s = TestServer::start_with(|c| c.max_body_bytes = LIMIT).await;
    let token = s.setup("alice", "notes");
    // A real changeset of exactly LIMIT bytes: one note whose body fills the rest.
    let shell = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    let filler = "x".repeat(LIMIT - shell.len() - 2);
    let exact = Local::new().change(&format!("INSERT INTO notes VALUES (1, 't', '{filler}', 1)"));
    assert_eq!(exact.len(), LIMIT);
    s.push_ok(&token, "notes", "exact", 0, &exact).await;
    let path = s.db_path("notes");
    let before = file_fingerprint(&path);
    let over = Local::new().change(&format!(
        "INSERT INTO notes VALUES (2, 't', '{filler}x', 1)"
    ));
    assert_eq!(over.len(), LIMIT + 1);
    let (status, json) = s.push(&token, "notes", "over", 1, &over).await;
    assert_error(status, &json, 413, "payload_too_large");
    assert_eq!(json["limit"], LIMIT as u64);
    assert_eq!(file_fingerprint(&path), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_database_is_absent_on_every_route() {
    let s = TestServer::start().await;
    let alice = s.setup("alice", "alice-db");
    let bob = s.setup("bob", "bob-db");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    s.push_ok(&bob, "bob-db", "b0", 0, &cs).await;
    let path = s.db_path("bob-db");
    let before = file_fingerprint(&path);
    let requests: Vec<(&str, &str, Vec<u8>)> = vec![
        ("GET", "", vec![]),
        ("GET", "/pull?since=0", vec![]),
        ("GET", "/snapshot", vec![]),
        ("GET", "/conflicts", vec![]),
        ("GET", "/events", vec![]),
        ("POST", "/push", cs.clone()),
        ("POST", "/rowid-ranges", br#"{"v":1,"size":10}"#.to_vec()),
    ];
    for (method, path_rest, body) in requests {
        let r = s
            .http
            .request(method.parse().unwrap(), s.url("bob-db", path_rest))
            .bearer_auth(&alice)
            .header("sync-batch-id", "x1")
            .header("sync-cursor", "1")
            .header("sync-schema-version", "1")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, json) = json_of(r).await;
        assert_error(status, &json, 404, "database_not_found");
    }
    assert_eq!(file_fingerprint(&path), before);
    s.stop().await;
}
