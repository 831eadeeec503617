//! Two devices edit concurrently from the same base; the server merges per table policy, and
//! the log reproduces the merged state.

use crate::common::*;
use reqwest::StatusCode;
use sync_core::engine::policy::Policy;

const BASE: &str = "INSERT INTO notes VALUES (1, 'title', 'body', 100);
                    INSERT INTO tags VALUES (1, 'x');";

/// A server with `policy` on `table`, a database holding [`BASE`] at seq 1, and two devices'
/// tokens with local copies of it.
async fn two_devices(table: &str, policy: &str) -> (TestServer, String, String) {
    let p = Policy::parse(policy).unwrap();
    let table = table.to_string();
    let s = TestServer::start_with(move |c| {
        c.policies.tables.insert(table, p);
    })
    .await;
    let a = s.setup("alice", "shared");
    let b = s.token("alice", "phone");
    let cs = Local::new().change(BASE);
    s.push_ok(&a, "shared", "base", 0, &cs).await;
    (s, a, b)
}

/// After the pushes, a copy rebuilt from the log equals the server's rows.
async fn assert_log_reproduces(s: &TestServer, token: &str) -> Vec<String> {
    let copy = s.local_copy(token, "shared").await;
    let server = rusqlite::Connection::open(s.db_path("shared")).unwrap();
    for q in [
        "SELECT * FROM notes ORDER BY id",
        "SELECT * FROM tags ORDER BY id",
    ] {
        assert_eq!(copy.rows(q), rows(&server, q), "{q}");
    }
    copy.rows("SELECT id, title, body, updated_at FROM notes ORDER BY id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_push_wins_merges_edits_to_different_columns_of_one_row() {
    let (s, a, b) = two_devices("notes", "last-push-wins").await;
    let da = s.local_copy(&a, "shared").await;
    let db = s.local_copy(&b, "shared").await;
    let ca = da.change("UPDATE notes SET title = 'from A' WHERE id = 1");
    let cb = db.change("UPDATE notes SET body = 'from B' WHERE id = 1");
    let ra = s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let rb = s.push_ok(&b, "shared", "b1", 1, &cb).await;
    assert!(ra.clean);
    assert!(
        rb.transactions[0].conflicts.is_empty() && !rb.clean,
        "no conflict, but interleaved"
    );
    let notes = assert_log_reproduces(&s, &a).await;
    assert_eq!(
        notes,
        vec!["Integer(1)|Text(\"from A\")|Text(\"from B\")|Integer(100)"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_push_wins_on_the_same_column_and_the_conflict_is_recorded() {
    let (s, a, b) = two_devices("notes", "last-push-wins").await;
    let ca = s
        .local_copy(&a, "shared")
        .await
        .change("UPDATE notes SET title = 'A' WHERE id = 1");
    let cb = s
        .local_copy(&b, "shared")
        .await
        .change("UPDATE notes SET title = 'B' WHERE id = 1");
    s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let rb = s.push_ok(&b, "shared", "b1", 1, &cb).await;
    assert_eq!(rb.transactions[0].conflicts.len(), 1);
    let c = serde_json::to_value(&rb.transactions[0].conflicts[0]).unwrap();
    assert_eq!(
        (
            c["kind"].as_str(),
            c["resolution"].as_str(),
            c["table"].as_str()
        ),
        (Some("DATA"), Some("replace"), Some("notes"))
    );
    let notes = assert_log_reproduces(&s, &a).await;
    assert!(notes[0].contains("Text(\"B\")"), "{notes:?}");

    let r = s
        .http
        .get(s.url("shared", "/conflicts?after=0"))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    let (status, page) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    let records = page["conflicts"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["batch_id"], "b1");
    assert_eq!(records[0]["device"], "phone");
    assert_eq!(records[0]["seq"], 3);
    assert_eq!(page["more"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_write_wins_keeps_the_first_push() {
    let (s, a, b) = two_devices("tags", "first-write-wins").await;
    let ca = s
        .local_copy(&a, "shared")
        .await
        .change("UPDATE tags SET name = 'first' WHERE id = 1");
    let cb = s
        .local_copy(&b, "shared")
        .await
        .change("UPDATE tags SET name = 'second' WHERE id = 1");
    s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let rb = s.push_ok(&b, "shared", "b1", 1, &cb).await;
    let c = serde_json::to_value(&rb.transactions[0].conflicts).unwrap();
    assert_eq!(c[0]["resolution"], "omit");
    assert_log_reproduces(&s, &a).await;
    let copy = s.local_copy(&a, "shared").await;
    assert_eq!(copy.rows("SELECT name FROM tags"), vec!["Text(\"first\")"]);
    // The losing batch still has its (empty) log entry.
    let page = s.pull(&a, "shared", 2).await;
    assert_eq!(page.entries[0].batch_id, "b1");
    assert!(page.entries[0].effect.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_wins_compares_the_timestamp_column() {
    let (s, a, b) = two_devices("notes", "newest-wins:updated_at").await;
    let da = s.local_copy(&a, "shared").await;
    let db = s.local_copy(&b, "shared").await;
    let ca = da.change("UPDATE notes SET title = 'A at 300', updated_at = 300 WHERE id = 1");
    let cb = db.change("UPDATE notes SET title = 'B at 200', updated_at = 200 WHERE id = 1");
    s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let rb = s.push_ok(&b, "shared", "b1", 1, &cb).await;
    assert_eq!(
        serde_json::to_value(&rb.transactions[0].conflicts).unwrap()[0]["resolution"],
        "omit"
    );
    let notes = assert_log_reproduces(&s, &a).await;
    assert!(notes[0].contains("A at 300"), "older push loses: {notes:?}");
    // A newer edit from B (made on top of what it saw) wins.
    let cb2 = db.change("UPDATE notes SET title = 'B at 400', updated_at = 400 WHERE id = 1");
    let rb2 = s.push_ok(&b, "shared", "b2", 1, &cb2).await;
    assert_eq!(
        serde_json::to_value(&rb2.transactions[0].conflicts).unwrap()[0]["resolution"],
        "replace"
    );
    let notes = assert_log_reproduces(&s, &a).await;
    assert!(notes[0].contains("B at 400"), "{notes:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_answers_409_changes_nothing_and_answers_the_same_on_retry() {
    let (s, a, b) = two_devices("notes", "reject").await;
    let ca = s
        .local_copy(&a, "shared")
        .await
        .change("UPDATE notes SET title = 'A' WHERE id = 1");
    let db = s.local_copy(&b, "shared").await;
    let cb =
        db.change("UPDATE notes SET title = 'B' WHERE id = 1; INSERT INTO tags VALUES (2, 'y');");
    s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let before = rows(
        &rusqlite::Connection::open(s.db_path("shared")).unwrap(),
        "SELECT 'note', id, title FROM notes UNION ALL SELECT 'tag', id, name FROM tags ORDER BY 1, 2",
    );
    assert!(!before.is_empty());
    let (status, json) = s.push(&b, "shared", "b1", 1, &cb).await;
    assert_error(status, &json, 409, "push_rejected");
    assert_eq!(json["status"], "rejected");
    assert_eq!(json["transactions"][0]["reason"], "policy");
    assert_eq!(json["seq"], 3);
    assert_eq!(json["duplicate"], false);
    assert_eq!(json["transactions"][0]["conflicts"][0]["kind"], "DATA");
    assert_eq!(
        json["transactions"][0]["conflicts"][0]["resolution"],
        "abort"
    );
    let after = rows(
        &rusqlite::Connection::open(s.db_path("shared")).unwrap(),
        "SELECT 'note', id, title FROM notes UNION ALL SELECT 'tag', id, name FROM tags ORDER BY 1, 2",
    );
    assert_eq!(before, after, "nothing of the rejected batch was applied");
    let (status, again) = s.push(&b, "shared", "b1", 1, &cb).await;
    assert_error(status, &again, 409, "push_rejected");
    assert_eq!(
        (again["seq"].as_i64(), again["duplicate"].as_bool()),
        (Some(3), Some(true))
    );
    let page = s.pull(&a, "shared", 2).await;
    assert_eq!(page.entries.len(), 1);
    assert_eq!(
        page.entries[0].status,
        sync_core::protocol::push::PushStatus::Rejected
    );
    assert_log_reproduces(&s, &a).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_delete_cascades_to_children_another_device_added() {
    let (s, a, b) = two_devices("notes", "last-push-wins").await;
    let ca = s
        .local_copy(&a, "shared")
        .await
        .change("DELETE FROM notes WHERE id = 1");
    let cb = s
        .local_copy(&b, "shared")
        .await
        .change("INSERT INTO note_tags VALUES (1, 1)");
    s.push_ok(&b, "shared", "b1", 1, &cb).await;
    s.push_ok(&a, "shared", "a1", 1, &ca).await;
    let copy = s.local_copy(&a, "shared").await;
    assert!(copy.rows("SELECT * FROM note_tags").is_empty());
    assert_log_reproduces(&s, &a).await;
    // The other order: the child insert now references a missing parent → rejected.
    let cb2 =
        Local::new().change("PRAGMA foreign_keys = OFF; INSERT INTO note_tags VALUES (1, 1);");
    let (status, json) = s.push(&b, "shared", "b2", 3, &cb2).await;
    assert_error(status, &json, 409, "push_rejected");
    assert_eq!(json["transactions"][0]["reason"], "foreign_key");
    s.stop().await;
}

/// A batch is a list of transactions, each applied on its own: one that would leave a
/// foreign-key violation is rejected alone, the healthy ones before and after it apply, the
/// answer lists every outcome, the log holds only what applied, and the stored answer comes
/// back on a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_violating_transaction_is_rejected_alone_in_its_batch() {
    let (s, a, _b) = two_devices("notes", "last-push-wins").await;
    let local = s.local_copy(&a, "shared").await;
    let first = local.change("INSERT INTO notes VALUES (7, 'seven', '', 1)");
    let orphan =
        Local::new().change("PRAGMA foreign_keys = OFF; INSERT INTO note_tags VALUES (42, 1);");
    let last = local.change("UPDATE tags SET name = 'renamed' WHERE id = 1");
    let txs: [(i64, &[u8]); 3] = [(11, &first), (12, &orphan), (13, &last)];
    let (status, json) = s.push_batch(&a, "shared", "mixed", 1, &txs).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "partial");
    assert_eq!(json["clean"], false);
    let outcomes = json["transactions"].as_array().unwrap();
    let ids: Vec<i64> = outcomes.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [11, 12, 13]);
    assert!(outcomes[0].get("reason").is_none());
    assert_eq!(outcomes[1]["reason"], "foreign_key");
    assert_eq!(outcomes[1]["conflicts"][0]["kind"], "FOREIGN_KEY");
    assert!(outcomes[2].get("reason").is_none());
    let server = rusqlite::Connection::open(s.db_path("shared")).unwrap();
    assert_eq!(
        rows(&server, "SELECT id || ':' || title FROM notes ORDER BY id"),
        rows(&server, "SELECT '1:title' UNION ALL SELECT '7:seven'")
    );
    assert_eq!(
        rows(&server, "SELECT name FROM tags"),
        rows(&server, "SELECT 'renamed'")
    );
    assert!(rows(&server, "SELECT * FROM note_tags").is_empty());
    // The log entry carries the applied effects and names the rejected transaction.
    let page = s.pull(&a, "shared", 1).await;
    let entry = &page.entries[0];
    assert_eq!(entry.status, sync_core::protocol::push::PushStatus::Partial);
    assert_eq!(
        entry.rejected,
        [sync_core::protocol::pull::RejectedTx {
            id: 12,
            reason: sync_core::protocol::push::RejectReason::ForeignKey
        }]
    );
    let tables: Vec<String> = entry
        .effect
        .validate()
        .unwrap()
        .tables
        .into_keys()
        .collect();
    assert_eq!(tables, ["notes", "tags"]);
    assert_log_reproduces(&s, &a).await;
    let (status, again) = s.push_batch(&a, "shared", "mixed", 1, &txs).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["transactions"], json["transactions"]);
    s.stop().await;
}

/// A body that is not a valid batch is `400 invalid_batch` and changes nothing; so is a batch
/// whose second transaction does not decode, although its first one would apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_refused_whole_and_changes_nothing() {
    let (s, a, _b) = two_devices("notes", "last-push-wins").await;
    let before = file_fingerprint(&s.db_path("shared"));
    let good = s
        .local_copy(&a, "shared")
        .await
        .change("INSERT INTO notes VALUES (8, 'eight', '', 1)");
    let mut body = sync_core::protocol::batch::encode(&[(1, &good)]);
    body.push(0);
    let (status, json) = s.push_raw_batch(&a, "shared", "bad1", 1, body).await;
    assert_error(status, &json, 400, "invalid_batch");
    let dup = sync_core::protocol::batch::encode(&[(1, &good), (1, &good)]);
    let (status, json) = s.push_raw_batch(&a, "shared", "bad2", 1, dup).await;
    assert_error(status, &json, 400, "invalid_batch");
    let (status, json) = s
        .push_batch(&a, "shared", "bad3", 1, &[(1, &good), (2, b"T\x02garbage")])
        .await;
    assert_error(status, &json, 400, "invalid_changeset");
    assert!(
        json["offset"].as_u64().unwrap() > good.len() as u64,
        "the offset counts from the start of the body: {json}"
    );
    let (status, json) = s
        .push_raw_batch(
            &a,
            "shared",
            "bad4",
            1,
            sync_core::protocol::batch::encode(&[]),
        )
        .await;
    assert_error(status, &json, 400, "invalid_batch");
    assert_eq!(before, file_fingerprint(&s.db_path("shared")));
    s.stop().await;
}
