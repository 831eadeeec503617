//! Unit tests of the server steps against in-memory and on-disk databases.

use super::pull::{compact, pull, pull_into};
use super::push::{PushBody, PushConfig, PushTarget, push};
use super::rowid::lease_rowids;
use super::snapshot::snapshot;
use super::*;
use crate::engine::capture::capture;
use crate::engine::changeset::Changeset;
use crate::engine::outbox;
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::schema::ShapeCache;
use crate::engine::spool::{self, Spool};
use crate::protocol::error::ErrorCode;
use crate::protocol::pull as log;
use crate::protocol::pull::PullQuery;
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus, RejectReason};
use std::io::Write;

const SCHEMA: &str = "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT);";

fn server_db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    install(&conn, 1).unwrap();
    conn
}

fn client_change(sql: &str) -> Changeset {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    conn.execute_batch("INSERT INTO notes VALUES (1, 'a', 'b')")
        .unwrap();
    outbox::install(&conn).unwrap();
    capture(&conn, |c| c.execute_batch(sql)).unwrap().changeset
}

fn headers(batch: &str, cursor: i64) -> PushHeaders {
    PushHeaders {
        batch_id: batch.into(),
        cursor,
        schema_version: 1,
        lineage: None,
        chain: None,
    }
}

/// `push` with a fresh shape cache (a database the server has just opened).
fn push_to(
    db: &Connection,
    device: &str,
    headers: &PushHeaders,
    changeset: &Changeset,
    config: &PushConfig,
    now_ms: i64,
) -> Result<PushResponse, ServerError> {
    let shapes = ShapeCache::new();
    let target = PushTarget {
        conn: db,
        shapes: &shapes,
        scratch: None,
    };
    push(
        target,
        device,
        headers,
        PushBody::Changeset(changeset.as_bytes().into()),
        config,
        now_ms,
    )
}

fn config(p: Policy) -> PushConfig {
    PushConfig {
        policies: PolicySet::uniform(p),
    }
}

#[test]
fn a_log_with_the_effect_before_at_ms_is_rewritten_with_the_effect_last_and_keeps_its_rows() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    conn.execute_batch(
        "CREATE TABLE _sync_log (
             seq INTEGER PRIMARY KEY, device TEXT NOT NULL, batch_id TEXT NOT NULL,
             status INTEGER NOT NULL, effect BLOB NOT NULL, at_ms INTEGER NOT NULL);
         INSERT INTO _sync_log VALUES (1, 'd', 'b1', 0, x'0102', 10), (2, 'e', 'b2', 1, x'', 20);",
    )
    .unwrap();
    install(&conn, 1).unwrap();
    install(&conn, 1).unwrap(); // idempotent
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_sync_log') ORDER BY cid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        columns,
        ["seq", "device", "batch_id", "status", "at_ms", "effect"]
    );
    let rows: Vec<(i64, String, String, i64, i64, Vec<u8>)> = conn
        .prepare("SELECT seq, device, batch_id, status, at_ms, effect FROM _sync_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            (1, "d".into(), "b1".into(), 0, 10, vec![1, 2]),
            (2, "e".into(), "b2".into(), 1, 20, vec![])
        ]
    );
}

#[test]
fn push_logs_effect_and_retry_is_idempotent() {
    let db = server_db();
    let cs = client_change("INSERT INTO notes VALUES (2, 'x', 'y')");
    let cfg = config(Policy::Replace);
    let first = push_to(&db, "d1", &headers("b1", 0), &cs, &cfg, 1).unwrap();
    assert_eq!(first.seq, 1);
    assert!(first.clean && !first.duplicate);
    let again = push_to(&db, "d1", &headers("b1", 0), &Changeset::default(), &cfg, 2).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, 1);
    let page = pull(&db, 0, 100, 1 << 20).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].effect, cs);
    assert_eq!(page.head_seq, 1);
    // Same batch id from another device is a different batch.
    let other = push_to(
        &db,
        "d2",
        &headers("b1", 1),
        &client_change("DELETE FROM notes WHERE id = 1"),
        &cfg,
        3,
    )
    .unwrap();
    assert_eq!(other.seq, 2);
}

