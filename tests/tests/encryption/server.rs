//! The server's data directory encrypted at rest: a server with a key serves two devices, no
//! file under its data directory (catalog, database, WAL, -shm) holds a known plaintext while
//! it runs or after; it restarts with the key; a wrong or missing key refuses to start with a
//! clear error; a backup is encrypted with the key and restores with it; admin commands work
//! on the encrypted directory and refuse a wrong key.

use super::{MARKER, Scan};
use session_sync_tests::*;
use std::path::{Path, PathBuf};
use sync_client::{ClientConfig, SyncClient};
use sync_core::engine::cipher::EncryptionKey;
use sync_server::admin::{self, TokenCommand, UserCommand};
use sync_server::config::{GlobalArgs, ServeArgs};
use sync_server::datadir::DataDir;
use sync_server::lifecycle::{self, RestorePoint};
use sync_server::{AppState, ServerConfig, catalog};

fn server_key() -> EncryptionKey {
    EncryptionKey::passphrase("server data directory passphrase").unwrap()
}

fn keyed(server: &Server, key: &EncryptionKey) -> DataDir {
    DataDir::new(server.data_dir(), Some(key.clone()))
}

/// User alice, database notes and tokens for two devices, through the keyed catalog.
fn setup(dir: &DataDir) -> (String, String) {
    let c = catalog::open_existing_keyed(dir.path(), dir.key()).unwrap();
    catalog::add_user(&c, "alice").unwrap();
    catalog::create_database(&c, "notes", "alice").unwrap();
    let a = catalog::issue_token(&c, "alice", "laptop").unwrap().token;
    let b = catalog::issue_token(&c, "alice", "phone").unwrap().token;
    (a, b)
}

fn write_note(client: &SyncClient, id: i64) {
    client
        .write(move |c| {
            c.execute(
                "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, ?2, ?3, 1)",
                rusqlite::params![id, format!("{MARKER} {id}"), format!("{MARKER} body")],
            )?;
            Ok(())
        })
        .unwrap();
}

fn notes(client: &SyncClient) -> i64 {
    query_i64(client, "SELECT count(*) FROM notes")
}

fn assert_no_plaintext(dir: &Path) -> usize {
    let mut scan = Scan::default();
    scan.run(&[dir]);
    assert!(scan.leaks.is_empty(), "plaintext in {:?}", scan.leaks);
    assert!(scan.files >= 2, "scanned {} files", scan.files);
    scan.files
}

fn start_error(data: &Path, key: Option<EncryptionKey>) -> String {
    let config = ServerConfig {
        encryption_key: key,
        ..sync_testkit::config(data)
    };
    AppState::new(config).unwrap_err().to_string()
}

#[test]
fn an_encrypted_data_directory_serves_restarts_and_refuses_a_wrong_key() {
    let key = server_key();
    let mut server = Server::start_with(|c| c.encryption_key = Some(server_key()));
    let dir = keyed(&server, &key);
    let (ta, tb) = setup(&dir);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir_a.path(), "a.db", &ta, ClientConfig::default());
    for id in 1..=20 {
        write_note(&a, id);
    }
    a.sync_now().unwrap();
    // A new device bootstraps from a snapshot: built in memory, plain on the wire.
    let b = server.notes_client(dir_b.path(), "b.db", &tb, ClientConfig::default());
    b.sync_now().unwrap();
    assert_eq!(notes(&b), 20);
    write_note(&b, 21);
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    assert_eq!(notes(&a), 21);
    // While it runs: the database's WAL and -shm, the catalog's, all scanned.
    let live = assert_no_plaintext(server.data_dir());
    let files: Vec<PathBuf> = std::fs::read_dir(server.data_dir().join("dbs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with("-wal")),
        "a WAL was scanned: {files:?}"
    );
    assert!(live >= 4, "{live}");

    server.stop();
    assert_no_plaintext(server.data_dir());
    let err = start_error(server.data_dir(), Some(EncryptionKey::raw([9; 32])));
    assert!(
        err.contains("the encryption key does not open it"),
        "a wrong key: {err}"
    );
    let err = start_error(server.data_dir(), None);
    assert!(
        err.contains("encrypted (open it with its encryption key)"),
        "no key: {err}"
    );
    assert!(!err.contains("file is not a database"), "{err}");

    server.restart_with(|c| c.encryption_key = Some(server_key()));
    write_note(&a, 22);
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(notes(&b), 22);
    a.close();
    b.close();
    assert_all_equal(&[&dir_a.path().join("a.db"), &dir_b.path().join("b.db")]);
}

