//! Tests of the client façade that need its internals.

use super::*;
use crate::config::ClientConfig;
use crate::transport::EventStream;
use crate::transport::Transport;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;
use sync_core::engine::changeset::Changeset;
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::pull::LogEntry;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::pull::PullQuery;
use sync_core::protocol::push::PushHeaders;
use sync_core::protocol::push::PushResponse;
use sync_core::protocol::push::PushStatus;
use sync_core::protocol::rowid::Lease;

const SCHEMA: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);";

/// A server that has one remote insert to hand out, and hands it out only once `close`
/// has begun stopping the background (it holds the background lock, or has taken the
/// background out) — the moment a background sync that changed rows must still be able
/// to finish.
struct PullWhileClosing {
    client: OnceLock<std::sync::Weak<Inner>>,
    pulling: Mutex<Option<mpsc::Sender<()>>>,
    effect: Changeset,
}

fn unreachable() -> Error {
    Error::new(ErrorKind::Network, "not in this test")
}

impl Transport for PullWhileClosing {
    fn info(&self) -> Result<DatabaseInfo> {
        Err(unreachable())
    }
    fn push(&self, _: &PushHeaders, _: &[u8]) -> Result<PushResponse> {
        Err(unreachable())
    }
    fn upload_status(&self, _: &str) -> Result<Option<u64>> {
        Err(unreachable())
    }
    fn upload_part(&self, _: &str, _: u64, _: u64, _: &[u8]) -> Result<u64> {
        Err(unreachable())
    }
    fn push_uploaded(&self, _: &PushHeaders) -> Result<PushResponse> {
        Err(unreachable())
    }
    fn effect(&self, _: i64, _: &sync_core::protocol::upload::EffectQuery) -> Result<Vec<u8>> {
        Err(unreachable())
    }
    fn pull(&self, query: &PullQuery) -> Result<LogPage> {
        let since = query.effective().0;
        if since > 0 {
            return Ok(LogPage {
                head_seq: 1,
                ..LogPage::default()
            });
        }
        if let Some(pulling) = self.pulling.lock().unwrap().take() {
            let _ = pulling.send(());
        }
        let inner = self.client.get().and_then(std::sync::Weak::upgrade);
        while let Some(i) = &inner {
            match i.background.try_lock() {
                Err(_) => break,
                Ok(bg) if bg.is_none() => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        Ok(LogPage {
            head_seq: 1,
            entries: vec![LogEntry {
                seq: 1,
                status: PushStatus::Applied,
                origin: "elsewhere".into(),
                batch_id: "b1".into(),
                rejected: vec![],
                effect: self.effect.clone(),
                large: None,
            }],
            more: false,
            tip: None,
        })
    }
    fn snapshot(
        &self,
        _: &Path,
        _: &crate::transport::SnapshotRequest<'_>,
    ) -> Result<crate::transport::SnapshotGot> {
        Err(unreachable())
    }
    fn lease(&self, _: i64) -> Result<Lease> {
        Err(unreachable())
    }
    fn events(&self) -> Result<Box<dyn EventStream>> {
        Err(unreachable())
    }
}

/// An insert into `notes` as a changeset.
fn remote_insert() -> Changeset {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    sync_core::engine::outbox::install(&conn).unwrap();
    sync_core::engine::capture::capture(&conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'remote')", [])
    })
    .unwrap()
    .changeset
}

#[test]
fn close_during_a_background_sync_that_changed_rows_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(SCHEMA)
        .unwrap();
    let config = ClientConfig {
        remote: Some(RemoteConfig {
            url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            database: "notes".into(),
        }),
        ..ClientConfig::default()
    };
    let (pulling_tx, pulling_rx) = mpsc::channel();
    let transport = Arc::new(PullWhileClosing {
        client: OnceLock::new(),
        pulling: Mutex::new(Some(pulling_tx)),
        effect: remote_insert(),
    });
    let client = SyncClient::open(&path, config)
        .unwrap()
        .with_transport(Arc::clone(&transport) as Arc<dyn Transport>)
        .unwrap();
    let _ = transport.client.set(Arc::downgrade(&client.inner));
    client.start_background().unwrap();
    pulling_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the background sync pulls");

    let (done_tx, done_rx) = mpsc::channel();
    let closing = client.clone();
    std::thread::spawn(move || {
        closing.close();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("close() deadlocked with the background sync it was stopping");
    // The sync completed before the background stopped.
    let title: String = Connection::open(&path)
        .unwrap()
        .query_row("SELECT title FROM notes WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(title, "remote");
}
