//! A terminal client that keeps people informed (issue 14): reads while another process holds
//! the writer, network errors that say why, a token replaced in place, progress on a terminal
//! only, `conflicts clear`, and `inspect --format sql`.

use crate::common::{Scratch, assert_same_rows, query_value, sqlite3, sync_cli};
use crate::server::Server;
use rusqlite::types::Value as SqlValue;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sync-cli init DB` as `device`; returns the token it used.
fn init(server: &Server, db: &Path, device: &str) -> String {
    let token = server.token(device);
    sync_cli([
        "init",
        s(db),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ])
    .expect(0);
    token
}

/// A port on 127.0.0.1 nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn query_status_and_search_work_while_sync_watch_holds_the_writer() {
    let server = Server::start();
    let scratch = Scratch::new();
    let (a, b) = (scratch.path("a.db"), scratch.path("b.db"));
    init(&server, &a, "laptop");
    let token = server.token("phone");
    sync_cli([
        "init",
        s(&b),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
        "--fts",
        "notes:title,body",
    ])
    .expect(0);
    sync_cli([
        "exec",
        s(&b),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'before the watcher', 1)",
    ])
    .expect(0);
    let mut watcher = crate::common::Watcher::start(&b);
    watcher.wait_for("watching ");
    // A change from another device arrives through the watcher…
    sync_cli([
        "exec",
        s(&a),
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'from the laptop', 2)",
        "--sync",
    ])
    .expect(0);
    watcher.wait_for("remote changes in: notes");
    // …and the read-only commands see it while the watcher holds the writer.
    let run = sync_cli(["query", s(&b), "SELECT id, title FROM notes ORDER BY id"]).expect(0);
    assert_eq!(
        run.stdout,
        "id|title\n1|'before the watcher'\n2|'from the laptop'\n"
    );
    let run = sync_cli(["status", s(&b)]).expect(0);
    assert!(
        run.stdout.contains("pending:          0 changesets"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("search index:     notes:title,body"),
        "{}",
        run.stdout
    );
    sync_cli(["status", s(&b), "--format", "json"]).expect(0);
    sync_cli(["remote", "show", s(&b)]).expect(0);
    sync_cli(["rejected", "list", s(&b)]).expect(0);
    // The watcher keeps the index current; search reads it as it stands.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = sync_cli(["search", s(&b), "laptop"]);
        if run.status == 0 {
            assert!(
                run.stdout.starts_with("notes 2: title='from the laptop'"),
                "{}",
                run.stdout
            );
            break;
        }
        assert_eq!(run.status, 1, "{}", run.stderr);
        assert!(Instant::now() < deadline, "never indexed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A read-only connection refuses writes whatever the statement says.
    let run = sync_cli(["query", s(&b), "DELETE FROM notes"]).expect(2);
    assert!(run.stderr.contains("read-only"), "{}", run.stderr);
    // Writes still need the writer.
    let busy = sync_cli(["exec", s(&b), "DELETE FROM notes"]).expect(2);
    assert!(busy.stderr.contains("already open"), "{}", busy.stderr);
    watcher.kill();
    assert_eq!(
        query_value(&b, "SELECT count(*) FROM notes"),
        SqlValue::Integer(2)
    );
}

#[test]
fn a_refused_connection_says_so() {
    let scratch = Scratch::new();
    let db = scratch.path("a.db");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let run = sync_cli([
        "init",
        s(&db),
        "--server",
        &url,
        "--token",
        "sst_x",
        "--database",
        "notes",
    ])
    .expect(2);
    let text = run.stderr.to_lowercase();
    assert!(text.contains("cannot reach the server: "), "{}", run.stderr);
    assert!(text.contains("connection refused"), "{}", run.stderr);
    assert!(!db.exists(), "a failed init leaves no file");
}

#[test]
fn a_revoked_token_is_replaced_in_place_and_pending_writes_sync() {
    let server = Server::start();
    let scratch = Scratch::new();
    let db = scratch.path("a.db");
    let old = init(&server, &db, "laptop");
    sync_cli([
        "exec",
        s(&db),
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'written offline', 1)",
    ])
    .expect(0);
    server.revoke(&old);
    let run = sync_cli(["sync", s(&db)]).expect(2);
    assert!(run.stderr.contains("401 unauthorized"), "{}", run.stderr);

    // Bad input changes nothing.
    let run = sync_cli(["remote", "set-url", s(&db), "ftp://example.com"]).expect(2);
    assert!(run.stderr.contains("http://"), "{}", run.stderr);
    sync_cli(["remote", "set-token", s(&db), "  "]).expect(2);
    let shown = sync_cli(["remote", "show", s(&db)]).expect(0);
    assert_eq!(
        shown.stdout,
        format!("server:   {}\ndatabase: notes\ntoken:    set\n", server.url)
    );

    let new = server.token("laptop");
    let file = scratch.write("token.txt", format!("{new}\n").as_bytes());
    let run = sync_cli(["remote", "set-token", s(&db), "--token-file", s(&file)]).expect(0);
    assert_eq!(
        run.stdout,
        format!(
            "token replaced for database notes on {}; 1 changeset pending, kept\n",
            server.url
        )
    );
    let run = sync_cli(["sync", s(&db)]).expect(0);
    assert!(
        run.stdout.starts_with("pushed 1 transaction"),
        "{}",
        run.stdout
    );
    assert_eq!(
        query_value(&server.db_path(), "SELECT title FROM notes WHERE id = 1"),
        SqlValue::Text("written offline".into())
    );

    // set-url: the same server under another spelling; then an unreachable one says why.
    let other = server.url.replace("127.0.0.1", "localhost");
    sync_cli(["remote", "set-url", s(&db), &other]).expect(0);
    sync_cli(["sync", s(&db)]).expect(0);
    let closed = format!("http://127.0.0.1:{}", closed_port());
    sync_cli(["remote", "set-url", s(&db), &closed]).expect(0);
    let run = sync_cli(["sync", s(&db)]).expect(2);
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );
    let json = sync_cli(["remote", "show", s(&db), "--format", "json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["server"], closed.as_str());
    assert_eq!(v["token_set"], true);
}

/// Runs `sync-cli ARGS` on a pseudo-terminal (util-linux `script`); returns what the terminal
/// showed.
fn on_a_terminal(args: &[&str]) -> String {
    let command = std::iter::once(crate::common::sync_cli_path())
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs commands on a pseudo-terminal");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_shows_on_a_terminal_and_not_when_piped() {
    let server = Server::start();
    let scratch = Scratch::new();
    // Enough rows that the snapshot is more than a few pages.
    let seed = scratch.path("seed.db");
    init(&server, &seed, "seed");
    sync_cli([
        "exec",
        s(&seed),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO notes(id, title, body, updated_at) SELECT i, 'note ' || i, hex(randomblob(200)), i FROM n",
    ])
    .expect(0);
    sync_cli(["sync", s(&seed)]).expect(0);

    let token = server.token("tty");
    let tty = scratch.path("tty.db");
    let args = [
        "init",
        s(&tty),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ];
    let shown = on_a_terminal(&args);
    assert!(shown.contains("downloading snapshot ["), "{shown:?}");
    assert!(shown.contains("100%"), "{shown:?}");
    assert!(shown.contains("\r\x1b[2K"), "the bar is erased: {shown:?}");
    assert!(shown.contains("initialized "), "{shown:?}");
    // A sync on a terminal: the report as usual, the bar (if the push was slow enough to be
    // drawn at all) erased before it.
    sync_cli([
        "exec",
        s(&tty),
        "UPDATE notes SET updated_at = updated_at + 1",
    ])
    .expect(0);
    let shown = on_a_terminal(&["sync", s(&tty)]);
    let report = shown.rsplit("\x1b[2K").next().unwrap_or_default();
    assert!(
        report.starts_with("pushed 1 transaction in 1 batch"),
        "{shown:?}"
    );

    // Piped: the report only, nothing on standard error.
    let piped = scratch.path("piped.db");
    let token = server.token("pipe");
    let run = sync_cli([
        "init",
        s(&piped),
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ])
    .expect(0);
    assert_eq!(run.stderr, "");
    sync_cli([
        "exec",
        s(&piped),
        "UPDATE notes SET updated_at = updated_at + 1",
    ])
    .expect(0);
    let run = sync_cli(["sync", s(&piped)]).expect(0);
    assert_eq!(run.stderr, "");
    assert!(!run.stdout.contains('\r'), "{:?}", run.stdout);
}

#[test]
fn conflicts_clear_forgets_what_status_showed() {
    let server = Server::start();
    let scratch = Scratch::new();
    let (a, b) = (scratch.path("a.db"), scratch.path("b.db"));
    init(&server, &a, "laptop");
    init(&server, &b, "phone");
    let insert = "INSERT INTO notes(id, title, updated_at) VALUES (7, ?1, 1)";
    sync_cli(["exec", s(&a), insert, "from a"]).expect(0);
    sync_cli(["exec", s(&b), insert, "from b"]).expect(0);
    sync_cli(["sync", s(&a)]).expect(0);
    sync_cli(["sync", s(&b)]).expect(1);
    let run = sync_cli(["conflicts", "list", s(&b)]).expect(1);
    assert!(
        run.stdout
            .starts_with("server conflict: CONFLICT     INSERT notes pk(7) -> replace"),
        "{}",
        run.stdout
    );
    let rows = query_value(&b, "SELECT count(*) FROM notes");
    let run = sync_cli(["conflicts", "clear", s(&b)]).expect(0);
    assert_eq!(
        run.stdout,
        "cleared 0 local and 1 server conflict (1 records removed)\n"
    );
    let run = sync_cli(["status", s(&b)]).expect(0);
    assert!(run.stdout.contains("server conflicts: 0"), "{}", run.stdout);
    sync_cli(["conflicts", "list", s(&b)]).expect(0);
    assert_eq!(
        query_value(&b, "SELECT count(*) FROM notes"),
        rows,
        "data unchanged"
    );
    let run = sync_cli(["conflicts", "clear", s(&b), "--format", "json"]).expect(0);
    assert_eq!(run.stdout, "{\"local\":0,\"removed\":0,\"server\":0}\n");
}

#[test]
fn inspect_as_sql_run_by_sqlite3_gives_the_same_rows() {
    let scratch = Scratch::new();
    let (orig, edited) = scratch.chinook_pair();
    let cs = scratch.path("edits.cs");
    sync_cli(["diff", s(&orig), s(&edited), "-o", s(&cs)]).expect(1);
    let run = sync_cli(["inspect", s(&cs), "--format", "sql", "--db", s(&orig)]).expect(0);
    let lines = run.lines();
    assert_eq!(lines.first(), Some(&"BEGIN;"));
    assert_eq!(lines.last(), Some(&"COMMIT;"));
    assert!(
        lines.contains(&"UPDATE Invoice SET Total = 0.25 WHERE InvoiceId = 1;"),
        "{}",
        run.stdout
    );
    let target = scratch.copy(&orig, "target.db");
    sqlite3(&target, &run.stdout).expect(0);
    assert_same_rows(&target, &edited);

    // Without --db there are no column names to write SQL with.
    let run = sync_cli(["inspect", s(&cs), "--format", "sql"]).expect(2);
    assert!(
        run.stderr.contains("--format sql needs --db"),
        "{}",
        run.stderr
    );
}
