//! The faults of the property test one at a time, scripted, with the outcome a user would
//! check: a lost answer, a write while a push is on the wire, a restart with a batch in
//! flight. A divergence the property test finds gets its minimised case here too.

use crate::faults::{Carriers, Fate, FaultyTransport, HookAt, Trace};
use session_sync_tests::{Server, assert_all_equal, exec, query_i64, query_text};
use std::sync::Arc;
use sync_client::{ClientConfig, ErrorKind, HttpTransport, SyncClient};

const DB: &str = "notes";

/// A server with the demo schema and devices whose transports inject scripted faults.
struct Rig {
    server: Server,
    dir: tempfile::TempDir,
    trace: Trace,
    carriers: Carriers,
}

impl Rig {
    fn new() -> Rig {
        let server = Server::start();
        server.setup("alice", DB, "setup");
        Rig {
            server,
            dir: tempfile::tempdir().unwrap(),
            trace: Trace::default(),
            carriers: Carriers::default(),
        }
    }

    fn config() -> ClientConfig {
        ClientConfig {
            retries: 1,
            ..ClientConfig::default()
        }
    }

    /// `SyncClient::init` for `device`, with a fault-injecting transport.
    fn device(&self, device: &str) -> (SyncClient, Arc<FaultyTransport>) {
        let remote = self.server.remote(&self.server.token("alice", device), DB);
        let client = SyncClient::init(self.path(device), remote, Rig::config()).unwrap();
        self.attach(device, client)
    }

    /// Closes `client` and opens its database again, with a new transport.
    fn reopen(&self, device: &str, client: SyncClient) -> (SyncClient, Arc<FaultyTransport>) {
        client.close();
        drop(client);
        self.attach(
            device,
            SyncClient::open(self.path(device), Rig::config()).unwrap(),
        )
    }

    fn attach(&self, device: &str, client: SyncClient) -> (SyncClient, Arc<FaultyTransport>) {
        let remote = self.server.remote(&self.server.token("alice", device), DB);
        let http = HttpTransport::new(&remote, std::time::Duration::from_secs(30)).unwrap();
        let transport = Arc::new(FaultyTransport::new(
            http,
            device.to_string(),
            0,
            Arc::clone(&self.trace),
            Arc::clone(&self.carriers),
            crate::faults::Uploads::default(),
        ));
        let client = client
            .with_transport(Arc::clone(&transport) as Arc<dyn sync_client::Transport>)
            .unwrap();
        (client, transport)
    }

    fn path(&self, device: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{device}.db"))
    }

    fn trace(&self) -> String {
        self.trace.lock().unwrap().join("\n")
    }

