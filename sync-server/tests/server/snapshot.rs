//! Bootstrapping from a snapshot, and interop with plain SQLite tools.

use crate::common::*;
use reqwest::StatusCode;
use rusqlite::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_plus_pulled_log_equals_the_server_database() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    let mut cursor = 0;
    let push = async |sql: &str, n: &mut i64| {
        let cs = device.change(sql);
        let a = s.push_ok(&token, "notes", &format!("b{n}"), *n, &cs).await;
        *n = a.seq;
    };
    push(
        "INSERT INTO notes VALUES (1, 'a', 'x', 1); INSERT INTO tags VALUES (1, 't1');",
        &mut cursor,
    )
    .await;
    push(
        "INSERT INTO note_tags VALUES (1, 1); INSERT INTO notes VALUES (2, 'b', '', 2);",
        &mut cursor,
    )
    .await;

    let r = s
        .http
        .get(s.url("notes", "/snapshot"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/vnd.sqlite3");
    let seq: i64 = r.headers()["sync-seq"].to_str().unwrap().parse().unwrap();
    assert_eq!(seq, 2);
    assert_eq!(r.headers()["sync-schema-version"], "1");
    let headers_of_snap = r.headers().clone();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    std::fs::write(&snap, r.bytes().await.unwrap()).unwrap();
    let conn = Connection::open(&snap).unwrap();
    let meta = rows(
        &conn,
        "SELECT key, value FROM _sync_snapshot WHERE key IN ('schema_version', 'seq') ORDER BY key",
    );
    assert_eq!(
        meta,
        vec![
            "Text(\"schema_version\")|Integer(1)",
            "Text(\"seq\")|Integer(2)"
        ]
    );
    // The position rows equal the headers: lineage and chain (16 hex digits), the checksum
    // of the content (64), which the file's own rows have.
    let hex = |k: &str| -> i64 {
        let v: i64 = conn
            .query_row(
                "SELECT value FROM _sync_snapshot WHERE key = ?1",
                [k],
                |r| r.get(0),
            )
            .unwrap();
        v
    };
    for (key, header) in [("lineage", "sync-lineage"), ("chain", "sync-chain")] {
        assert_eq!(
            format!("{:016x}", hex(key) as u64),
            headers_of_snap[header].to_str().unwrap(),
            "{key}"
        );
    }
    let sum: Vec<u8> = conn
        .query_row(
            "SELECT value FROM _sync_snapshot WHERE key = 'sum'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let sum = sync_core::engine::checksum::Checksum::from_bytes(&sum).unwrap();
    assert_eq!(
        sum.to_string(),
        headers_of_snap["sync-sum"].to_str().unwrap()
    );
    let internal = rows(
        &conn,
        "SELECT name FROM sqlite_schema WHERE name LIKE '\\_sync\\_%' ESCAPE '\\' AND name != '_sync_snapshot'",
    );
    assert!(internal.is_empty(), "{internal:?}");

    // The database moves on; the snapshot catches up by pulling.
    push(
        "UPDATE notes SET body = 'y' WHERE id = 1; DELETE FROM notes WHERE id = 2;",
        &mut cursor,
    )
    .await;
    push(
        "DELETE FROM tags WHERE id = 1; INSERT INTO tags VALUES (2, 't2');",
        &mut cursor,
    )
    .await;
    let page = s.pull(&token, "notes", seq).await;
    assert_eq!(page.entries.len(), 2);
    for e in &page.entries {
        apply_effect(&conn, &e.effect);
    }
    drop(conn);
    let copy = dir.path().join("server-copy.db");
    copy_db(&s.db_path("notes"), &copy);
    assert_eq!(
        sqldiff_app_tables(&snap, &copy),
        "",
        "sqldiff must print nothing"
    );
    // And the cascade (tag 1 deleted → note_tags row gone) is part of what was replayed.
    let conn = Connection::open(&snap).unwrap();
    assert!(rows(&conn, "SELECT * FROM note_tags").is_empty());

    // A second snapshot at the same head is served from the cache, identical.
    let one = s
        .http
        .get(s.url("notes", "/snapshot"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let two = s
        .http
        .get(s.url("notes", "/snapshot"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(one, two);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curl_style_push_of_an_sqldiff_changeset_is_accepted() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.db");
    let after = dir.path().join("after.db");
    for (path, data) in [
        (&before, ""),
        (
            &after,
            "INSERT INTO notes VALUES (1, 'from sqldiff', 'body', 7);
                   INSERT INTO tags VALUES (3, 'cli');
                   INSERT INTO note_tags VALUES (1, 3);",
        ),
    ] {
        let c = Connection::open(path).unwrap();
        c.execute_batch(&demo_sql()).unwrap();
        c.execute_batch(data).unwrap();
    }
    let cs_path = dir.path().join("batch.cs");
    let out = std::process::Command::new("sqldiff")
        .arg("--changeset")
        .arg(&cs_path)
        .arg(&before)
        .arg(&after)
        .output()
        .expect("sqldiff (sqlite3-tools) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read(&cs_path).unwrap();
    assert!(!body.is_empty());

    // Exactly what the curl example in docs/protocol.md sends, over a bare socket.
    let request = [
        format!(
            "POST /v1/databases/notes/push HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/vnd.sqlite-changeset\r\n\
             Sync-Batch-Id: 0123456789abcdef0123456789abcdef\r\nSync-Cursor: 0\r\nSync-Schema-Version: 1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            s.addr,
            body.len()
        )
        .into_bytes(),
        body,
    ]
    .concat();
    let (status, json) = raw_request(s.addr, &request).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "applied");
    assert_eq!(json["seq"], 1);
    let server = Connection::open(s.db_path("notes")).unwrap();
    assert_eq!(
        rows(&server, "SELECT * FROM notes"),
        vec!["Integer(1)|Text(\"from sqldiff\")|Text(\"body\")|Integer(7)"]
    );
    let copy = dir.path().join("copy.db");
    copy_db(&s.db_path("notes"), &copy);
    assert_eq!(sqldiff_app_tables(&after, &copy), "");
    // The log carries it to other devices.
    let page = s.pull(&token, "notes", 0).await;
    assert_eq!(page.entries.len(), 1);
    let replayed = Local::new();
    replayed.apply_effect(&page.entries[0].effect);
    assert_eq!(
        replayed.rows("SELECT * FROM note_tags"),
        vec!["Integer(1)|Integer(3)"]
    );
    s.stop().await;
}
