//! The command line: init on the first run, open afterwards (offline too); a first run
//! without the server settings names what is missing and creates nothing.

use super::*;
use notes_desktop::config::{Args, OpenError, open};
use std::process::Command;

fn args(db: &Path) -> Args {
    Args {
        db: db.to_path_buf(),
        server: None,
        token: None,
        database: None,
        no_background: false,
    }
}

#[test]
fn the_first_run_makes_the_copy_and_later_runs_open_it_offline() {
    let mut server = Server::start(|_| {});
    let token = server.tokens(&["laptop"]).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");

    let first = Args {
        server: Some(server.base()),
        token: Some(token),
        database: Some("notes".into()),
        ..args(&db)
    };
    let client = open(&first).expect("init from the server");
    client
        .write(|tx| {
            tx.execute(
                "INSERT INTO notes(id, title, updated_at) VALUES (sync_id(), 'kept', 1)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    client.close();

    server.stop();
    let client = open(&args(&db)).expect("open offline, settings from the file");
    let app = NotesApp::new(client, Options { background: false }).unwrap();
    assert_eq!(app.client().status().unwrap().pending_changesets, 1);
    assert_eq!(app.client().fts_tables()[0].table, "notes");
}

#[test]
fn a_first_run_without_settings_names_them_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let e = open(&Args {
        server: Some("http://127.0.0.1:9".into()),
        ..args(&db)
    })
    .err()
    .expect("refused");
    assert!(matches!(e, OpenError::Missing { .. }));
    assert!(
        e.to_string().contains("missing: --token, --database"),
        "{e}"
    );

    // The binary says the same and exits non-zero, before any window.
    let out = Command::new(env!("CARGO_BIN_EXE_notes-desktop"))
        .arg(&db)
        .env_remove("SYNC_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing: --server, --token, --database"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}
