//! Typed errors a client app can act on, and local work that keeps going through them.

use session_sync_tests::*;
use sync_client::{ClientConfig, ErrorKind, SyncClient};

/// Fewer retries: these tests expect the failure.
fn quick() -> ClientConfig {
    ClientConfig {
        retries: 2,
        ..ClientConfig::default()
    }
}

/// A local database at `dir/app.db` with a `notes` table, as an app makes before syncing.
fn local_notes_db(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("app.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);")
        .unwrap();
    path
}

#[test]
fn a_bad_token_is_an_auth_error_and_init_leaves_no_file() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let err = SyncClient::init(&path, server.remote("sst_not-a-token", "notes"), quick())
        .err()
        .expect("init with a bad token fails");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!path.exists());

    // An existing copy whose token is wrong: sync fails with Auth, local writes still work.
    let a = server.notes_client(dir.path(), "a.db", &token, quick());
    a.close();
    let a = SyncClient::open(
        &path,
        ClientConfig {
            remote: Some(server.remote("sst_revoked", "notes")),
            ..quick()
        },
    )
    .unwrap();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'offline', 1)",
    );
    let err = a.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!err.is_retryable());
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 1);
    assert!(status.last_error.is_some());

    // A failure after the download (a search column that does not exist) leaves no file
    // behind either, so the corrected retry works.
    let c_path = dir.path().join("c.db");
    let err = SyncClient::init(
        &c_path,
        server.remote(&token, "notes"),
        ClientConfig {
            fts: vec![sync_client::FtsTable {
                table: "notes".into(),
                columns: vec!["colour".into()],
            }],
            ..quick()
        },
    )
    .err()
    .expect("an unknown FTS column is refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("colour"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("c.db") || n.starts_with(".sync-init"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    SyncClient::init(&c_path, server.remote(&token, "notes"), quick())
        .unwrap()
        .close();

    // Another database's name: not found, exactly like a database without a grant.
    let err = SyncClient::init(
        dir.path().join("x.db"),
        server.remote(&token, "someone-elses"),
        quick(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn with_the_server_down_sync_is_a_network_error_and_writes_keep_working() {
    let mut server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &token, quick());
    server.stop();

    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'written offline', 1)",
    );
    let err = a.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.is_retryable());
    exec(&a, "UPDATE notes SET body = 'still offline' WHERE id = 1");
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 2);
    assert!(
        status.last_error.as_deref().unwrap().contains("reach"),
        "{status:?}"
    );
    assert_eq!(
        query_text(&a, "SELECT body FROM notes WHERE id = 1").unwrap(),
        "still offline"
    );

    server.restart_with(|_| {});
    a.sync_now().unwrap();
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 0);
    assert_eq!(status.last_error, None);
    assert!(status.last_sync_ms.is_some());
    a.close();
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db")]);
}

#[test]
fn a_table_without_a_primary_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE audit_log (at INTEGER, message TEXT);",
    )
    .unwrap();
    drop(conn);
    let err = SyncClient::open(&path, ClientConfig::default())
        .err()
        .expect("open refuses a table sync cannot track");
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(err.to_string().contains("audit_log"), "{err}");
    assert!(!err.to_string().contains("notes"), "{err}");
}

