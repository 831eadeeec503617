//! The client commands — `init`, `exec`, `query`, `sync`, `status`, `search` — run as a user
//! would: the built binary on real files, against a real server in this process.

use crate::common::{Scratch, query_value, sqlite3, sync_cli};
use crate::server::Server;
use rusqlite::types::Value as SqlValue;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const NOTES: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL DEFAULT '', updated_at INTEGER NOT NULL DEFAULT 0);";

/// A local-only database with the notes table (as an app would have before syncing).
fn local_db(scratch: &Scratch) -> std::path::PathBuf {
    let db = scratch.path("app.db");
    sqlite3(&db, NOTES).expect(0);
    db
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sync-cli init DB` against `server` as `device`.
fn init(server: &Server, db: &Path, device: &str, extra: &[&str]) {
    let token = server.token(device);
    let mut args = vec![
        "init",
        s(db),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ];
    args.extend(extra);
    let run = sync_cli(&args).expect(0);
    assert!(run.stdout.starts_with("initialized "), "{}", run.stdout);
}

#[test]
fn exec_and_query_work_offline_with_typed_parameters() {
    let scratch = Scratch::new();
    let db = local_db(&scratch);
    let run = sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, ?4)",
        "1",
        "text:007",
        "blob:00ff",
        "-5",
    ])
    .expect(0);
    assert_eq!(run.stdout, "1 row changed\n");
    assert_eq!(
        query_value(&db, "SELECT title FROM notes"),
        SqlValue::Text("007".into())
    );
    assert_eq!(
        query_value(&db, "SELECT body FROM notes"),
        SqlValue::Blob(vec![0, 255])
    );
    assert_eq!(
        query_value(&db, "SELECT updated_at FROM notes"),
        SqlValue::Integer(-5)
    );

    // Several statements: one transaction, rows changed by the statements themselves.
    let run = sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title) VALUES (2, 'two'), (3, 'three'); UPDATE notes SET body = 'x' WHERE id > 1",
    ])
    .expect(0);
    assert_eq!(run.stdout, "4 rows changed\n");

    let run = sync_cli([
        "query",
        s(&db),
        "SELECT id, title, body FROM notes WHERE id >= ?1 ORDER BY id",
        "2",
    ])
    .expect(0);
    assert_eq!(
        run.lines(),
        ["id|title|body", "2|'two'|'x'", "3|'three'|'x'"]
    );
    let run = sync_cli([
        "query",
        s(&db),
        "SELECT id, NULL AS n, 1.5 AS r, id FROM notes WHERE id = 1",
        "--format",
        "json",
    ])
    .expect(0);
    let row: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        row,
        serde_json::json!({
            "id": {"type": "integer", "value": 1},
            "n": {"type": "null"},
            "r": {"type": "real", "value": 1.5},
            "id:4": {"type": "integer", "value": 1},
        })
    );

    // Both writes wait in the outbox for a server.
    let run = sync_cli(["status", s(&db), "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(status["pending_changesets"], 2);
    assert_eq!(status["server"], serde_json::Value::Null);
    let run = sync_cli(["status", s(&db)]).expect(0);
    assert!(
        run.stdout.contains("pending:          2 changesets"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("none (local only)"), "{}", run.stdout);
}

#[test]
fn query_refuses_writes_and_exec_refuses_reads() {
    let scratch = Scratch::new();
    let db = local_db(&scratch);
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title) VALUES (1, 'keep')",
    ])
    .expect(0);
    let run = sync_cli(["query", s(&db), "DELETE FROM notes"]).expect(2);
    assert!(
        run.stderr.starts_with("sync-cli: error: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("use `sync-cli exec`"), "{}", run.stderr);
    let run = sync_cli(["query", s(&db), "SELECT 1; SELECT 2"]).expect(2);
    assert!(run.stderr.contains("exactly one"), "{}", run.stderr);
    let run = sync_cli(["exec", s(&db), "SELECT * FROM notes"]).expect(2);
    assert!(run.stderr.contains("sync-cli query"), "{}", run.stderr);
    // A failing statement rolls the whole exec back.
    let run = sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title) VALUES (2, 'two'); INSERT INTO notes(id, title) VALUES (1, 'dup')",
    ])
    .expect(2);
    assert!(run.stderr.contains("UNIQUE"), "{}", run.stderr);
    assert_eq!(
        query_value(&db, "SELECT count(*) FROM notes"),
        SqlValue::Integer(1)
    );
    let run = sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title) VALUES (?1, ?2)",
        "5",
    ])
    .expect(2);
    assert!(run.stderr.contains("parameter"), "{}", run.stderr);
    let run = sync_cli(["exec", s(&db), "SELECT 1", "blob:xyz"]).expect(2);
    assert!(run.stderr.contains("hex"), "{}", run.stderr);
}

#[test]
fn client_commands_never_create_a_database() {
    let scratch = Scratch::new();
    let missing = scratch.path("missing.db");
    for args in [
        vec!["exec", s(&missing), "SELECT 1"],
        vec!["query", s(&missing), "SELECT 1"],
        vec!["status", s(&missing)],
        vec!["sync", s(&missing)],
        vec!["search", s(&missing), "x"],
    ] {
        let run = sync_cli(&args).expect(2);
        assert!(run.stderr.contains("no such database"), "{}", run.stderr);
        assert!(!missing.exists(), "{args:?} created the database");
    }
    // sync on a plain file: refused before it is touched (init --adopt makes it a copy).
    let db = local_db(&scratch);
    let before = crate::common::sha256(&db);
    let run = sync_cli(["sync", s(&db)]).expect(2);
    assert!(
        run.stderr.contains("init") && run.stderr.contains("--adopt"),
        "{}",
        run.stderr
    );
    assert_eq!(crate::common::sha256(&db), before);
    // sync on a local-only copy (exec made it one): nothing configured.
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title) VALUES (1, 'x')",
    ])
    .expect(0);
    let run = sync_cli(["sync", s(&db)]).expect(2);
    assert!(
        run.stderr.contains("no server configured"),
        "{}",
        run.stderr
    );
}

#[test]
fn search_finds_rows_once_tables_are_configured() {
    let scratch = Scratch::new();
    let db = local_db(&scratch);
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, body) VALUES (1, 'zebra crossing', 'stripes'), (2, 'milk', 'zebra cakes'), (3, 'other', '')",
    ])
    .expect(0);
    let run = sync_cli(["search", s(&db), "zebra"]).expect(2);
    assert!(run.stderr.contains("--fts TABLE:COLUMN"), "{}", run.stderr);

    let run = sync_cli(["search", s(&db), "zebra", "--fts", "notes:title,body"]).expect(0);
    let mut lines = run.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            "notes 1: title='zebra crossing', body='stripes'",
            "notes 2: title='milk', body='zebra cakes'"
        ]
    );
    // The configuration is remembered, and later writes are indexed.
    sync_cli([
        "exec",
        s(&db),
        "UPDATE notes SET title = 'okapi' WHERE id = 3",
    ])
    .expect(0);
    let run = sync_cli(["search", s(&db), "okapi", "--format", "json"]).expect(0);
    let hit: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(hit["table"], "notes");
    assert_eq!(hit["id"], 3);
    assert_eq!(hit["columns"]["title"]["value"], "okapi");
    sync_cli(["search", s(&db), "giraffe"]).expect(1);
    let run = sync_cli(["search", s(&db), "\"unbalanced"]).expect(2);
    assert!(run.stderr.contains("app.db"), "{}", run.stderr);
    let run = sync_cli(["status", s(&db)]).expect(0);
    assert!(
        run.stdout
            .contains("search index:     notes:title,body; 0 rows waiting"),
        "{}",
        run.stdout
    );
    let run = sync_cli(["search", s(&db), "x", "--fts", "notes"]).expect(2);
    assert!(run.stderr.contains("TABLE:COLUMN"), "{}", run.stderr);
}

#[test]
fn init_exec_sync_and_another_device_sees_and_finds_the_row() {
    let server = Server::start();
    let scratch = Scratch::new();
    let a = scratch.path("a.db");
    let b = scratch.path("b.db");
    init(&server, &a, "laptop", &["--fts", "notes:title,body"]);
    let run = sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (sync_id(), ?1, 1)",
        "hello from the terminal",
        "--sync",
    ])
    .expect(0);
    assert_eq!(
        run.lines(),
        [
            "1 row changed",
            "pushed 1 transaction in 1 batch, 0 rejected, pulled 0 log entries, cursor 1"
        ]
    );
    let run = sync_cli(["status", s(&a)]).expect(0);
    assert!(
        run.stdout.contains("pending:          0 changesets"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("cursor:           1 (schema version 1)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("database notes on {}", server.url))
    );

    // The token may come from the environment instead of the command line.
    let token = server.token("phone");
    let run = Command::new(crate::common::sync_cli_path())
        .args([
            "init",
            s(&b),
            "--server",
            &server.url,
            "--database",
            "notes",
        ])
        .args(["--fts", "notes:title"])
        .env("SYNC_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run = sync_cli(["query", s(&b), "SELECT title FROM notes"]).expect(0);
    assert_eq!(run.lines(), ["title", "'hello from the terminal'"]);
    let run = sync_cli(["search", s(&b), "terminal"]).expect(0);
    assert!(
        run.stdout.contains("title='hello from the terminal'"),
        "{}",
        run.stdout
    );

    // b edits, a pulls.
    sync_cli(["exec", s(&b), "UPDATE notes SET body = 'edited on b'"]).expect(0);
    let run = sync_cli(["sync", s(&b), "--format", "json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["pushed_batches"], 1);
    assert_eq!(report["cursor"], 2);
    let run = sync_cli(["sync", s(&a)]).expect(0);
    assert!(
        run.stdout.contains("pulled 1 log entry, cursor 2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("remote changes in: notes"),
        "{}",
        run.stdout
    );
    assert_eq!(
        query_value(&a, "SELECT body FROM notes"),
        SqlValue::Text("edited on b".into())
    );
    for db in [&a, &b] {
        let run = crate::common::tool(
            "sqldiff",
            &[
                "--primarykey",
                "--table",
                "notes",
                s(db),
                s(&server.db_path()),
            ]
            .map(AsRef::as_ref),
            &[],
        )
        .expect(0);
        assert_eq!(run.stdout, "", "{} differs from the server", db.display());
    }
}

#[test]
fn sync_exits_1_and_shows_the_conflict_the_server_reported() {
    let server = Server::start();
    let scratch = Scratch::new();
    let (a, b) = (scratch.path("a.db"), scratch.path("b.db"));
    init(&server, &a, "laptop", &[]);
    init(&server, &b, "phone", &[]);
    let insert = "INSERT INTO notes(id, title, updated_at) VALUES (7, ?1, 1)";
    sync_cli(["exec", s(&a), insert, "from a"]).expect(0);
    sync_cli(["exec", s(&b), insert, "from b"]).expect(0);
    sync_cli(["sync", s(&a)]).expect(0);
    let run = sync_cli(["sync", s(&b)]).expect(1);
    let conflict = run
        .lines()
        .into_iter()
        .find(|l| l.starts_with("server conflict: "))
        .unwrap_or_else(|| panic!("{}", run.stdout))
        .to_string();
    assert!(
        conflict.starts_with("server conflict: CONFLICT     INSERT notes pk(7) -> replace (batch "),
        "{conflict}"
    );
    let run = sync_cli(["status", s(&b)]).expect(0);
    assert!(
        run.stdout.contains("server conflicts: 1\n  CONFLICT"),
        "{}",
        run.stdout
    );
    let run = sync_cli(["status", s(&b), "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(status["server_conflicts"][0]["kind"], "CONFLICT");
    assert_eq!(status["server_conflicts"][0]["resolution"], "replace");
    // Nothing new on the next sync: status 0.
    sync_cli(["sync", s(&b)]).expect(0);
}

#[test]
fn init_failures_exit_2_and_create_nothing() {
    let server = Server::start();
    let scratch = Scratch::new();
    let db = scratch.path("a.db");
    let run = sync_cli([
        "init",
        s(&db),
        "--server",
        &server.url,
        "--token",
        "sst_wrong",
        "--database",
        "notes",
    ])
    .expect(2);
    assert!(run.stderr.contains("unauthorized"), "{}", run.stderr);
    assert!(!db.exists());
    init(&server, &db, "laptop", &[]);
    let run = sync_cli([
        "init",
        s(&db),
        "--server",
        &server.url,
        "--token",
        &server.token("laptop"),
        "--database",
        "notes",
    ])
    .expect(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
}

#[test]
fn sync_with_the_server_gone_exits_2_and_keeps_the_write() {
    let server = Server::start();
    let scratch = Scratch::new();
    let db = scratch.path("a.db");
    init(&server, &db, "laptop", &[]);
    drop(server);
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'offline', 1)",
    ])
    .expect(0);
    let run = sync_cli(["sync", s(&db)]).expect(2);
    assert!(
        run.stderr.contains("cannot reach the server"),
        "{}",
        run.stderr
    );
    let run = sync_cli(["status", s(&db)]).expect(0);
    assert!(
        run.stdout.contains("pending:          1 changeset ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("last error:       cannot reach"),
        "{}",
        run.stdout
    );
    // `exec --sync` with the server gone: the write is made and kept (exit 3, not 2).
    let run = sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'kept', 1)",
        "--sync",
        "--format",
        "json",
    ])
    .expect(3);
    assert_eq!(run.stdout.lines().next(), Some(r#"{"changed":1}"#));
    assert!(
        run.stderr
            .contains("the write was kept and is pending; the sync after it failed"),
        "{}",
        run.stderr
    );
    let run = sync_cli(["status", s(&db)]).expect(0);
    assert!(
        run.stdout.contains("pending:          2 changesets ("),
        "{}",
        run.stdout
    );
    // A write that fails exits 2 and writes nothing, --sync or not.
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'duplicate', 1)",
        "--sync",
    ])
    .expect(2);
}

#[test]
fn sync_watch_prints_remote_changes_as_they_arrive() {
    let server = Server::start();
    let scratch = Scratch::new();
    let (a, b) = (scratch.path("a.db"), scratch.path("b.db"));
    init(&server, &a, "laptop", &[]);
    init(&server, &b, "phone", &[]);
    let mut watcher = crate::common::Watcher::start(&b);
    watcher.wait_for("watching ");
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'live', 1)",
        "--sync",
    ])
    .expect(0);
    watcher.wait_for("remote changes in: notes");
    watcher.wait_for("cursor 0 -> 1");
    // One writer per database: while the watcher has b open, another process cannot.
    let busy = sync_cli([
        "exec",
        s(&b),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'second writer', 1)",
    ])
    .expect(2);
    assert!(busy.stderr.contains("already open"), "{}", busy.stderr);
    watcher.kill();
    assert_eq!(
        query_value(&b, "SELECT title FROM notes"),
        SqlValue::Text("live".into())
    );
    // The killed watcher's lock went with its process.
    sync_cli([
        "exec",
        s(&b),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'after the watcher', 1)",
    ])
    .expect(0);
    assert_eq!(
        query_value(&b, "SELECT count(*) FROM notes"),
        SqlValue::Integer(2)
    );
}

/// A transaction the server rejects is kept: `sync` exits 1 and names it, `rejected list`
/// and `show` describe it, a `redo` that would still be rejected exits 2 and keeps it,
/// `discard` forgets it.
#[test]
fn a_rejected_transaction_is_listed_shown_and_discarded() {
    let server = Server::start();
    let scratch = Scratch::new();
    let (a, b) = (scratch.path("a.db"), scratch.path("b.db"));
    init(&server, &a, "laptop", &[]);
    init(&server, &b, "phone", &[]);
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one', 1); INSERT INTO tags VALUES (1, 'work')",
    ])
    .expect(0);
    sync_cli(["sync", s(&a)]).expect(0);
    sync_cli(["sync", s(&b)]).expect(0);
    sync_cli(["exec", s(&b), "DELETE FROM notes WHERE id = 1", "--sync"]).expect(0);
    sync_cli(["exec", s(&a), "INSERT INTO note_tags VALUES (1, 1)"]).expect(0);
    let run = sync_cli(["sync", s(&a)]).expect(1);
    assert!(
        run.stdout.contains("1 rejected")
            && run
                .stdout
                .contains("rejected: #1 foreign_key (foreign_key by server"),
        "{}",
        run.stdout
    );
    let run = sync_cli(["rejected", "list", s(&a)]).expect(0);
    assert!(run.stdout.starts_with("#1 foreign_key"), "{}", run.stdout);
    let run = sync_cli(["rejected", "show", s(&a), "1", "--format", "json"]).expect(0);
    let shown: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(shown["reason"], "foreign_key");
    assert_eq!(shown["changes_list"][0]["table"], "note_tags");
    let run = sync_cli(["status", s(&a)]).expect(0);
    assert!(
        run.stdout.contains("rejected:         1\n  #1"),
        "{}",
        run.stdout
    );
    let run = sync_cli(["rejected", "redo", s(&a), "1"]).expect(2);
    assert!(
        run.stderr.contains("still cannot be applied"),
        "{}",
        run.stderr
    );
    sync_cli(["rejected", "list", s(&a), "--format", "json"]).expect(0);
    sync_cli(["rejected", "discard", s(&a), "1"]).expect(0);
    let run = sync_cli(["rejected", "list", s(&a)]).expect(0);
    assert_eq!(run.stdout, "no rejected transactions\n");
    sync_cli(["rejected", "discard", s(&a), "1"]).expect(2);
    sync_cli(["rejected", "show", s(&a), "1"]).expect(2);
}

/// `init` killed at random points (SIGKILL, nothing runs after it): each time there is either
/// no file at the target or a complete, working copy — and the next `init` works, clearing
/// what the killed one left in its scratch directory.
#[test]
fn a_killed_init_leaves_nothing_or_a_working_copy() {
    let server = Server::start();
    let scratch = Scratch::new();
    let seed_db = scratch.path("seed.db");
    init(&server, &seed_db, "seeder", &["--fts", "notes:title,body"]);
    sync_cli([
        "exec",
        s(&seed_db),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO notes(id, title, body, updated_at) SELECT i, 'n' || i, hex(randomblob(60)), i FROM n",
        "--sync",
    ])
    .expect(0);
    let token = server.token("phone");
    let init_args = |db: &Path| {
        vec![
            "init".to_string(),
            s(db).to_string(),
            "--server".into(),
            server.url.clone(),
            "--token".into(),
            token.clone(),
            "--database".into(),
            "notes".into(),
            "--fts".into(),
            "notes:title,body".into(),
        ]
    };
    // How long an init takes here, to kill within it.
    let started = Instant::now();
    sync_cli(init_args(&scratch.path("timed.db"))).expect(0);
    let full = started.elapsed();
    let seed: u64 = std::env::var("SYNC_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill seed {seed} (replay with SYNC_KILL_SEED={seed}); an init takes {full:?}");
    let mut state = seed | 1;
    let (mut none, mut whole) = (0, 0);
    for i in 0..50 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let db = scratch.path(&format!("k{i}.db"));
        let delay = full.mul_f64((state % 1000) as f64 / 1000.0 * 1.2);
        let mut child = Command::new(crate::common::sync_cli_path())
            .args(init_args(&db))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        if db.exists() {
            // Complete: it opens, holds every row, and syncs.
            let run = sync_cli(["query", s(&db), "SELECT count(*) FROM notes"]).expect(0);
            assert!(
                run.stdout.ends_with("\n20000\n"),
                "k{i}.db after a kill at {delay:?}: {}",
                run.stdout
            );
            sync_cli(["sync", s(&db)]).expect(0);
            whole += 1;
        } else {
            none += 1;
            // Nothing there: the next init makes the copy and clears the scratch left behind.
            sync_cli(init_args(&db)).expect(0);
            let prefix = format!(".k{i}.db.sync-init");
            let left: Vec<_> = std::fs::read_dir(db.parent().unwrap())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .collect();
            assert!(left.is_empty(), "scratch left after a fresh init: {left:?}");
        }
        let run = sync_cli(["search", s(&db), "n1234"]).expect(0);
        assert!(run.stdout.contains("1234"), "{}", run.stdout);
    }
    println!("killed inits: {none} left nothing, {whole} left a complete copy");
}
