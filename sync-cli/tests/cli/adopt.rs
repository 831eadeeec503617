//! Existing data starts syncing, both ways, with Chinook (all 11 tables, all 15,607 rows):
//! `sync-server db import` of the file, then devices `init` from it; and a device's
//! `init --adopt` of its file into an empty server database with Chinook's schema. In both, a
//! second device bootstraps equal (`sqldiff --primarykey --table T` prints nothing for every
//! table) and an edit on either device reaches the other. Refusals leave the file
//! byte-identical, and so do the commands that only read, on a file that is not a copy.

use crate::common::{EDITS, Scratch, sha256, sqlite3, sync_cli, tool};
use std::path::{Path, PathBuf};
use sync_testkit::{Admin, Blocking};

const TABLES: [&str; 11] = [
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

/// Edits made on the second device: an UPDATE, an INSERT in the composite-key table, a
/// DELETE of a row nothing references.
const EDITS_B: &str = "UPDATE Customer SET Company = 'Edited on B' WHERE CustomerId = 1; \
     INSERT INTO PlaylistTrack VALUES (2, 1); \
     DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId = 3402;";

/// A server in this process with user alice, optionally running `schema_dir`.
struct Server {
    url: String,
    data: tempfile::TempDir,
    _running: Blocking,
}

impl Server {
    fn start(schema_dir: Option<PathBuf>) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = sync_testkit::config(data.path());
        config.schema_dir = schema_dir;
        let running = Blocking::start(config);
        let url = running.server().expect("started").base.clone();
        sync_server::catalog::add_user(&Admin(data.path()).catalog(), "alice").unwrap();
        Server {
            url,
            data,
            _running: running,
        }
    }

    fn token(&self, device: &str) -> String {
        Admin(self.data.path()).token("alice", device)
    }

    /// `sync-server db import NAME --from FILE --owner alice` (the admin command's own code).
    fn import(&self, name: &str, from: &Path) {
        let mut out = Vec::new();
        sync_server::admin::db(
            &sync_server::datadir::DataDir::plain(self.data.path()),
            &sync_server::admin::DbCommand::Import {
                name: name.into(),
                from: from.to_path_buf(),
                owner: "alice".into(),
                schema: None,
            },
            &mut out,
        )
        .unwrap();
        assert!(
            String::from_utf8_lossy(&out).contains("11 tables, 15607 rows")
                || !name.starts_with("chinook"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    fn create(&self, name: &str) {
        sync_server::catalog::create_database(&Admin(self.data.path()).catalog(), name, "alice")
            .unwrap();
    }

    /// `sync-cli init DB [--adopt]` as `device`.
    fn init(&self, db: &Path, database: &str, device: &str, adopt: bool) -> crate::common::Run {
        let token = self.token(device);
        let mut args = vec![
            "init",
            s(db),
            "--server",
            &self.url,
            "--token",
            &token,
            "--database",
            database,
        ];
        if adopt {
            args.push("--adopt");
        }
        sync_cli(&args)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Chinook's schema as a migrations directory (its statements in creation order).
fn chinook_schema(scratch: &Scratch, fixture: &Path) -> PathBuf {
    let conn =
        rusqlite::Connection::open_with_flags(fixture, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let sql: Vec<String> = conn
        .prepare("SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let dir = scratch.path("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001_init.sql"), sql.join("\n")).unwrap();
    dir
}

/// `sqldiff --primarykey --table T A B` prints nothing for every Chinook table.
#[track_caller]
fn assert_equal(a: &Path, b: &Path) {
    for t in TABLES {
        let run = tool(
            "sqldiff",
            &[
                "--primarykey".as_ref(),
                "--table".as_ref(),
                t.as_ref(),
                a.as_os_str(),
                b.as_os_str(),
            ],
            &[],
        )
        .expect(0);
        assert!(
            run.stdout.is_empty(),
            "table {t} differs between {} and {}:\n{}",
            a.display(),
            b.display(),
            run.stdout
        );
    }
}

#[track_caller]
fn exec_sync(db: &Path, sql: &str) {
    let run = sync_cli(["exec", s(db), sql, "--sync"]).expect(0);
    assert!(run.stdout.contains("pushed"), "{}", run.stdout);
}

#[track_caller]
fn sync(db: &Path) {
    sync_cli(["sync", s(db)]).expect(0);
}

/// Edits on A reach B, edits on B reach A; both end equal to each other and to `expected`
/// (a plain file with both edits applied by the sqlite3 shell).
fn edits_flow_both_ways(a: &Path, b: &Path, expected: &Path) {
    exec_sync(a, EDITS);
    sync(b);
    assert_equal(a, b);
    exec_sync(b, EDITS_B);
    sync(a);
    assert_equal(a, b);
    sqlite3(expected, EDITS);
    sqlite3(expected, EDITS_B);
    assert_equal(expected, a);
}

#[test]
fn chinook_imported_by_the_server_bootstraps_equal_and_edits_flow_both_ways() {
    let scratch = Scratch::new();
    let source = scratch.chinook("chinook.sqlite");
    let hash = sha256(&source);
    let server = Server::start(None);
    server.import("chinook", &source);
    assert_eq!(sha256(&source), hash, "the import never writes its source");

    let a = scratch.path("a.db");
    let b = scratch.path("b.db");
    let run = server.init(&a, "chinook", "laptop", false).expect(0);
    assert!(
        run.stdout.contains("at seq 0 (schema version 1)"),
        "{}",
        run.stdout
    );
    assert_equal(&source, &a);
    server.init(&b, "chinook", "phone", false).expect(0);
    assert_equal(&source, &b);
    edits_flow_both_ways(&a, &b, &source);
}

#[test]
fn chinook_adopted_by_a_device_reaches_a_second_device_and_edits_flow_both_ways() {
    let scratch = Scratch::new();
    let fixture = scratch.chinook("fixture.sqlite");
    let server = Server::start(Some(chinook_schema(&scratch, &fixture)));
    server.create("chinook");

    let a = scratch.chinook("a.db");
    let run = server.init(&a, "chinook", "laptop", true).expect(0);
    assert!(
        run.stdout.starts_with("adopted ") && run.stdout.contains("1 changeset pending"),
        "{}",
        run.stdout
    );
    assert_equal(&fixture, &a);
    let status = sync_cli(["status", s(&a), "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert_eq!(status["pending_changesets"], 1, "{status}");
    assert_eq!(status["database"], "chinook", "{status}");
    let run = sync_cli(["sync", s(&a)]).expect(0);
    assert!(
        run.stdout.contains("pushed 1 transaction"),
        "{}",
        run.stdout
    );

    let b = scratch.path("b.db");
    server.init(&b, "chinook", "phone", false).expect(0);
    assert_equal(&fixture, &b);
    assert_equal(&a, &b);
    edits_flow_both_ways(&a, &b, &fixture);
}

/// Every file in `dir` with its bytes' hash: what a refused command must leave alone.
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let h = if p.is_file() {
                sha256(&p)
            } else {
                "dir".into()
            };
            (p.file_name().unwrap().to_string_lossy().into_owned(), h)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_refused_adopt_leaves_the_file_and_its_directory_unchanged() {
    let scratch = Scratch::new();
    let fixture = scratch.chinook("fixture.sqlite");
    let server = Server::start(Some(chinook_schema(&scratch, &fixture)));
    server.create("chinook");
    // Databases that must refuse: another schema (imported with its own), and rows already.
    let notes = scratch.path("notes.sqlite");
    sqlite3(
        &notes,
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO notes VALUES (1, 'x');",
    );
    server.import("notes", &notes);
    server.import("chinook-full", &fixture);

    let dir = scratch.path("device");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.db");
    std::fs::copy(&fixture, &file).unwrap();
    let before = listing(&dir);
    for (database, want) in [
        (
            "notes",
            "schema differs from that of database notes on the server",
        ),
        ("chinook-full", "already has rows"),
        ("nope", "no database \"nope\""),
    ] {
        let run = server.init(&file, database, "laptop", true).expect(2);
        assert!(run.stderr.contains(want), "{database}: {}", run.stderr);
        assert_eq!(listing(&dir), before, "{database}: nothing changed");
    }
    let run = server.init(&file, "notes", "laptop", true).expect(2);
    assert!(run.stderr.contains("table \"album\""), "{}", run.stderr);

    // A file with a dangling foreign key: the server would reject its rows.
    sqlite3(
        &file,
        "PRAGMA foreign_keys = OFF; UPDATE Album SET ArtistId = 9999 WHERE AlbumId = 1;",
    );
    let before = listing(&dir);
    let run = server.init(&file, "chinook", "laptop", true).expect(2);
    assert!(run.stderr.contains("break a foreign key"), "{}", run.stderr);
    assert_eq!(listing(&dir), before);

    // Not a plain file: a missing one, and a synced copy.
    let run = server
        .init(&dir.join("missing.db"), "chinook", "laptop", true)
        .expect(2);
    assert!(run.stderr.contains("no such file"), "{}", run.stderr);
    let copy = dir.join("copy.db");
    server.init(&copy, "chinook", "laptop", false).expect(0);
    let run = server.init(&copy, "chinook", "laptop", true).expect(2);
    assert!(
        run.stderr.contains("already a synced copy"),
        "{}",
        run.stderr
    );
}

#[test]
fn commands_that_only_read_refuse_a_plain_file_and_leave_it_byte_identical() {
    let scratch = Scratch::new();
    let dir = scratch.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    // A rollback-journal file (Chinook as shipped) and a WAL-mode one (as many apps keep).
    let chinook = dir.join("chinook.db");
    std::fs::copy(scratch.chinook("c.sqlite"), &chinook).unwrap();
    let wal = dir.join("wal.db");
    sqlite3(
        &wal,
        "PRAGMA journal_mode = WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO notes VALUES (1, 'x');",
    );
    let changeset = scratch.path("cs.bin");
    let edited = scratch.chinook("edited.sqlite");
    sqlite3(&edited, EDITS);
    crate::common::sqldiff_changeset(&scratch.chinook("orig.sqlite"), &edited, &changeset, None);
    for db in [&chinook, &wal] {
        let before = listing(&dir);
        for args in [
            vec!["status", s(db)],
            vec!["status", s(db), "--format", "json"],
            vec!["query", s(db), "SELECT 1"],
            vec!["search", s(db), "x"],
            vec!["search", s(db), "x", "--fts", "notes:title"],
            vec!["rejected", "list", s(db)],
            vec!["rejected", "show", s(db), "1"],
            vec!["sync", s(db)],
        ] {
            let run = sync_cli(&args).expect(2);
            assert!(
                run.stderr
                    .contains("is a plain SQLite database, not a synced copy")
                    && run.stderr.contains("--adopt"),
                "{args:?}: {}",
                run.stderr
            );
            assert_eq!(listing(&dir), before, "{args:?} changed the directory");
        }
        // `inspect --db` reads column names only, and leaves no -wal/-shm behind either.
        sync_cli(["inspect", s(&changeset), "--db", s(db)]).expect(0);
        assert_eq!(listing(&dir), before, "inspect --db changed the directory");
    }
}

#[test]
fn a_killed_adopt_leaves_the_original_file_or_a_working_copy() {
    let scratch = Scratch::new();
    let fixture = scratch.chinook("fixture.sqlite");
    let original = sha256(&fixture);
    let server = Server::start(Some(chinook_schema(&scratch, &fixture)));
    server.create("chinook");
    let token = server.token("laptop");
    let args = |db: &Path| {
        vec![
            "init".to_string(),
            s(db).to_string(),
            "--server".into(),
            server.url.clone(),
            "--token".into(),
            token.clone(),
            "--database".into(),
            "chinook".into(),
            "--adopt".into(),
        ]
    };
    let timed = scratch.chinook("timed.db");
    let started = std::time::Instant::now();
    sync_cli(args(&timed)).expect(0);
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
    println!("kill seed {seed} (replay with SYNC_KILL_SEED={seed}); an adopt takes {full:?}");
    let mut state = seed | 1;
    let (mut kept, mut adopted) = (0, 0);
    for i in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let db = scratch.chinook(&format!("k{i}.db"));
        let delay = full.mul_f64((state % 1000) as f64 / 1000.0 * 1.2);
        let mut child = std::process::Command::new(crate::common::sync_cli_path())
            .args(args(&db))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        if sha256(&db) == original {
            // Untouched: still the plain file, and adopting it again works.
            kept += 1;
            server.init(&db, "chinook", "laptop", true).expect(0);
        } else {
            adopted += 1;
        }
        // Either way it is now a complete copy with every row pending.
        let run = sync_cli(["status", s(&db), "--format", "json"]).expect(0);
        let status: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert_eq!(
            status["pending_changesets"], 1,
            "k{i}.db after a kill at {delay:?}"
        );
        assert_equal(&fixture, &db);
    }
    println!("{kept} kept as they were, {adopted} adopted whole");
}
