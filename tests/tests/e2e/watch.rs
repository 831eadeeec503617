//! Apps that react: a watched query hears of a local write and of another device's write
//! (one sync), and not of writes to tables it does not read; the status subscription shows a
//! push in progress and what is pending; the async calls never block the executor thread.

use futures_util::StreamExt;
use rusqlite::types::Value;
use session_sync_tests::*;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_client::{ClientConfig, ErrorKind, ProgressUnit, Rows, SyncPhase, SyncStatus};

const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

fn titles(rows: &Rows) -> Vec<String> {
    rows.rows
        .iter()
        .map(|r| match &r[1] {
            Value::Text(t) => t.clone(),
            other => panic!("title is {other:?}"),
        })
        .collect()
}

fn next(rx: &Receiver<sync_client::Result<Rows>>, what: &str) -> Rows {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("no delivery: {what}"))
        .unwrap_or_else(|e| panic!("delivery failed ({what}): {e}"))
}

fn assert_quiet(rx: &Receiver<sync_client::Result<Rows>>, what: &str) {
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("{what}: unexpected delivery {other:?}"),
    }
}

#[test]
fn a_watched_query_sees_local_and_remote_writes_and_not_unrelated_ones() {
    let server = Server::start();
    let pair = server.pair();
    let (a, b) = (&pair.a, &pair.b);
    let (tx, rx) = channel();
    // The table named in another letter case than its schema: SQLite's names, SQLite's rules.
    let sub = b
        .watch(
            "SELECT id, title FROM \"NOTES\" WHERE updated_at >= ?1 ORDER BY id",
            vec![Value::Integer(0)],
            move |rows| {
                let _ = tx.send(rows);
            },
        )
        .unwrap();
    let first = next(&rx, "the current rows");
    assert_eq!(first.columns, ["id", "title"]);
    assert!(first.rows.is_empty());

    exec(
        b,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'local', 1)",
    );
    assert_eq!(titles(&next(&rx, "b's own write")), ["local"]);

    // Another device's write arrives with b's next sync: one sync, one delivery.
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'remote', 1)",
    );
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    let rows = next(&rx, "a's write after b's sync");
    assert_eq!(titles(&rows), ["local", "remote"]);

    // Writes that touch no table the query reads, locally or from a, never re-run it (not
    // only deliver nothing new: the row mapper counts the runs).
    assert_quiet(&rx, "after the sync settled");
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let (mtx, mrx) = channel();
    let _mapped = b
        .watch_map(
            "SELECT n.title FROM notes n WHERE n.id = 2",
            vec![],
            move |r| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r.get::<_, String>(0)
            },
            move |titles| {
                let _ = mtx.send(titles);
            },
        )
        .unwrap();
    assert_eq!(mrx.recv_timeout(WAIT).unwrap().unwrap(), ["remote"]);
    let before = runs.load(std::sync::atomic::Ordering::SeqCst);
    exec(b, "INSERT INTO tags(id, name) VALUES (1, 'b-tag')");
    exec(a, "INSERT INTO tags(id, name) VALUES (2, 'a-tag')");
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(query_i64(b, "SELECT count(*) FROM tags"), 2);
    assert_quiet(&rx, "writes to tags only");
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "a write to tags re-ran a query of notes"
    );
    // The same mapper does run for a write to notes (so the count above could fail).
    exec(b, "UPDATE notes SET updated_at = 5 WHERE id = 2");
    wait_until(WAIT, "the mapped query re-ran", || {
        runs.load(std::sync::atomic::Ordering::SeqCst) > before
    });

    // A read that extracts no column still names its table.
    let (ctx, crx) = channel();
    let _count = b
        .watch("SELECT count(*) FROM notes", vec![], move |rows| {
            let _ = ctx.send(rows);
        })
        .unwrap();
    assert_eq!(next(&crx, "count now").rows, [[Value::Integer(2)]]);
    exec(b, "DELETE FROM notes WHERE id = 1");
    assert_eq!(
        next(&crx, "count after a delete").rows,
        [[Value::Integer(1)]]
    );
    assert_eq!(titles(&next(&rx, "the delete")), ["remote"]);

    // Cancelled: nothing more, even for writes it would have seen.
    sub.cancel();
    exec(
        b,
        "INSERT INTO notes(id, title, updated_at) VALUES (3, 'unseen', 1)",
    );
    assert!(
        rx.recv_timeout(QUIET).is_err(),
        "a cancelled watch delivered"
    );
}

