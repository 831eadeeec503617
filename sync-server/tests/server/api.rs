//! The happy paths of the API: push/pull round trips, idempotency, compression, paging,
//! info, rowid leases, events, health and metrics.

use crate::common::*;
use reqwest::StatusCode;
use std::time::Duration;
use sync_core::protocol::pull as log;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_round_trips_and_reproduces_the_server_rows() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    let cs = device.change(
        "INSERT INTO notes VALUES (1, 'hello', 'world', 100);
         INSERT INTO tags VALUES (7, 'inbox');
         INSERT INTO note_tags VALUES (1, 7);",
    );
    let answer = s.push_ok(&token, "notes", "batch-1", 0, &cs).await;
    assert_eq!(
        (answer.seq, answer.clean, answer.duplicate),
        (1, true, false)
    );
    assert!(answer.transactions[0].conflicts.is_empty());

    let page = s.pull(&token, "notes", 0).await;
    assert_eq!(page.head_seq, 1);
    assert_eq!(page.entries.len(), 1);
    assert!(!page.more);
    let e = &page.entries[0];
    assert_eq!(
        (e.seq, e.origin.as_str(), e.batch_id.as_str()),
        (1, "alice-notes", "batch-1")
    );

    let copy = s.local_copy(&token, "notes").await;
    assert_eq!(
        copy.rows("SELECT * FROM notes"),
        device.rows("SELECT * FROM notes")
    );
    assert_eq!(
        copy.rows("SELECT * FROM note_tags"),
        vec!["Integer(1)|Integer(7)"]
    );

    // The next push from the same cursor position is clean too; one from a stale cursor not.
    let cs2 = device.change("UPDATE notes SET body = 'again' WHERE id = 1");
    let a2 = s.push_ok(&token, "notes", "batch-2", 1, &cs2).await;
    assert!(a2.clean && a2.seq == 2);
    let cs3 = device.change("INSERT INTO tags VALUES (8, 'later')");
    let a3 = s.push_ok(&token, "notes", "batch-3", 1, &cs3).await;
    assert!(!a3.clean && a3.seq == 3, "seq 3 != cursor 1 + 1: not clean");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_logged_once_and_answered_the_same() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    let cs = device.change("INSERT INTO notes VALUES (1, 'once', '', 1)");
    let first = s.push_ok(&token, "notes", "retry-me", 0, &cs).await;
    let before = dump(&s.db_path("notes"));
    let second = s.push_ok(&token, "notes", "retry-me", 0, &cs).await;
    assert!(second.duplicate && !first.duplicate);
    assert_eq!(
        (
            second.seq,
            second.status,
            second.clean,
            &second.transactions[0].conflicts
        ),
        (
            first.seq,
            first.status,
            first.clean,
            &first.transactions[0].conflicts
        )
    );
    // Even a different body under the same batch id changes nothing: the id decides.
    let other = device.change("INSERT INTO notes VALUES (2, 'twice', '', 1)");
    let third = s.push_ok(&token, "notes", "retry-me", 0, &other).await;
    assert!(third.duplicate && third.seq == first.seq);
    assert_eq!(dump(&s.db_path("notes")), before);
    let page = s.pull(&token, "notes", 0).await;
    assert_eq!(page.entries.len(), 1);
    // Another device may use the same batch id: batches are per device.
    let phone = s.token("alice", "phone");
    let a = s.push_ok(&phone, "notes", "retry-me", 1, &other).await;
    assert!(!a.duplicate && a.seq == 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_push_and_zstd_pull() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    let body = "lorem ipsum ".repeat(500);
    let cs = device.change(&format!("INSERT INTO notes VALUES (1, 't', '{body}', 1)"));
    let compressed = zstd::encode_all(&cs[..], 3).unwrap();
    assert!(compressed.len() < cs.len() / 4);
    let r = s
        .http
        .post(s.url("notes", "/push"))
        .bearer_auth(&token)
        .header("content-type", "application/vnd.sqlite-changeset")
        .header("content-encoding", "zstd")
        .header("sync-batch-id", "z1")
        .header("sync-cursor", "0")
        .header("sync-schema-version", "1")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = s
        .http
        .get(s.url("notes", "/pull?since=0"))
        .bearer_auth(&token)
        .header("accept-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "zstd");
    assert_eq!(r.headers()["content-type"], log::MEDIA_TYPE);
    let bytes = r.bytes().await.unwrap();
    let page = log::decode(&zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    assert_eq!(page.entries.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_paging_and_cursor_errors() {
    let s = TestServer::start_with(|c| c.log_keep = 10).await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    for i in 1..=64 {
        let cs = device.change(&format!("INSERT INTO notes VALUES ({i}, 't', '', 1)"));
        s.push_ok(&token, "notes", &format!("b{i}"), i - 1, &cs)
            .await;
    }
    let r = s
        .http
        .get(s.url("notes", ""))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, info) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["database"], "notes");
    assert_eq!(info["schema_version"], 1);
    assert_eq!(info["head_seq"], 64);
    assert_eq!(
        info["oldest_seq"], 54,
        "compacted down to the 10 newest entries"
    );
    assert_eq!(info["access"], "read-write");
    assert_eq!(info["device"], "alice-notes");

    let r = s
        .http
        .get(s.url("notes", "/pull?since=3"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 410, "cursor_too_old");
    assert_eq!(json["oldest_seq"], 54);
    let r = s
        .http
        .get(s.url("notes", "/pull?since=65"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 409, "cursor_ahead");
    assert_eq!(json["head_seq"], 64);
    let r = s
        .http
        .get(s.url("notes", "/pull?since=x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 400, "bad_request");

    let r = s
        .http
        .get(s.url("notes", "/pull?since=54&limit=4"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let page = log::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![55, 56, 57, 58]
    );
    assert!(page.more);
    let r = s
        .http
        .get(s.url("notes", "/pull?since=58&max_bytes=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let page = log::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(page.entries.len(), 1, "one entry even over max_bytes");
    assert!(page.more);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rowid_ranges_are_disjoint_and_above_existing_ids() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let device = Local::new();
    let cs = device.change("INSERT INTO notes VALUES (500, 't', '', 1)");
    s.push_ok(&token, "notes", "b", 0, &cs).await;
    let lease = |size: i64| {
        let s = &s;
        let token = token.clone();
        async move {
            let r = s
                .http
                .post(s.url("notes", "/rowid-ranges"))
                .bearer_auth(token)
                .body(serde_json::json!({"v": 1, "size": size}).to_string())
                .send()
                .await
                .unwrap();
            json_of(r).await
        }
    };
    let (status, a) = lease(100).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (a["start"].as_i64(), a["end"].as_i64()),
        (Some(501), Some(601))
    );
    let (_, b) = lease(10).await;
    assert_eq!(b["start"], 601);
    // Bad requests are refused and lease nothing: the next range starts where b ended.
    for size in [0, -5, 1_048_577] {
        let (status, json) = lease(size).await;
        assert_error(status, &json, 400, "bad_request");
    }
    let r = s
        .http
        .post(s.url("notes", "/rowid-ranges"))
        .bearer_auth(&token)
        .body("{\"v\": 1, \"size\": ")
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 400, "bad_request");
    let (_, c) = lease(5).await;
    assert_eq!(
        (c["start"].as_i64(), c["end"].as_i64()),
        (Some(611), Some(616))
    );
    s.stop().await;
}

/// Reads SSE frames until one carries `head_seq == want`.
pub(crate) async fn next_head(response: &mut reqwest::Response, buf: &mut String, want: i64) {
    let needle = format!("event: head\ndata: {{\"v\":1,\"head_seq\":{want}}}");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.contains(&needle) {
            let chunk = response.chunk().await.unwrap().expect("stream ended");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no head {want} event; got {buf:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_announce_the_head_on_connect_and_after_each_push() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let r = s
        .http
        .get(s.url("notes", "/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut r = r;
    let mut buf = String::new();
    next_head(&mut r, &mut buf, 0).await;
    let device = Local::new();
    let cs = device.change("INSERT INTO notes VALUES (1, 't', '', 1)");
    s.push_ok(&token, "notes", "b1", 0, &cs).await;
    next_head(&mut r, &mut buf, 1).await;
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sync_event_streams 1"), "{metrics}");
    // Shutdown ends the stream (and does not wait for the client to hang up).
    let stop = tokio::spawn(s.stop());
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = r.chunk().await {}
    })
    .await
    .expect("the event stream ends at shutdown");
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let r = s
        .http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok");
    let device = Local::new();
    let cs =
        device.change("INSERT INTO notes VALUES (1, 't', '', 1); INSERT INTO tags VALUES (1, 'a')");
    s.push_ok(&token, "notes", "b1", 0, &cs).await;
    s.push_ok(&token, "notes", "b1", 0, &cs).await;
    let (status, _) = s.push(&token, "notes", "b2", 0, b"garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.pull(&token, "notes", 0).await;
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for line in [
        "sync_pushes_total{result=\"applied\"} 1",
        "sync_pushes_total{result=\"duplicate\"} 1",
        "sync_changes_applied_total 2",
        "sync_conflicts_total{kind=\"DATA\"} 0",
        "sync_errors_total{code=\"invalid_changeset\"} 1",
        "sync_open_databases 1",
        "sync_http_request_duration_seconds_count{route=\"/v1/databases/{db}/push\"} 3",
        "sync_http_responses_total{route=\"/v1/databases/{db}/push\",class=\"4xx\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("sync_push_bytes_total "));
    assert!(
        !text.contains("sync_response_bytes_total 0\n"),
        "pull bytes counted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_failures_answer_500_without_details() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    // A damaged database file: opening it fails inside SQLite.
    std::fs::write(
        s.db_path("notes"),
        b"this is not an SQLite database, just bytes....",
    )
    .unwrap();
    let r = s
        .http
        .get(s.url("notes", ""))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    if s.data().store().is_some() {
        // With a PostgreSQL store the file is only a cache: one the store does not know is
        // replaced by the store's copy.
        assert_eq!(status, 200, "{json}");
        s.stop().await;
        return;
    }
    assert_error(status, &json, 500, "internal");
    assert_eq!(json["message"], "internal error", "no internals: {json}");
    assert_eq!(
        json.as_object().unwrap().len(),
        3,
        "v, code, message only: {json}"
    );
    s.stop().await;
}
