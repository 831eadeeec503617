//! A real `sync-server` in this process on 127.0.0.1:0 (the shared harness,
//! `sync_testkit::Blocking`), with one database, `notes` (the demo schema), owned by `alice`.

use std::path::PathBuf;
use sync_testkit::{Admin, Blocking};

/// A running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    data: tempfile::TempDir,
    _running: Blocking,
}

impl Server {
    pub fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let running = Blocking::start(sync_testkit::config(data.path()));
        let url = running.server().expect("started").base.clone();
        let c = Admin(data.path()).catalog();
        sync_server::catalog::add_user(&c, "alice").unwrap();
        sync_server::catalog::create_database(&c, "notes", "alice").unwrap();
        Server {
            url,
            data,
            _running: running,
        }
    }

    /// A token for `device` of alice.
    pub fn token(&self, device: &str) -> String {
        Admin(self.data.path()).token("alice", device)
    }

    /// The server's copy of `notes`.
    pub fn db_path(&self) -> PathBuf {
        Admin(self.data.path()).db_path("notes")
    }
}