#[test]
fn a_watch_that_cannot_run_is_refused_at_once() {
    let server = Server::start();
    let pair = server.pair();
    let refused = |sql: &str, params: Vec<Value>| {
        pair.a
            .watch(sql, params, |_| panic!("delivered"))
            .expect_err(sql)
            .kind()
    };
    assert_eq!(
        refused("SELECT nope FROM notes", vec![]),
        ErrorKind::InvalidSql
    );
    assert_eq!(
        refused("DELETE FROM notes", vec![]),
        ErrorKind::InvalidSql,
        "a watch never writes"
    );
    assert_eq!(
        refused("SELECT * FROM notes WHERE id = ?1", vec![]),
        ErrorKind::InvalidSql
    );
    assert_eq!(query_i64(&pair.a, "SELECT count(*) FROM notes"), 0);
}

#[test]
fn the_status_subscription_shows_a_push_in_progress_then_idle_with_nothing_pending() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    // Small batches: a push of many transactions takes many requests.
    let config = ClientConfig {
        push_max_bytes: 512,
        ..ClientConfig::default()
    };
    let a = server.notes_client(dir.path(), "a.db", &token, config);
    let seen: Arc<Mutex<Vec<SyncStatus>>> = Arc::default();
    let log = Arc::clone(&seen);
    let _sub = a
        .watch_status(move |s| log.lock().unwrap().push(s.clone()))
        .unwrap();
    wait_until(WAIT, "the first status", || {
        !seen.lock().unwrap().is_empty()
    });
    for i in 0..300 {
        exec(
            &a,
            &format!("INSERT INTO notes(id, title, updated_at) VALUES ({i}, 'n{i}', {i})"),
        );
    }
    wait_until(WAIT, "300 pending", || {
        seen.lock()
            .unwrap()
            .last()
            .is_some_and(|s| s.pending_transactions == 300 && s.phase == SyncPhase::Idle)
    });
    a.sync_now().unwrap();
    wait_until(WAIT, "idle with nothing pending", || {
        seen.lock().unwrap().last().is_some_and(|s| {
            s.phase == SyncPhase::Idle && s.pending_transactions == 0 && s.online == Some(true)
        })
    });
    let seen = seen.lock().unwrap();
    let pushing: Vec<_> = seen
        .iter()
        .filter(|s| s.phase == SyncPhase::Pushing)
        .collect();
    assert!(!pushing.is_empty(), "no push seen in progress: {seen:#?}");
    let midway = pushing.iter().filter_map(|s| s.progress).find(|p| {
        p.unit == ProgressUnit::Transactions && p.done > 0 && p.total.is_some_and(|t| p.done < t)
    });
    assert!(midway.is_some(), "no progress seen midway: {pushing:#?}");
    let last = seen.last().unwrap();
    assert!(last.last_sync_ms.is_some() && last.last_error.is_none());
    assert_eq!(last.cursor, a.status().unwrap().cursor);
}

#[test]
fn the_async_calls_leave_the_executor_thread_free() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let remote = server.remote(&token, "notes");
    let path = dir.path().join("a.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let config = ClientConfig {
            push_max_bytes: 512,
            ..ClientConfig::default()
        };
        let a = sync_client::SyncClient::init_async(&path, remote, config)
            .await
            .unwrap();
        let mut rows = a
            .watch_stream("SELECT count(*) FROM notes", vec![])
            .unwrap();
        let count = |r: Option<sync_client::Result<Rows>>| match &r.unwrap().unwrap().rows[0][0] {
            Value::Integer(n) => *n,
            v => panic!("{v:?}"),
        };
        assert_eq!(count(rows.next().await), 0);
        for i in 0..200 {
            a.write_async(move |c| {
                c.execute(
                    "INSERT INTO notes(id, title, updated_at) VALUES (?1, 't', 0)",
                    [i],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        }
        // Only the latest count waits: some deliveries were skipped, none is stale at the end.
        let mut last = 0;
        while last < 200 {
            last = count(rows.next().await);
        }
        // The one executor thread keeps ticking while the sync runs.
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let report = a.sync_now_async().await.unwrap();
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed);
        ticker.abort();
        assert_eq!(report.pushed_transactions, 200);
        assert!(
            during >= 5,
            "the executor was blocked during the sync ({during} ticks)"
        );
        let n = a
            .read_async(|c| {
                Ok(c.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(n, 200);
        let mut status = a.status_stream().unwrap();
        let s = status.next().await.unwrap();
        assert_eq!((s.pending_transactions, s.phase), (0, SyncPhase::Idle));
        a.close();
        assert!(
            status.next().await.is_none(),
            "the stream ends with the client"
        );
        eprintln!("executor ticks during an async sync of 200 transactions: {during}");
    });
}
