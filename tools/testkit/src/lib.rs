//! # sync-testkit
//!
//! One in-process server harness, used by every test suite (the server's, the CLI's, the
//! workspace's black-box tests) and by the load tool: a real `sync-server` serving its real
//! router on a real socket on 127.0.0.1, over a data directory of its own.
//!
//! | item | what it is |
//! |---|---|
//! | [`InProcess`] | a server on the caller's tokio runtime (async test code, the load tool) |
//! | [`Blocking`] | the same on a runtime of its own (blocking test code: the client library is blocking) |
//! | [`Admin`] | the admin CLI's catalog operations on a data directory: users, databases, tokens |
//! | [`config`] | a configuration for a test: the given data directory, any free port |
//! | [`pg`] | a throwaway PostgreSQL cluster (`initdb` + `pg_ctl` in a temporary directory), one database per test |

pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use sync_server::{AppState, ServerConfig, catalog, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A configuration on `data`, listening on any free port of 127.0.0.1.
pub fn config(data: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        ..ServerConfig::default()
    }
}

/// A server running on the current tokio runtime until [`InProcess::stop`] (or drop, which
/// asks it to stop without waiting).
pub struct InProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub base: String,
    /// What it serves (for inspecting metrics and storage directly).
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    /// Starts a server with `config` (its `listen` address is bound as given: port 0 picks a
    /// free one). Panics when it cannot start: a test cannot go on without it.
    pub async fn start(config: ServerConfig) -> InProcess {
        let listener = TcpListener::bind(config.listen)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", config.listen));
        let state = AppState::new(config).expect("the server starts");
        let addr = listener.local_addr().expect("a bound socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            base: format!("http://{addr}"),
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops gracefully (requests in flight finish, databases close) and waits for it.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.signal_stop();
        match self.task.take() {
            Some(t) => t.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }

    fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// A server on a runtime of its own, for blocking code.
pub struct Blocking {
    server: Option<InProcess>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Blocking {
    /// Starts a server with `config` on a new two-thread runtime.
    pub fn start(config: ServerConfig) -> Blocking {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = rt.block_on(InProcess::start(config));
        Blocking {
            server: Some(server),
            rt: Some(rt),
        }
    }

    /// The running server (`None` after [`Blocking::stop`]).
    pub fn server(&self) -> Option<&InProcess> {
        self.server.as_ref()
    }

    /// Stops gracefully and waits; clients then get "connection refused". Idempotent.
    pub fn stop(&mut self) {
        if let (Some(server), Some(rt)) = (self.server.take(), self.rt.take()) {
            let _ = rt.block_on(server.stop());
            rt.shutdown_background();
        }
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin CLI's catalog operations on a data directory.
pub struct Admin<'a>(pub &'a Path);

impl Admin<'_> {
    /// A catalog connection, as the admin CLI has.
    pub fn catalog(&self) -> rusqlite::Connection {
        catalog::open(self.0).expect("the catalog opens")
    }

    /// Creates `user` (if new) and database `db` owned by it; returns a token for `device`.
    pub fn setup(&self, user: &str, db: &str, device: &str) -> String {
        let c = self.catalog();
        let _ = catalog::add_user(&c, user);
        catalog::create_database(&c, db, user).expect("a new database");
        catalog::issue_token(&c, user, device)
            .expect("a token")
            .token
    }

    /// A token for another device of `user`.
    pub fn token(&self, user: &str, device: &str) -> String {
        catalog::issue_token(&self.catalog(), user, device)
            .expect("a token")
            .token
    }

    /// The file of database `db`.
    pub fn db_path(&self, db: &str) -> PathBuf {
        let id: i64 = self
            .catalog()
            .query_row("SELECT id FROM databases WHERE name = ?1", [db], |r| {
                r.get(0)
            })
            .expect("the database exists");
        self.0.join("dbs").join(format!("{id}.db"))
    }
}
