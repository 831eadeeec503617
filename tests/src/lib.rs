//! Black-box tests across crates (server and clients over a real socket) live in this
//! package's `tests/` directory; this library holds what they share: a server running in this
//! process on 127.0.0.1:0, admin shortcuts, client databases, and comparisons.
//!
//! The `sync-cli` tests are not here: Cargo builds a binary before the integration tests of
//! its own package only (and gives them its path in `CARGO_BIN_EXE_sync-cli`), so they live in
//! `sync-client/tests/cli/`.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use sync_client::{ClientConfig, RemoteConfig, SyncClient};
use sync_server::{AppState, ServerConfig, catalog, serve};

/// A sync server on its own tokio runtime (the client library is blocking).
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub state: AppState,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        f(&mut config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = AppState::new(config).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            state,
            data,
            stop: Some(stop),
            task: Some(task),
            rt: Some(rt),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Creates `user` (if new) and database `db`; returns a token for device `device`.
    pub fn setup(&self, user: &str, db: &str, device: &str) -> String {
        let c = catalog::open(self.data.path()).unwrap();
        let _ = catalog::add_user(&c, user);
        catalog::create_database(&c, db, user).unwrap();
        catalog::issue_token(&c, user, device).unwrap().token
    }

    /// A token for another device of `user`.
    pub fn token(&self, user: &str, device: &str) -> String {
        let c = catalog::open(self.data.path()).unwrap();
        catalog::issue_token(&c, user, device).unwrap().token
    }

    /// The server's file for database `db`.
    pub fn db_path(&self, db: &str) -> PathBuf {
        let c = catalog::open(self.data.path()).unwrap();
        let id: i64 = c
            .query_row("SELECT id FROM databases WHERE name = ?1", [db], |r| {
                r.get(0)
            })
            .unwrap();
        self.data.path().join("dbs").join(format!("{id}.db"))
    }

    pub fn remote(&self, token: &str, db: &str) -> RemoteConfig {
        RemoteConfig {
            url: self.base.clone(),
            token: token.to_string(),
            database: db.to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let (Some(rt), Some(task)) = (self.rt.take(), self.task.take()) {
            let _ = rt.block_on(task);
            rt.shutdown_background();
        }
    }
}

/// A new client database in `dir` bootstrapped from the server.
pub fn init_client(
    dir: &Path,
    name: &str,
    remote: RemoteConfig,
    config: ClientConfig,
) -> SyncClient {
    SyncClient::init(dir.join(name), remote, config).unwrap()
}

/// Rows of every app table (internal `_sync_*` tables excluded), sorted.
pub fn dump(path: &Path) -> Vec<(String, Vec<Vec<rusqlite::types::Value>>)> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables = sync_core::schema::user_tables(&conn).unwrap();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n).map(|i| r.get(i)).collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (t, rows)
        })
        .collect()
}

/// `sqldiff --primarykey` between two databases, per app table: empty when equal.
pub fn sqldiff(a: &Path, b: &Path) -> String {
    let conn = Connection::open_with_flags(a, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables = sync_core::schema::user_tables(&conn).unwrap();
    let mut out = String::new();
    for t in tables {
        let o = std::process::Command::new("sqldiff")
            .arg("--primarykey")
            .arg("--table")
            .arg(&t)
            .arg(a)
            .arg(b)
            .output()
            .expect("sqldiff is installed (sqlite3-tools)");
        assert!(
            o.status.success(),
            "sqldiff failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}
