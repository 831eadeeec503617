//! A real `sync-server` in this process on 127.0.0.1:0 (the shared harness,
//! `sync_testkit::Blocking`), with one database, `notes` (the demo schema), owned by `alice`.

use std::path::{Path, PathBuf};
use sync_testkit::{Admin, Blocking};

/// A running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    data: tempfile::TempDir,
    running: Blocking,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with_schema(None)
    }

    /// A server running the migrations in `schema` (`--schema DIR`), or the demo schema.
    pub fn start_with_schema(schema: Option<&Path>) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = sync_testkit::config(data.path());
        config.schema_dir = schema.map(Path::to_path_buf);
        let running = Blocking::start(config);
        let url = running.server().expect("started").base.clone();
        let c = Admin(data.path()).catalog();
        sync_server::catalog::add_user(&c, "alice").unwrap();
        sync_server::catalog::create_database(&c, "notes", "alice").unwrap();
        Server { url, data, running }
    }

    /// Stops the server and starts it again on the same data directory and port with the
    /// migrations in `schema` (as an operator deploys a new migration).
    pub fn restart_with_schema(&mut self, schema: &Path) {
        let addr = self.running.server().expect("running").addr;
        self.running.stop();
        let mut config = sync_testkit::config(self.data.path());
        config.listen = addr;
        config.schema_dir = Some(schema.to_path_buf());
        self.running = Blocking::start(config);
        assert_eq!(self.running.server().expect("started").addr, addr);
    }

    /// A token for `device` of alice.
    pub fn token(&self, device: &str) -> String {
        Admin(self.data.path()).token("alice", device)
    }

    /// The server's copy of `notes`.
    pub fn db_path(&self) -> PathBuf {
        Admin(self.data.path()).db_path("notes")
    }

    /// Revokes `token`, as `sync-server token revoke TOKEN` does.
    pub fn revoke(&self, token: &str) {
        let n = sync_server::catalog::revoke_tokens(
            &Admin(self.data.path()).catalog(),
            &sync_server::catalog::TokenSelector::TokenOrPrefix(token.to_string()),
        )
        .unwrap();
        assert_eq!(n, 1, "one token revoked");
    }
}
