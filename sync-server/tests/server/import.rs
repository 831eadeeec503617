//! `sync-server db import` with the real binary: Chinook (11 tables, composite keys, foreign
//! keys, NUMERIC columns) becomes a database served like a created one; every refusal leaves
//! the source and the data directory as they were.

use crate::common::*;
use reqwest::StatusCode;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHINOOK_TABLES: [&str; 11] = [
    "Album",
    "Artist",
    "Customer",
    "Employee",
    "Genre",
    "Invoice",
    "InvoiceLine",
    "MediaType",
    "Playlist",
    "PlaylistTrack",
    "Track",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync-cli/tests/data/chinook.sqlite")
}

/// A copy of Chinook in `dir`, its bytes as the fixture's.
fn chinook_copy(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, std::fs::read(fixture()).unwrap()).unwrap();
    p
}

/// Chinook's schema as one migration file (its CREATE statements in creation order).
fn chinook_schema_dir(dir: &Path) -> PathBuf {
    let conn =
        Connection::open_with_flags(fixture(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let sql: Vec<String> = conn
        .prepare("SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let d = dir.join("chinook-schema");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("0001_init.sql"), sql.join("\n")).unwrap();
    d
}

/// The admin CLI on the server's data directory (and its store, if it has one).
fn admin(s: &TestServer, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(server_bin());
    cmd.arg("--data").arg(s.data_dir());
    if let Some(url) = s.store_url() {
        cmd.arg("--store").arg(url);
    }
    cmd.args(args).output().unwrap()
}

fn import(s: &TestServer, name: &str, from: &Path, extra: &[&Path]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "db".as_ref(),
        "import".as_ref(),
        name.as_ref(),
        "--from".as_ref(),
        from.as_os_str(),
        "--owner".as_ref(),
        "alice".as_ref(),
    ];
    if let Some(dir) = extra.first() {
        args.extend(["--schema".as_ref(), dir.as_os_str()]);
    }
    admin(s, &args)
}

/// Every file under `dir` with a hash of its bytes, except the catalog's own files (an admin
/// command's read may checkpoint its WAL; `db list` compares its content) and the import lock.
fn tree(dir: &Path) -> Vec<(String, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with("catalog.db") && name != ".import.lock" {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.push((p.display().to_string(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

async fn snapshot(s: &TestServer, db: &str, token: &str, to: &Path) -> reqwest::header::HeaderMap {
    let r = s
        .http
        .get(s.url(db, "/snapshot"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let headers = r.headers().clone();
    std::fs::write(to, r.bytes().await.unwrap()).unwrap();
    headers
}

fn assert_tables_equal(a: &Path, b: &Path) {
    for t in CHINOOK_TABLES {
        let o = Command::new("sqldiff")
            .args(["--primarykey", "--table", t])
            .arg(a)
            .arg(b)
            .output()
            .expect("sqldiff (sqlite3-tools) must be installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            o.stdout.is_empty(),
            "table {t} differs: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinook_imports_with_its_own_schema_and_is_served_like_a_created_database() {
    // The server runs a schema of two migrations (the demo and an ALTER TABLE on notes): an
    // imported database keeps its own schema and must never be given them.
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("0001_init.sql"), demo_sql()).unwrap();
    std::fs::write(
        migrations.join("0002_color.sql"),
        "ALTER TABLE tags ADD COLUMN color TEXT;",
    )
    .unwrap();
    let dir = migrations.clone();
    let s = TestServer::start_with(move |c| c.schema_dir = Some(dir)).await;
    s.add_user("alice");
    let source = chinook_copy(work.path(), "chinook.sqlite");
    let before = tree(work.path());

    let out = import(&s, "chinook", &source, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("11 tables, 15607 rows, its own schema, version 1"),
        "{stdout}"
    );
    assert_eq!(
        tree(work.path()),
        before,
        "the source and its directory are unchanged"
    );

    let token = s.token("alice", "laptop");
    let info: serde_json::Value = s
        .http
        .get(s.url("chinook", ""))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(info["schema_version"], 1, "{info}");
    assert_eq!(info["head_seq"], 0, "{info}");
    let snap = work.path().join("snap.db");
    let headers = snapshot(&s, "chinook", &token, &snap).await;
    assert_eq!(headers["sync-seq"], "0");
    assert_eq!(headers["sync-schema-version"], "1");
    assert_tables_equal(&source, &snap);
    // The server's own migrations were not applied: no demo table appeared.
    let conn = Connection::open(&snap).unwrap();
    let notes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('notes', 'tags')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(notes, 0);
    // A created database next to it still gets them (version 2).
    let created = s.setup("alice", "notes");
    let info: serde_json::Value = s
        .http
        .get(s.url("notes", ""))
        .bearer_auth(&created)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(info["schema_version"], 2, "{info}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_schema_the_file_must_match_and_then_follows_the_server_schema() {
    let work = tempfile::tempdir().unwrap();
    let chinook_dir = chinook_schema_dir(work.path());
    let dir = chinook_dir.clone();
    let s = TestServer::start_with(move |c| c.schema_dir = Some(dir)).await;
    s.add_user("alice");
    let source = chinook_copy(work.path(), "chinook.sqlite");

    // The demo schema is not Chinook's: refused, with the differences named.
    let demo = work.path().join("demo-schema");
    std::fs::create_dir_all(&demo).unwrap();
    std::fs::write(demo.join("0001_init.sql"), demo_sql()).unwrap();
    let data_before = tree(s.data_dir());
    let out = import(&s, "chinook", &source, &[&demo]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differs from the one the migrations in")
            && stderr.contains("table \"album\"")
            && stderr.contains("exists in the file only"),
        "{stderr}"
    );
    assert_eq!(
        tree(s.data_dir()),
        data_before,
        "a refused import creates nothing"
    );

    let out = import(&s, "chinook", &source, &[&chinook_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("schema version 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let path = s.db_path("chinook");
    let conn = Connection::open(&path).unwrap();
    let own: i64 = conn
        .query_row(
            "SELECT count(*) FROM _sync_meta WHERE key = 'own_schema'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(own, 0, "it follows the server's migrations");
    drop(conn);
    let token = s.token("alice", "laptop");
    let snap = work.path().join("snap.db");
    snapshot(&s, "chinook", &token, &snap).await;
    assert_tables_equal(&source, &snap);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_and_change_nothing() {
    let work = tempfile::tempdir().unwrap();
    let s = TestServer::start().await;
    s.add_user("alice");
    let source = chinook_copy(work.path(), "chinook.sqlite");
    let make = |name: &str, sql: &str| {
        let p = work.path().join(name);
        Connection::open(&p).unwrap().execute_batch(sql).unwrap();
        p
    };
    let no_pk = make(
        "nopk.db",
        "CREATE TABLE ok(id INTEGER PRIMARY KEY); CREATE TABLE logbook(at INTEGER, msg TEXT);",
    );
    let reserved = make(
        "reserved.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE _SYNC_Outbox(seq INTEGER PRIMARY KEY);",
    );
    let orphan = make(
        "orphan.db",
        "CREATE TABLE p(id INTEGER PRIMARY KEY);
         CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));
         PRAGMA foreign_keys = OFF; INSERT INTO c VALUES (1, 42);",
    );
    let empty = make("empty.db", "PRAGMA user_version = 3;");
    let text = work.path().join("text.db");
    std::fs::write(
        &text,
        "not a database, but long enough to look like a header ........",
    )
    .unwrap();
    let existing = s.setup("alice", "notes");
    let _ = existing;
    let before_work = tree(work.path());
    let before_data = tree(s.data_dir());
    let list_before = admin(&s, &["db".as_ref(), "list".as_ref()]).stdout;
    for (name, from, want) in [
        ("notes", &source, "already exists"),
        ("Bad.Name", &source, "invalid database name"),
        ("t1", &no_pk, "logbook (no PRIMARY KEY)"),
        ("t2", &reserved, "reserved for session-sync"),
        ("t3", &orphan, "break a foreign key"),
        ("t4", &empty, "no tables"),
        ("t5", &text, "cannot read"),
        ("t6", &work.path().join("missing.db"), "no such file"),
    ] {
        let out = import(&s, name, from, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    let out = admin(
        &s,
        &[
            "db".as_ref(),
            "import".as_ref(),
            "t7".as_ref(),
            "--from".as_ref(),
            source.as_os_str(),
            "--owner".as_ref(),
            "nobody".as_ref(),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"nobody\""));
    assert_eq!(tree(work.path()), before_work, "sources unchanged");
    assert_eq!(tree(s.data_dir()), before_data, "nothing created");
    assert_eq!(
        admin(&s, &["db".as_ref(), "list".as_ref()]).stdout,
        list_before
    );
    s.stop().await;
}
