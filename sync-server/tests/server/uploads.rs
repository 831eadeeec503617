//! Large transactions over HTTP: a batch uploaded in parts and pushed by name, and a large
//! effect fetched in ranges. Every refusal changes nothing.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value as Json;
use sync_core::protocol::upload::HEADER_EFFECT_LENGTH;

/// A batch body of one transaction inserting `rows` notes (a few hundred bytes each).
pub(crate) fn big_batch(s_local: &Local, rows: usize) -> Vec<u8> {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO notes(id, title, body, updated_at)
         SELECT 1000 + i, 'big', hex(randomblob(100)), i FROM n;"
    );
    let cs = s_local.change(&sql);
    sync_core::protocol::batch::encode(&[(1, &cs)])
}

async fn put(
    s: &TestServer,
    token: &str,
    batch: &str,
    offset: u64,
    total: u64,
    part: &[u8],
) -> (StatusCode, Json) {
    put_in(s, "notes", token, batch, offset, total, part).await
}

/// `PUT …/{db}/uploads/{batch}?offset=…&total=…` with `part` as the body.
pub(crate) async fn put_in(
    s: &TestServer,
    db: &str,
    token: &str,
    batch: &str,
    offset: u64,
    total: u64,
    part: &[u8],
) -> (StatusCode, Json) {
    let r = s
        .http
        .put(s.url(
            db,
            &format!("/uploads/{batch}?offset={offset}&total={total}"),
        ))
        .bearer_auth(token)
        .body(part.to_vec())
        .send()
        .await
        .unwrap();
    json_of(r).await
}

async fn status(s: &TestServer, token: &str, batch: &str) -> (StatusCode, Json) {
    status_in(s, "notes", token, batch).await
}