#[test]
fn a_push_from_a_file_logs_a_large_effect_through_a_spool_and_pulls_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = server_db();
    // ~2.3 MB of inserts: above the spool threshold, so body and effect go through files.
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    outbox::install(&conn).unwrap();
    let body = "x".repeat(200);
    let cs = capture(&conn, |c| {
        for i in 0..10_000 {
            c.execute(
                "INSERT INTO notes VALUES (?1, 't', ?2)",
                params![i + 10, body],
            )?;
        }
        Ok::<_, rusqlite::Error>(())
    })
    .unwrap()
    .changeset;
    assert!(cs.len() > 2 * spool::DEFAULT_THRESHOLD);
    let mut spooled = Spool::new(dir.path(), 4096);
    spooled.write_all(cs.as_bytes()).unwrap();
    let spooled = spooled.finish().unwrap();
    assert!(spooled.as_bytes().is_none());
    let shapes = ShapeCache::new();
    let target = PushTarget {
        conn: &db,
        shapes: &shapes,
        scratch: Some(dir.path()),
    };
    let r = push(
        target,
        "d",
        &headers("big", 0),
        PushBody::Changeset(spooled.source()),
        &config(Policy::Replace),
        1,
    )
    .unwrap();
    assert_eq!((r.seq, r.status), (1, PushStatus::Applied));
    let n: i64 = db
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 10_000);
    let mut page = Spool::new(dir.path(), 4096);
    let info = pull_into(&db, &PullQuery::after(0, 10, 1 << 30), &mut page).unwrap();
    assert_eq!((info.entries, info.more), (1, false));
    let page = log::decode(&page.finish().unwrap().into_bytes().unwrap()).unwrap();
    let effect = &page.entries[0].effect;
    assert_eq!(effect.len(), cs.len());
    assert_eq!(effect.validate().unwrap(), cs.validate().unwrap());
    // Nothing left behind in the scratch directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_input_changes_nothing_and_records_nothing() {
    let db = server_db();
    let cfg = config(Policy::Replace);
    let err = push_to(
        &db,
        "d",
        &headers("b", 0),
        &Changeset::from_bytes(vec![b'T', 1]),
        &cfg,
        1,
    )
    .unwrap_err();
    assert_eq!(err.to_body().code, ErrorCode::InvalidChangeset);
    let mut h = headers("b", 0);
    h.schema_version = 2;
    let err = push_to(&db, "d", &h, &client_change("DELETE FROM notes"), &cfg, 1).unwrap_err();
    assert_eq!(err.to_body().code, ErrorCode::SchemaMismatch);
    assert_eq!(bounds(&db).unwrap().head_seq, 0);
    let n: i64 = db
        .query_row("SELECT count(*) FROM _sync_batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn rejected_batch_is_logged_empty_and_answers_the_same_on_retry() {
    let db = server_db();
    db.execute_batch("INSERT INTO notes VALUES (1, 'server', 'b')")
        .unwrap();
    let cfg = config(Policy::Abort);
    let cs = client_change("UPDATE notes SET title = 'client' WHERE id = 1");
    let r = push_to(&db, "d", &headers("b", 0), &cs, &cfg, 1).unwrap();
    assert_eq!(r.status, PushStatus::Rejected);
    assert_eq!(r.transactions[0].reason, Some(RejectReason::Policy));
    let title: String = db
        .query_row("SELECT title FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(title, "server");
    let again = push_to(&db, "d", &headers("b", 0), &cs, &cfg, 2).unwrap();
    assert_eq!(
        (again.seq, again.status, again.duplicate),
        (1, PushStatus::Rejected, true)
    );
    let page = pull(&db, 0, 10, 1 << 20).unwrap();
    assert!(page.entries[0].effect.is_empty());
    assert_eq!(page.entries[0].status, PushStatus::Rejected);
}

#[test]
fn pull_pages_and_cursor_errors() {
    let db = server_db();
    let cfg = config(Policy::Replace);
    for i in 0..5 {
        let cs = client_change(&format!("INSERT INTO notes VALUES ({}, 't', 'b')", 10 + i));
        push_to(&db, "d", &headers(&format!("b{i}"), i), &cs, &cfg, 1).unwrap();
    }
    let page = pull(&db, 0, 2, 1 << 20).unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(page.more);
    let page = pull(&db, 2, 100, 1).unwrap();
    assert_eq!(page.entries.len(), 1, "byte limit still returns one entry");
    assert!(page.more);
    assert!(matches!(
        pull(&db, 6, 10, 100),
        Err(ServerError::CursorAhead { head: 5, .. })
    ));
    assert_eq!(compact(&db, 2).unwrap(), 3);
    assert!(matches!(
        pull(&db, 2, 10, 100),
        Err(ServerError::CursorTooOld { oldest: 3, .. })
    ));
    assert_eq!(pull(&db, 3, 10, 1 << 20).unwrap().entries.len(), 2);
}

#[test]
fn leases_are_disjoint_and_above_existing_ids() {
    let db = server_db();
    db.execute_batch("INSERT INTO notes VALUES (500, 'a', 'b')")
        .unwrap();
    let a = lease_rowids(&db, "d1", 100, 0).unwrap();
    let b = lease_rowids(&db, "d2", 100, 0).unwrap();
    assert_eq!((a.start, a.end), (501, 601));
    assert_eq!((b.start, b.end), (601, 701));
    assert!(lease_rowids(&db, "d1", 0, 0).is_err());
}

#[test]
fn snapshot_holds_app_tables_and_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let db = Connection::open(dir.path().join("server.db")).unwrap();
    db.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    db.execute_batch(SCHEMA).unwrap();
    install(&db, 1).unwrap();
    let cfg = config(Policy::Replace);
    push_to(
        &db,
        "d",
        &headers("b", 0),
        &client_change("INSERT INTO notes VALUES (3, 't', 'b')"),
        &cfg,
        1,
    )
    .unwrap();
    let path = dir.path().join("snap.db");
    let meta = snapshot(&db, &path).unwrap();
    assert_eq!((meta.seq, meta.schema_version), (1, 1));
    assert_eq!(Some(meta.tip), super::lineage::at(&db, 1).unwrap());
    let snap = Connection::open(&path).unwrap();
    let n: i64 = snap
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let seq: i64 = snap
        .query_row(
            "SELECT value FROM _sync_snapshot WHERE key='seq'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 1);
    let internal: i64 = snap
        .query_row("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_sync\\_%' ESCAPE '\\' AND name != '_sync_snapshot'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(internal, 0);
    let mode: String = snap
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_ne!(mode, "wal", "a snapshot is a single self-contained file");
    drop(snap);
    let ro =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = ro
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
