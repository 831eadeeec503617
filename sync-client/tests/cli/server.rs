//! A real `sync-server` in this process on 127.0.0.1:0, for the client commands' tests.
//! (The workspace's `tests` crate has a fuller harness; it depends on this crate, so this
//! one cannot use it.)

use std::path::PathBuf;
use sync_server::{AppState, ServerConfig, catalog, serve};

/// A running server with one database, `notes` (the demo schema), owned by `alice`.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: data.path().to_path_buf(),
            ..ServerConfig::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = AppState::new(config).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let c = catalog::open(data.path()).unwrap();
        catalog::add_user(&c, "alice").unwrap();
        catalog::create_database(&c, "notes", "alice").unwrap();
        Server {
            url,
            data,
            stop: Some(stop),
            rt: Some(rt),
            task: Some(task),
        }
    }

    /// A token for `device` of alice.
    pub fn token(&self, device: &str) -> String {
        let c = catalog::open(self.data.path()).unwrap();
        catalog::issue_token(&c, "alice", device).unwrap().token
    }

    /// The server's copy of `notes`.
    pub fn db_path(&self) -> PathBuf {
        let c = catalog::open(self.data.path()).unwrap();
        let id: i64 = c
            .query_row("SELECT id FROM databases WHERE name = 'notes'", [], |r| {
                r.get(0)
            })
            .unwrap();
        self.data.path().join("dbs").join(format!("{id}.db"))
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
