//! Encryption at rest (built with `--features encryption`: SQLCipher in place of SQLite).
//! Two devices with keys of their own sync through a real server; no file either device
//! writes — database, WAL, search index, a downloaded snapshot, a spooled changeset, looked at
//! while a large sync is under way too — holds a known plaintext; a wrong key, a missing one,
//! or one for a plain file is `ErrorKind::WrongKey` and changes nothing; the `sqlite3` shell
//! cannot read the file.
//!
//! `cargo test -p session-sync-tests --features encryption --test encryption`

mod server;

use session_sync_tests::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use sync_client::{ClientConfig, EncryptionKey, ErrorKind, FtsTable, SyncClient};

/// Text every device writes and indexes; it must never be found in a client's files.
const MARKER: &str = "Quagga-Plaintext-Marker-7F3A";

fn config(key: EncryptionKey) -> ClientConfig {
    ClientConfig {
        fts: vec![FtsTable {
            table: "notes".into(),
            columns: vec!["title".into(), "body".into()],
        }],
        encryption_key: Some(key),
        ..ClientConfig::default()
    }
}

fn key_a() -> EncryptionKey {
    EncryptionKey::raw([0xa5; 32])
}

fn key_b() -> EncryptionKey {
    EncryptionKey::passphrase("correct horse battery staple").unwrap()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

fn holds_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
}

/// What a scan found: files holding the marker, and how many files it read (unlinked
/// temporary files, reached through this process's open descriptors, counted apart).
#[derive(Default, Debug)]
struct Scan {
    leaks: Vec<String>,
    files: usize,
    unlinked: usize,
}

impl Scan {
    /// Reads every file under `dirs` and every open file of this process that lives (or
    /// lived, before it was unlinked) there.
    fn run(&mut self, dirs: &[&Path]) {
        for dir in dirs {
            for f in files_under(dir) {
                if let Ok(bytes) = std::fs::read(&f) {
                    self.files += 1;
                    if holds_marker(&bytes) {
                        self.leaks.push(f.display().to_string());
                    }
                }
            }
        }
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy().to_string();
            if !dirs
                .iter()
                .any(|d| target.starts_with(&*d.to_string_lossy()))
            {
                continue;
            }
            if let Ok(bytes) = std::fs::read(fd.path()) {
                if target.ends_with("(deleted)") {
                    self.unlinked += 1;
                }
                if holds_marker(&bytes) {
                    self.leaks.push(target);
                }
            }
        }
    }
}

/// Scans `dirs` over and over on a thread of its own until stopped.
fn scan_while(dirs: Vec<PathBuf>) -> (Arc<AtomicBool>, std::thread::JoinHandle<Scan>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let mut scan = Scan::default();
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        while !flag.load(Ordering::Relaxed) {
            scan.run(&dirs);
        }
        scan.run(&dirs);
        scan
    });
    (stop, handle)
}

/// Rows large enough that one transaction's changeset (several MiB) is spooled to a file on
/// capture, uploaded in parts and fetched by the other device in ranges.
fn write_large(client: &SyncClient, first_id: i64, rows: i64) {
    let body = format!("{MARKER} ").repeat(140);
    client
        .write(move |c| {
            let mut stmt =
                c.prepare("INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, 1)")?;
            for id in first_id..first_id + rows {
                stmt.execute(rusqlite::params![id, format!("{MARKER} {id}"), body])?;
            }
            Ok(())
        })
        .unwrap();
}

fn sqlite3_shell_reads(path: &Path) -> std::process::Output {
    std::process::Command::new("sqlite3")
        .arg(path)
        .arg("SELECT count(*) FROM notes;")
        .output()
        .expect("the sqlite3 shell is installed")
}