#[test]
fn admin_commands_backup_and_restore_use_the_key() {
    let key = server_key();
    let server = Server::start_with(|c| c.encryption_key = Some(server_key()));
    let dir = keyed(&server, &key);
    let (ta, tb) = setup(&dir);
    let mut out = Vec::new();
    admin::user(&dir, &UserCommand::Add { name: "bob".into() }, &mut out).unwrap();
    admin::token(
        &dir,
        &TokenCommand::Issue {
            user: "bob".into(),
            device: "bobs-phone".into(),
        },
        &mut out,
    )
    .unwrap();
    // A wrong key or none: a clear error, and the catalog is untouched.
    let catalog_file = server.data_dir().join("catalog.db");
    let before = std::fs::read(&catalog_file).unwrap();
    let wrong = DataDir::new(server.data_dir(), Some(EncryptionKey::raw([1; 32])));
    let err = admin::user(&wrong, &UserCommand::Add { name: "eve".into() }, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the encryption key does not open it"), "{err}");
    let plain = DataDir::plain(server.data_dir());
    let err = admin::user(&plain, &UserCommand::Add { name: "eve".into() }, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("open it with its encryption key"), "{err}");
    assert_eq!(std::fs::read(&catalog_file).unwrap(), before);

    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir_a.path(), "a.db", &ta, ClientConfig::default());
    for id in 1..=5 {
        write_note(&a, id);
    }
    a.sync_now().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("notes.backup");
    let mut said = Vec::new();
    lifecycle::backup(&dir, "notes", &file, &mut said).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
    assert!(
        !bytes.starts_with(b"SQLite format 3\0"),
        "the backup is encrypted"
    );
    for id in 6..=8 {
        write_note(&a, id);
    }
    a.sync_now().unwrap();
    // Restoring needs the key: without it, a clear error and nothing swapped.
    let err = lifecycle::restore(&plain, "notes", &file, RestorePoint::Backup, &mut said);
    assert!(err.is_err());
    let err = lifecycle::restore(
        &DataDir::new(server.data_dir(), Some(EncryptionKey::raw([1; 32]))),
        "notes",
        &file,
        RestorePoint::Backup,
        &mut said,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not open it"), "{err}");
    lifecycle::restore(&dir, "notes", &file, RestorePoint::Backup, &mut said).unwrap();
    let said = String::from_utf8(said).unwrap();
    assert!(said.contains("restored notes to seq"), "{said}");
    // Devices re-base on the restored (encrypted) history.
    a.sync_now().unwrap();
    let b = server.notes_client(dir_b.path(), "b.db", &tb, ClientConfig::default());
    b.sync_now().unwrap();
    assert_eq!(notes(&b), 5);
    assert_eq!(notes(&a), 5);
    assert_no_plaintext(server.data_dir());
}

#[test]
fn the_key_comes_from_a_file_or_the_environment_never_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.key");
    std::fs::write(&file, format!("{}\n", "3c".repeat(32))).unwrap();
    let global = GlobalArgs {
        data: Some(dir.path().join("data")),
        encryption_key_file: Some(file),
        ..GlobalArgs::default()
    };
    let config = ServerConfig::resolve(&global, &ServeArgs::default()).unwrap();
    assert_eq!(config.encryption_key, Some(EncryptionKey::raw([0x3c; 32])));
    let toml = dir.path().join("sync.toml");
    std::fs::write(&toml, "encryption_key_file = \"server.key\"\n").unwrap();
    let global = GlobalArgs {
        config: Some(toml),
        ..GlobalArgs::default()
    };
    let config = ServerConfig::resolve(&global, &ServeArgs::default()).unwrap();
    assert_eq!(config.encryption_key, Some(EncryptionKey::raw([0x3c; 32])));
}