/// `GET …/{db}/uploads/{batch}`.
pub(crate) async fn status_in(
    s: &TestServer,
    db: &str,
    token: &str,
    batch: &str,
) -> (StatusCode, Json) {
    let r = s
        .http
        .get(s.url(db, &format!("/uploads/{batch}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    json_of(r).await
}

async fn push_uploaded(s: &TestServer, token: &str, batch: &str) -> (StatusCode, Json) {
    push_uploaded_in(s, "notes", token, batch).await
}

/// The push by name of the batch uploaded as `batch`.
pub(crate) async fn push_uploaded_in(
    s: &TestServer,
    db: &str,
    token: &str,
    batch: &str,
) -> (StatusCode, Json) {
    let r = s
        .http
        .post(s.url(db, "/push"))
        .bearer_auth(token)
        .header("sync-upload", "1")
        .header("sync-batch-id", batch)
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .send()
        .await
        .unwrap();
    json_of(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_uploaded_in_parts_is_pushed_by_name_once_complete() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let token = s.setup("alice", "notes");
    let body = big_batch(&Local::new(), 1500);
    let total = body.len() as u64;
    assert!(total > 4 * 64 * 1024, "{total}");
    s.pull(&token, "notes", 0).await; // the database opened (and migrated) once
    let before = file_fingerprint(&s.db_path("notes"));

    // Nothing yet; a push by name of an upload that never started is incomplete.
    assert_error_code(status(&s, &token, "big").await, 404, "not_found");
    let (code, json) = push_uploaded(&s, &token, "big").await;
    assert_error(code, &json, 409, "upload_incomplete");

    // Parts of 60 KiB; one retried, overlapping the previous one.
    let part = 60 * 1024;
    let mut offset = 0usize;
    let mut retried = false;
    while offset < body.len() {
        let end = (offset + part).min(body.len());
        let (code, json) = put(&s, &token, "big", offset as u64, total, &body[offset..end]).await;
        assert_eq!(code, StatusCode::OK, "{json}");
        assert_eq!(json["received"], end as u64);
        if !retried && offset > 0 {
            retried = true;
            let back = offset - 1000;
            let (code, json) = put(&s, &token, "big", back as u64, total, &body[back..end]).await;
            assert_eq!(
                (code, json["received"].as_u64()),
                (StatusCode::OK, Some(end as u64))
            );
        }
        offset = end;
        if offset < body.len() {
            // Half-way: the push by name is refused, and changes nothing.
            let (code, json) = push_uploaded(&s, &token, "big").await;
            assert_error(code, &json, 409, "upload_incomplete");
            assert_eq!(json["received"], offset as u64);
            assert_eq!(before, file_fingerprint(&s.db_path("notes")));
        }
    }
    let (code, json) = status(&s, &token, "big").await;
    assert_eq!(
        (code, json["received"].as_u64()),
        (StatusCode::OK, Some(total))
    );
    // With a PostgreSQL store the parts are in the store, not on this node's disk.
    let on_disk = s.data_dir().join("uploads").exists();
    assert_eq!(on_disk, s.data().store().is_none());
    let (code, json) = push_uploaded(&s, &token, "big").await;
    assert_eq!(code, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "applied");
    assert_eq!(json["changes"], 1500);
    // The upload is gone; a retry of the push gets the stored answer.
    assert_error_code(status(&s, &token, "big").await, 404, "not_found");
    let (code, again) = push_uploaded(&s, &token, "big").await;
    assert_eq!(
        (code, again["duplicate"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(again["seq"], json["seq"]);
    let server = rusqlite::Connection::open(s.db_path("notes")).unwrap();
    assert_eq!(
        rows(&server, "SELECT count(*) FROM notes"),
        rows(&server, "SELECT 1500")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parts_are_refused_and_change_nothing() {
    let s = TestServer::start_with(|c| {
        c.max_body_bytes = 64 * 1024;
        c.max_transaction_bytes = 1 << 20;
    })
    .await;
    let token = s.setup("alice", "notes");
    s.pull(&token, "notes", 0).await;
    let reader = s.setup("bob", "bob-db");
    s.catalog(|c| {
        sync_server::catalog::grant(
            c,
            "notes",
            "bob",
            sync_core::protocol::info::Access::ReadOnly,
        )
    });
    let before = file_fingerprint(&s.db_path("notes"));
    let (code, json) = put(&s, &token, "b", 0, 2 << 20, b"abc").await;
    assert_error(code, &json, 413, "payload_too_large");
    let (code, json) = put(&s, &token, "b", 0, 10, b"abc").await;
    assert_eq!(code, StatusCode::OK, "{json}");
    for (offset, total, part, why) in [
        (5u64, 10u64, &b"xy"[..], "a gap"),
        (8, 10, &b"xyz"[..], "past the total"),
        (0, 11, &b"abc"[..], "another total"),
    ] {
        let (code, json) = put(&s, &token, "b", offset, total, part).await;
        assert_error(code, &json, 400, "bad_request");
        assert!(!json["message"].as_str().unwrap().is_empty(), "{why}");
    }
    // A new upload's first part starts at 0; the refusal leaves no upload behind.
    let (code, json) = put(&s, &token, "late", 4, 10, b"abc").await;
    assert_error(code, &json, 400, "bad_request");
    assert_error_code(status(&s, &token, "late").await, 404, "not_found");
    let (code, json) = put(&s, &token, "not a batch id", 0, 10, b"abc").await;
    assert_eq!(code.as_u16(), 400, "{json}");
    let (code, json) = put(&s, &reader, "r", 0, 10, b"abc").await;
    assert_error(code, &json, 403, "read_only");
    // Another user's database looks absent, for uploads as for everything else.
    let r = s
        .http
        .put(s.url("bob-db", "/uploads/x?offset=0&total=3"))
        .bearer_auth(&token)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    let (code, json) = json_of(r).await;
    assert_error(code, &json, 404, "database_not_found");
    let (code, json) = status(&s, &token, "b").await;
    assert_eq!((code, json["received"].as_u64()), (StatusCode::OK, Some(3)));
    assert_eq!(before, file_fingerprint(&s.db_path("notes")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_effect_comes_in_ranges_that_add_up_to_it() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let body = big_batch(&Local::new(), 1500);
    let (code, json) = s.push_raw_batch(&token, "notes", "b1", 0, body).await;
    assert_eq!(code, StatusCode::OK, "{json}");
    // The whole effect inline, with a large page budget…
    let whole = s.pull(&token, "notes", 0).await.entries[0].effect.clone();
    assert!(whole.len() > 200_000);
    // …and a page whose budget it passes: an entry without it.
    let r = s
        .http
        .get(s.url("notes", "/pull?since=0&max_bytes=1000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let page = sync_core::protocol::pull::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(page.entries[0].large, Some(whole.len() as u64));
    assert!(page.entries[0].effect.is_empty());
    let mut got = Vec::new();
    while got.len() < whole.len() {
        let r = s
            .http
            .get(s.url(
                "notes",
                &format!("/log/1/effect?offset={}&len=70000", got.len()),
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[HEADER_EFFECT_LENGTH].to_str().unwrap(),
            whole.len().to_string()
        );
        let bytes = r.bytes().await.unwrap();
        assert!(!bytes.is_empty() && bytes.len() <= 70_000);
        got.extend_from_slice(&bytes);
    }
    assert_eq!(got, whole.as_bytes());
    let r = s
        .http
        .get(s.url("notes", "/log/9/effect?offset=0&len=10"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (code, json) = json_of(r).await;
    assert_error(code, &json, 404, "not_found");
    s.stop().await;
}

pub(crate) fn assert_error_code((code, json): (StatusCode, Json), status: u16, want: &str) {
    assert_error(code, &json, status, want);
}