#[test]
fn devices_with_different_keys_sync_and_no_file_of_theirs_holds_plaintext() {
    let server = Server::start_with(|c| c.max_body_bytes = 1 << 20);
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let tc = server.token("alice", "tablet");
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let dir_c = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir_a.path(), "a.db", &ta, config(key_a()));
    let b = server.notes_client(dir_b.path(), "b.db", &tb, config(key_b()));

    let (stop, scanner) = scan_while(vec![dir_a.path().into(), dir_b.path().into()]);
    exec(
        &a,
        &format!(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (1, '{MARKER} one', 'small', 1)"
        ),
    );
    write_large(&a, 100, 800);
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    exec(
        &b,
        &format!("UPDATE notes SET body = '{MARKER} from b' WHERE id = 1"),
    );
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    a.index_now().unwrap();
    b.index_now().unwrap();
    stop.store(true, Ordering::Relaxed);
    let scan = scanner.join().unwrap();

    // The devices agree, and each can search what the other wrote.
    for c in [&a, &b] {
        assert_eq!(query_i64(c, "SELECT count(*) FROM notes"), 801);
        assert_eq!(
            query_text(c, "SELECT body FROM notes WHERE id = 1").as_deref(),
            Some(format!("{MARKER} from b").as_str())
        );
        assert!(!c.search("quagga", 5).unwrap().is_empty());
    }
    println!("scanned while syncing: {scan:?}");
    assert!(scan.leaks.is_empty(), "plaintext in {:?}", scan.leaks);
    assert!(scan.files > 0);
    assert!(
        scan.unlinked > 0,
        "the large transaction was never seen spooled"
    );

    // A third device bootstraps from a snapshot that holds every marker row.
    let c = server.notes_client(
        dir_c.path(),
        "c.db",
        &tc,
        config(EncryptionKey::raw([7; 32])),
    );
    assert_eq!(query_i64(&c, "SELECT count(*) FROM notes"), 801);
    c.index_now().unwrap();

    // At rest, with the clients open (WAL and index in use) and after they closed.
    let dirs = [dir_a.path(), dir_b.path(), dir_c.path()];
    let mut open_scan = Scan::default();
    open_scan.run(&dirs);
    assert!(open_scan.leaks.is_empty(), "{:?}", open_scan.leaks);
    for c in [&a, &b, &c] {
        c.close();
    }
    let mut closed = Scan::default();
    closed.run(&dirs);
    assert!(closed.leaks.is_empty(), "{:?}", closed.leaks);
    for f in ["a.db", "a.db.fts"] {
        assert!(dir_a.path().join(f).exists(), "{f}");
    }
    // The server's copy is plain (its data directory is not encrypted here): the marker is
    // real data, so the scan above had something to find.
    assert!(holds_marker(
        &std::fs::read(server.db_path("notes")).unwrap()
    ));

    // Plain SQLite cannot read it.
    let out = sqlite3_shell_reads(&dir_a.path().join("a.db"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a database"),
        "{out:?}"
    );

    // And each device reopens with its own key.
    let a = SyncClient::open(dir_a.path().join("a.db"), config(key_a())).unwrap();
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 801);
    assert!(!a.search("quagga", 5).unwrap().is_empty());
}

/// The bytes of `path` and its WAL, to show an open changed nothing.
fn file_bytes(path: &Path) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (std::fs::read(path).unwrap(), std::fs::read(wal).ok())
}

/// A local-only database with `key`.
fn local(key: Option<EncryptionKey>) -> ClientConfig {
    ClientConfig {
        encryption_key: key,
        ..ClientConfig::default()
    }
}

/// The error of an open that must fail.
fn open_error(path: &Path, config: ClientConfig) -> sync_client::Error {
    match SyncClient::open(path, config) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_wrong_key_a_missing_one_or_one_for_a_plain_file_is_wrong_key_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local.db");
    let create =
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT, updated_at INTEGER)";
    {
        let client = SyncClient::open(&path, local(Some(key_a()))).unwrap();
        exec(&client, create);
        exec(
            &client,
            &format!("INSERT INTO notes VALUES (1, '{MARKER}', '', 1)"),
        );
        client.close();
    }
    let before = file_bytes(&path);
    let wrong = open_error(&path, local(Some(EncryptionKey::raw([1; 32]))));
    assert_eq!(wrong.kind(), ErrorKind::WrongKey, "{wrong}");
    assert!(wrong.to_string().contains("does not open"), "{wrong}");
    let passphrase = open_error(&path, local(Some(key_b())));
    assert_eq!(passphrase.kind(), ErrorKind::WrongKey, "{passphrase}");
    let none = open_error(&path, local(None));
    assert_eq!(none.kind(), ErrorKind::WrongKey, "{none}");
    assert!(
        none.to_string()
            .contains("encrypted (open it with its encryption key)"),
        "{none}"
    );
    assert!(
        !none.to_string().contains("file is not a database"),
        "{none}"
    );
    assert_eq!(file_bytes(&path), before, "a refused open changed the file");

    // A key for a plain file.
    let plain = dir.path().join("plain.db");
    {
        let client = SyncClient::open(&plain, local(None)).unwrap();
        exec(&client, create);
        client.close();
    }
    let before = file_bytes(&plain);
    let keyed = open_error(&plain, local(Some(key_a())));
    assert_eq!(keyed.kind(), ErrorKind::WrongKey, "{keyed}");
    assert!(keyed.to_string().contains("not encrypted"), "{keyed}");
    assert_eq!(file_bytes(&plain), before);

    // The right key still opens it, with temporary storage in memory.
    let client = SyncClient::open(&path, local(Some(key_a()))).unwrap();
    assert_eq!(query_i64(&client, "SELECT count(*) FROM notes"), 1);
    assert_eq!(query_i64(&client, "PRAGMA temp_store"), 2);
    let memory_temp = client
        .write(|c| Ok(c.query_row("PRAGMA temp_store", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    assert_eq!(
        memory_temp, 2,
        "the writer keeps temporary tables in memory"
    );
    let sqlcipher = query_text(&client, "PRAGMA cipher_version");
    assert!(sqlcipher.is_some(), "built with SQLCipher");
    client.close();
    let out = sqlite3_shell_reads(&path);
    assert!(!out.status.success(), "{out:?}");
}
