//! Background sync: a write on one device shows up on another without anyone calling
//! `sync_now`, driven by the server's events (SSE) — the interval here is far longer than
//! the test's deadline.

use session_sync_tests::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_client::ClientConfig;

#[test]
fn a_write_on_one_device_appears_on_another_without_sync_now() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let config = || ClientConfig {
        sync_interval: Duration::from_secs(3600),
        ..ClientConfig::default()
    };
    let a = server.notes_client(dir.path(), "a.db", &ta, config());
    let b = server.notes_client(dir.path(), "b.db", &tb, config());
    let changed: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&changed);
    b.set_change_listener(Some(Arc::new(move |tables: &[String]| {
        seen.lock().unwrap().extend(tables.iter().cloned());
    })));
    a.start_background().unwrap();
    b.start_background().unwrap();

    let started = Instant::now();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'from a', 1)",
    );
    wait_until(Duration::from_secs(10), "b sees a's note", || {
        query_i64(&b, "SELECT count(*) FROM notes") == 1
    });
    let latency = started.elapsed();
    // The listener runs right after the commit that made the row visible: wait for it too.
    wait_until(
        Duration::from_secs(10),
        "b's listener hears of notes",
        || changed.lock().unwrap().contains(&"notes".to_string()),
    );

    // And back, to an edit of the same row.
    exec(&b, "UPDATE notes SET title = 'edited on b' WHERE id = 1");
    wait_until(Duration::from_secs(10), "a sees b's edit", || {
        query_text(&a, "SELECT title FROM notes WHERE id = 1").as_deref() == Some("edited on b")
    });
    wait_until(Duration::from_secs(10), "both settle", || {
        [&a, &b].iter().all(|c| {
            let s = c.status().unwrap();
            s.pending_changesets == 0 && s.inflight_batch.is_none()
        }) && a.status().unwrap().cursor == b.status().unwrap().cursor
    });
    eprintln!("write on a visible on b after {latency:?}");
    a.close();
    b.close();
    assert_all_equal(&[
        &server.db_path("notes"),
        &dir.path().join("a.db"),
        &dir.path().join("b.db"),
    ]);
}