    /// No batch was pushed twice; then closes the devices and checks that their files equal
    /// the server's database.
    fn assert_converged(&self, devices: &[(&SyncClient, &str)]) {
        self.assert_no_batch_resent();
        let mut paths = vec![self.server.db_path(DB)];
        for (client, device) in devices {
            client.close();
            paths.push(self.path(device));
        }
        assert_all_equal(&paths.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    }

    /// Every pushed batch the server processed, by the rows it carried: none twice.
    fn assert_no_batch_resent(&self) {
        let carriers = self.carriers.lock().unwrap();
        assert!(
            carriers.values().all(|b| b.len() <= 1),
            "a change was pushed under two batch ids: {carriers:?}"
        );
    }
}

fn insert_note(client: &SyncClient, id: i64, title: &str) {
    exec(
        client,
        &format!("INSERT INTO notes(id, title, body, updated_at) VALUES ({id}, '{title}', '', 1)"),
    );
}

fn assert_settled(client: &SyncClient) {
    let status = client.status().unwrap();
    assert_eq!(status.pending_changesets, 0, "{status:?}");
    assert_eq!(status.inflight_batch, None, "{status:?}");
}

/// A push the server committed but whose answer never arrived is retried under the same
/// batch id: the server answers "duplicate" and applies nothing, so an edit another device
/// made in between is not overwritten by a second application of the old batch.
#[test]
fn a_push_whose_answer_was_lost_is_not_applied_twice() {
    let rig = Rig::new();
    let (a, ta) = rig.device("phone");
    let (b, _) = rig.device("laptop");
    insert_note(&a, 1, "from a");
    ta.script([Fate::LoseAnswer]);
    let err = a.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert_eq!(rig.server.log(DB).len(), 1, "the server committed the push");

    b.sync_now().unwrap();
    exec(&b, "UPDATE notes SET title = 'edited on b' WHERE id = 1");
    b.sync_now().unwrap();

    a.sync_now().unwrap();
    b.sync_now().unwrap();
    for client in [&a, &b] {
        assert_settled(client);
        assert_eq!(
            query_text(client, "SELECT title FROM notes WHERE id = 1").as_deref(),
            Some("edited on b"),
            "{}",
            rig.trace()
        );
    }
    let log = rig.server.log(DB);
    assert_eq!(
        log.iter()
            .filter(|(_, device, ..)| device == "phone")
            .count(),
        1,
        "one log entry for the phone's one batch: {log:?}"
    );
    rig.assert_converged(&[(&a, "phone"), (&b, "laptop")]);
}

/// A local write that commits while a push is on the wire is not part of that batch; it
/// stays pending and goes out with the next push.
#[test]
fn a_write_during_a_push_is_kept_and_pushed_next() {
    let rig = Rig::new();
    let (a, ta) = rig.device("phone");
    insert_note(&a, 1, "in the batch");
    let writer = a.clone();
    ta.set_hook(
        HookAt::Push,
        Box::new(move || {
            // Were the writer held across the request, this write would wait forever: give
            // it a deadline so that fails instead of hanging.
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                insert_note(&writer, 2, "written during the push");
                let _ = done.send(());
            });
            finished
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a local write completes while a push is on the wire");
        }),
    );
    a.sync_now().unwrap();
    assert!(!ta.clear_hook(), "the hook ran during the push");
    assert_eq!(query_i64(&a, "SELECT count(*) FROM notes"), 2);
    a.sync_now().unwrap();
    assert_settled(&a);
    let (b, _) = rig.device("laptop");
    assert_eq!(query_i64(&b, "SELECT count(*) FROM notes"), 2);
    rig.assert_converged(&[(&a, "phone"), (&b, "laptop")]);
}

/// A device closed with a batch whose answer was lost, reopened, and synced: the batch in
/// flight survived the restart, is retried under its id and settles; nothing is lost or
/// applied twice, also when the pull that follows loses its answer once.
#[test]
fn a_batch_in_flight_survives_a_reopen_and_a_lost_pull() {
    let rig = Rig::new();
    let (a, ta) = rig.device("phone");
    let (b, _) = rig.device("laptop");
    insert_note(&a, 1, "one");
    insert_note(&a, 2, "two");
    ta.script([Fate::LoseAnswer]);
    assert!(a.sync_now().is_err());
    let inflight = a.status().unwrap().inflight_batch;
    assert!(inflight.is_some());
    b.sync_now().unwrap();
    exec(&b, "DELETE FROM notes WHERE id = 1");
    insert_note(&b, 3, "three");
    b.sync_now().unwrap();

    let (a, ta) = rig.reopen("phone", a);
    assert_eq!(a.status().unwrap().inflight_batch, inflight);
    // The retried push is answered (duplicate); the pull's answer is lost.
    ta.script([Fate::Deliver, Fate::LoseAnswer]);
    assert!(a.sync_now().is_err());
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    for client in [&a, &b] {
        assert_settled(client);
        // The laptop saw the phone's notes (the push had committed) and deleted one.
        assert_eq!(
            query_i64(client, "SELECT count(*) FROM notes"),
            2,
            "{}",
            rig.trace()
        );
    }
    rig.assert_converged(&[(&a, "phone"), (&b, "laptop")]);
}