#[test]
fn read_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_notes_db(dir.path());
    let client = SyncClient::open(&path, ClientConfig::default()).unwrap();
    let err = client
        .read(|c| {
            c.execute("INSERT INTO notes(id, title) VALUES (1, 'sneaky')", [])?;
            Ok(())
        })
        .unwrap_err();
    // SQLite itself refused: the connection is read-only.
    assert_eq!(err.kind(), ErrorKind::InvalidSql, "{err}");
    assert!(
        err.to_string()
            .contains("attempt to write a readonly database"),
        "{err}"
    );
    // Not even a transaction opened on a reader can write.
    let err = client
        .read(|c| {
            c.execute_batch("BEGIN IMMEDIATE; DELETE FROM notes; COMMIT;")?;
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    assert_eq!(query_i64(&client, "SELECT count(*) FROM notes"), 0);
    assert_eq!(client.status().unwrap().pending_changesets, 0);
}

#[test]
fn a_schema_change_through_write_is_refused_when_the_database_syncs() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let client = server.notes_client(dir.path(), "a.db", &token, quick());
    let err = client
        .write(|c| {
            c.execute(
                "INSERT INTO notes(id, title, updated_at) VALUES (1, 'with a column', 1)",
                [],
            )?;
            c.execute_batch("ALTER TABLE notes ADD COLUMN color TEXT")?;
            Ok(())
        })
        .unwrap_err();
    // A session records no DDL: the new column would exist on this device only.
    assert_eq!(err.kind(), ErrorKind::InvalidSql, "{err}");
    assert!(err.to_string().contains("schema"), "{err}");
    assert_eq!(query_i64(&client, "SELECT count(*) FROM notes"), 0);
    assert_eq!(
        query_i64(
            &client,
            "SELECT count(*) FROM pragma_table_info('notes') WHERE name = 'color'"
        ),
        0
    );
    assert_eq!(client.status().unwrap().pending_changesets, 0);
    // The writer is fine afterwards, and the database still syncs.
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'plain', 1)",
    );
    client.sync_now().unwrap();
    assert_eq!(client.status().unwrap().pending_changesets, 0);
    client.close();
    assert_all_equal(&[&server.db_path("notes"), &dir.path().join("a.db")]);
}

#[test]
fn a_local_only_database_creates_its_tables_but_only_trackable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let client = SyncClient::open(dir.path().join("local.db"), ClientConfig::default()).unwrap();
    exec(
        &client,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO notes VALUES (1, 'a')",
    );
    assert_eq!(query_i64(&client, "SELECT count(*) FROM notes"), 1);
    let err = client
        .write(|c| {
            c.execute_batch("CREATE TABLE audit_log (at INTEGER, msg TEXT)")?;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(err.to_string().contains("audit_log"), "{err}");
    assert_eq!(
        query_i64(
            &client,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'audit_log'"
        ),
        0
    );
    // So the database still opens.
    client.close();
    SyncClient::open(dir.path().join("local.db"), ClientConfig::default()).unwrap();
}

#[test]
fn a_database_has_one_writer_a_second_open_is_in_use_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_notes_db(dir.path());
    let first = SyncClient::open(&path, ClientConfig::default()).unwrap();
    exec(&first, "INSERT INTO notes VALUES (1, 'first')");
    // Two writers would mean two sync engines over one outbox.
    let err = SyncClient::open(&path, ClientConfig::default())
        .err()
        .expect("a second open of the same file is refused");
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    assert!(err.to_string().contains("app.db"), "{err}");
    // So is a concurrent first-run `init` of the same path, before it could clean anything
    // up: the open database and its lock stay.
    let remote = sync_client::RemoteConfig {
        url: "http://127.0.0.1:9".into(),
        token: "t".into(),
        database: "notes".into(),
    };
    let err = SyncClient::init(&path, remote, ClientConfig::default())
        .err()
        .expect("init of an open database is refused");
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    assert!(path.exists() && dir.path().join("app.db.sync-lock").exists());
    // Refused before touching anything: the first client goes on as before.
    exec(&first, "INSERT INTO notes VALUES (2, 'still first')");
    assert_eq!(first.status().unwrap().pending_changesets, 2);
    first.close();
    let second = SyncClient::open(&path, ClientConfig::default()).unwrap();
    assert_eq!(query_i64(&second, "SELECT count(*) FROM notes"), 2);
    assert_eq!(second.status().unwrap().pending_changesets, 2);
    drop(second);
    // Dropping without close releases it too.
    SyncClient::open(&path, ClientConfig::default())
        .unwrap()
        .close();
}
