//! Concurrent changes to one row end the way the server's conflict policy says, on every
//! device — including the device whose change lost, which must neither keep its version nor
//! keep re-pushing it.
//!
//! Delete vs update of one note (`notes` row 1, `title` 'orig', `updated_at` 1; the updater
//! sets `title` 'edited', `updated_at` 2), per policy and order of arrival at the server:
//!
//! | policy | delete first, update second | update first, delete second |
//! |---|---|---|
//! | last-push-wins | row gone; the update is a NOTFOUND conflict, omitted | row gone; the delete is a DATA conflict, replace (the delete wins) |
//! | first-write-wins | row gone; NOTFOUND, omitted | row stays 'edited'; DATA, omitted (the deleter gets the row back) |
//! | newest-wins:updated_at | row gone; NOTFOUND, omitted | row stays 'edited': it changed to a newer `updated_at` than the deleter saw |
//! | reject | row gone; the updater's batch is rejected (a local `batch_rejected` conflict) | row stays 'edited'; the deleter's batch is rejected |
//!
//! The second device learns the server's resolution from its push answer
//! (`status().server_conflicts`), or of the rejection from its status's local conflicts.

use session_sync_tests::*;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use sync_client::RejectedReason;
use sync_client::transport::{EventStream, Transport};
use sync_client::{ClientConfig, HttpTransport, SyncClient};
use sync_core::client::conflicts::LocalConflictKind;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::conflict::Resolution;
use sync_core::engine::decode::Op;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::value::Value;
use sync_core::protocol::conflicts::ConflictPage;
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::pull::PullQuery;
use sync_core::protocol::push::PushHeaders;
use sync_core::protocol::push::PushResponse;
use sync_core::protocol::rowid::Lease;

/// Three devices of one user on a server whose `notes` table has `policy`; note 1 exists
/// everywhere.
struct Setup {
    server: Server,
    /// Device a's token (for the server's HTTP API).
    token: String,
    dir: tempfile::TempDir,
    a: SyncClient,
    b: SyncClient,
    c: SyncClient,
}

impl Setup {
    fn new(policy: Policy) -> Setup {
        let server = Server::start_with(|cfg| {
            cfg.policies = PolicySet::uniform(Policy::Replace).with_table("notes", policy);
        });
        let ta = server.setup("alice", "notes", "laptop");
        let dir = tempfile::tempdir().unwrap();
        let a = server.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
        exec(
            &a,
            "INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'orig', '', 1)",
        );
        a.sync_now().unwrap();
        let device = |name: &str| {
            let t = server.token("alice", name);
            server.notes_client(
                dir.path(),
                &format!("{name}.db"),
                &t,
                ClientConfig::default(),
            )
        };
        let b = device("phone");
        let c = device("tablet");
        Setup {
            server,
            token: ta,
            dir,
            a,
            b,
            c,
        }
    }

    /// Closes the clients and checks that all four databases are equal.
    fn assert_converged(self) {
        for client in [&self.a, &self.b, &self.c] {
            let status = client.status().unwrap();
            assert_eq!(status.pending_changesets, 0, "{status:?}");
            assert_eq!(status.inflight_batch, None);
            client.close();
        }
        let p = |name: &str| self.dir.path().join(name);
        assert_all_equal(&[
            &self.server.db_path("notes"),
            &p("a.db"),
            &p("phone.db"),
            &p("tablet.db"),
        ]);
    }
}

fn title(client: &SyncClient) -> Option<String> {
    query_text(client, "SELECT title FROM notes WHERE id = 1")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum First {
    Delete,
    Update,
}

/// What a case should end with.
struct Expect {
    /// The note's title on every device, `None` when deleted.
    title: Option<&'static str>,
    /// The server's conflict record: kind, the losing batch's op, resolution.
    conflict: (ConflictKind, Op, Resolution),
    /// The second pusher's batch is rejected (else applied, and its status shows the
    /// server's conflict).
    rejected: bool,
}

#[test]
fn delete_vs_update_follows_the_server_policy_on_every_device() {
    use ConflictKind::{Data, NotFound};
    use Resolution::{Abort, Omit, Replace};
    let newest = || Policy::NewestWins {
        column: "updated_at".into(),
    };
    #[rustfmt::skip]
    let cases: Vec<(Policy, First, Expect)> = vec![
        (Policy::Replace, First::Delete, Expect { title: None, conflict: (NotFound, Op::Update, Omit), rejected: false }),
        (Policy::Replace, First::Update, Expect { title: None, conflict: (Data, Op::Delete, Replace), rejected: false }),
        (Policy::Omit, First::Delete, Expect { title: None, conflict: (NotFound, Op::Update, Omit), rejected: false }),
        (Policy::Omit, First::Update, Expect { title: Some("edited"), conflict: (Data, Op::Delete, Omit), rejected: false }),
        (newest(), First::Delete, Expect { title: None, conflict: (NotFound, Op::Update, Omit), rejected: false }),
        (newest(), First::Update, Expect { title: Some("edited"), conflict: (Data, Op::Delete, Omit), rejected: false }),
        (Policy::Abort, First::Delete, Expect { title: None, conflict: (NotFound, Op::Update, Abort), rejected: true }),
        (Policy::Abort, First::Update, Expect { title: Some("edited"), conflict: (Data, Op::Delete, Abort), rejected: true }),
    ];
    for (policy, first, expect) in cases {
        let case = format!("{policy:?}, {first:?} first");
        let s = Setup::new(policy);
        // Offline: a deletes the note, b edits it.
        exec(&s.a, "DELETE FROM notes WHERE id = 1");
        exec(
            &s.b,
            "UPDATE notes SET title = 'edited', updated_at = 2 WHERE id = 1",
        );
        let (winner, loser, loser_device) = match first {
            First::Delete => (&s.a, &s.b, "phone"),
            First::Update => (&s.b, &s.a, "laptop"),
        };
        winner.sync_now().unwrap();
        let report = loser.sync_now().unwrap();
        winner.sync_now().unwrap();
        s.c.sync_now().unwrap();

        for client in [&s.a, &s.b, &s.c] {
            assert_eq!(title(client).as_deref(), expect.title, "{case}");
        }
        let records = s.server.conflicts("notes");
        assert_eq!(records.len(), 1, "{case}: {records:?}");
        // The same record over the API (`GET …/conflicts`).
        let (status, body) = s
            .server
            .http_get(&s.token, "/v1/databases/notes/conflicts?after=0");
        assert_eq!(status, 200, "{body}");
        let page: ConflictPage = serde_json::from_str(&body).unwrap();
        assert_eq!(page.conflicts, records, "{case}");
        let record = &records[0];
        assert_eq!(
            (
                record.conflict.kind,
                record.conflict.op.unwrap(),
                record.conflict.resolution
            ),
            expect.conflict,
            "{case}"
        );
        assert_eq!(record.device, loser_device, "{case}");
        assert_eq!(record.conflict.table, "notes");
        assert_eq!(record.conflict.pk, vec![Value::Integer(1)]);

        let status = loser.status().unwrap();
        assert!(status.local_conflicts.is_empty(), "{case}");
        if expect.rejected {
            // The whole transaction is rejected and kept, with the row that blocked it.
            assert_eq!(report.rejected_transactions, 1, "{case}");
            assert_eq!(report.server_conflicts, 0, "{case}");
            assert!(status.server_conflicts.is_empty(), "{case}");
            assert_eq!(status.rejected.len(), 1, "{case}");
            let rejected = &status.rejected[0];
            assert_eq!(rejected.reason, RejectedReason::Policy, "{case}");
            assert_eq!(
                rejected.conflicts.last(),
                Some(&record.conflict),
                "{case}: the row that blocked it"
            );
            assert_eq!(rejected.changes, 1, "{case}: the dropped change is kept");
        } else {
            assert_eq!(report.rejected_transactions, 0, "{case}");
            assert!(status.rejected.is_empty(), "{case}");
            assert_eq!(
                status.server_conflicts.len(),
                1,
                "{case}: the loser sees the server's conflict"
            );
            assert_eq!(
                status.server_conflicts[0].conflict, record.conflict,
                "{case}"
            );
            assert_eq!(report.server_conflicts, 1, "{case}");
        }
        assert!(
            winner.status().unwrap().server_conflicts.is_empty(),
            "{case}"
        );

        // The app clears what it has shown.
        let listed = status.local_conflicts.len() + status.server_conflicts.len();
        assert_eq!(loser.clear_conflicts(&status).unwrap(), listed, "{case}");
        let cleared = loser.status().unwrap();
        assert!(cleared.local_conflicts.is_empty(), "{case}");
        assert!(cleared.server_conflicts.is_empty(), "{case}");
        assert_eq!(loser.clear_conflicts(&status).unwrap(), 0, "{case}");
        s.assert_converged();
    }
}

/// The device that lost on the server (first-write-wins, or newest-wins with an older
/// timestamp) shows the server's value after its sync and has nothing left to push; with a
/// newer timestamp, newest-wins lets it win everywhere.
#[test]
fn the_device_the_server_ruled_against_converges_to_the_servers_value() {
    let newest = || Policy::NewestWins {
        column: "updated_at".into(),
    };
    // (policy, b's updated_at, the title everyone ends with, b's change lost)
    let cases = [
        (Policy::Omit, 9, "by a", true),
        (newest(), 3, "by a", true),
        (newest(), 9, "by b", false),
    ];
    for (policy, b_time, final_title, b_lost) in cases {
        let case = format!("{policy:?}, b at {b_time}");
        let s = Setup::new(policy);
        exec(
            &s.a,
            "UPDATE notes SET title = 'by a', updated_at = 5 WHERE id = 1",
        );
        s.a.sync_now().unwrap();
        exec(
            &s.b,
            &format!("UPDATE notes SET title = 'by b', updated_at = {b_time} WHERE id = 1"),
        );
        assert_eq!(
            title(&s.b).as_deref(),
            Some("by b"),
            "local edits show at once"
        );
        let report = s.b.sync_now().unwrap();
        assert_eq!(title(&s.b).as_deref(), Some(final_title), "{case}");
        let status = s.b.status().unwrap();
        assert_eq!(
            status.pending_changesets, 0,
            "{case}: nothing left to re-push"
        );
        assert_eq!(status.inflight_batch, None, "{case}");
        assert!(status.local_conflicts.is_empty(), "{case}");
        assert_eq!(report.server_conflicts, 1, "{case}");
        let seen = &status.server_conflicts[0].conflict;
        assert_eq!(seen.kind, ConflictKind::Data, "{case}");
        let expected = if b_lost {
            Resolution::Omit
        } else {
            Resolution::Replace
        };
        assert_eq!(seen.resolution, expected, "{case}");
        // The server's current row is part of the record: what b's change met.
        assert!(seen.current.is_some(), "{case}");
        // A second sync changes nothing on b.
        let again = s.b.sync_now().unwrap();
        assert_eq!(
            (again.pushed_batches, again.pulled_entries),
            (0, 0),
            "{case}"
        );
        s.a.sync_now().unwrap();
        s.c.sync_now().unwrap();
        assert_eq!(title(&s.a).as_deref(), Some(final_title), "{case}");
        assert_eq!(title(&s.c).as_deref(), Some(final_title), "{case}");
        s.assert_converged();
    }
}

/// The real HTTP transport, with the first pull held until the test lets it go.
struct GatedPull {
    inner: HttpTransport,
    /// Told when the first pull starts; the pull then waits for `go`.
    pulling: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Transport for GatedPull {
    fn upload_status(&self, batch_id: &str) -> sync_client::Result<Option<u64>> {
        self.inner.upload_status(batch_id)
    }
    fn upload_part(
        &self,
        batch_id: &str,
        offset: u64,
        total: u64,
        part: &[u8],
    ) -> sync_client::Result<u64> {
        self.inner.upload_part(batch_id, offset, total, part)
    }
    fn push_uploaded(&self, headers: &PushHeaders) -> sync_client::Result<PushResponse> {
        self.inner.push_uploaded(headers)
    }
    fn effect(
        &self,
        seq: i64,
        query: &sync_core::protocol::upload::EffectQuery,
    ) -> sync_client::Result<Vec<u8>> {
        self.inner.effect(seq, query)
    }
    fn info(&self) -> sync_client::Result<DatabaseInfo> {
        self.inner.info()
    }
    fn push(&self, h: &PushHeaders, body: &[u8]) -> sync_client::Result<PushResponse> {
        self.inner.push(h, body)
    }
    fn pull(&self, query: &PullQuery) -> sync_client::Result<LogPage> {
        if let Some(pulling) = self.pulling.lock().unwrap().take() {
            pulling.send(()).unwrap();
            let go = self.go.lock().unwrap().take().unwrap();
            go.recv().unwrap();
        }
        self.inner.pull(query)
    }
    fn snapshot(
        &self,
        dest: &Path,
        request: &sync_client::transport::SnapshotRequest<'_>,
    ) -> sync_client::Result<sync_client::transport::SnapshotGot> {
        self.inner.snapshot(dest, request)
    }
    fn lease(&self, size: i64) -> sync_client::Result<Lease> {
        self.inner.lease(size)
    }
    fn events(&self) -> sync_client::Result<Box<dyn EventStream>> {
        self.inner.events()
    }
}

/// A device that pulls another device's delete while its own update of that row is still
/// pending (written while its sync was between push and pull — the writer is never held
/// across network I/O) cannot keep the update: its status shows a `row_deleted_remotely`
/// local conflict, the row is gone, and nothing is left to push.
#[test]
fn an_update_of_a_row_deleted_remotely_becomes_a_local_conflict() {
    let mut s = Setup::new(Policy::Replace);
    exec(&s.a, "DELETE FROM notes WHERE id = 1");
    s.a.sync_now().unwrap();

    let path = s.dir.path().join("phone.db");
    s.b.close();
    let remote = s.server.remote(&s.server.token("alice", "phone"), "notes");
    let (pulling_tx, pulling_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let transport = GatedPull {
        inner: HttpTransport::new(&remote, std::time::Duration::from_secs(10)).unwrap(),
        pulling: Mutex::new(Some(pulling_tx)),
        go: Mutex::new(Some(go_rx)),
    };
    let b = SyncClient::open(&path, ClientConfig::default())
        .unwrap()
        .with_transport(Arc::new(transport))
        .unwrap();
    let syncing = {
        let b = b.clone();
        std::thread::spawn(move || b.sync_now())
    };
    // The sync found nothing to push and is about to pull the delete: edit the row now.
    pulling_rx.recv().unwrap();
    exec(&b, "UPDATE notes SET title = 'edited offline' WHERE id = 1");
    assert_eq!(b.status().unwrap().pending_changesets, 1);
    go_tx.send(()).unwrap();
    let report = syncing.join().unwrap().unwrap();

    assert_eq!(report.new_conflicts, 1);
    let status = b.status().unwrap();
    assert_eq!(status.local_conflicts.len(), 1, "{status:?}");
    let conflict = &status.local_conflicts[0];
    assert_eq!(conflict.kind, LocalConflictKind::RowDeletedRemotely);
    assert_eq!(conflict.table, "notes");
    assert_eq!(conflict.op, Some(Op::Update));
    assert_eq!(conflict.pk, vec![Value::Integer(1)]);
    assert_eq!(status.pending_changesets, 0);
    assert_eq!(title(&b), None);
    // The server never saw the update: no conflict there.
    assert!(s.server.conflicts("notes").is_empty());
    s.b = b;
    s.c.sync_now().unwrap();
    s.assert_converged();
}

/// Clearing conflicts removes exactly those of the status the app was shown: one recorded
/// after that status stays until a later status lists it.
#[test]
fn clearing_conflicts_keeps_those_recorded_after_the_status() {
    let s = Setup::new(Policy::Replace);
    let clash = |title_a: &str, title_b: &str| {
        exec(
            &s.a,
            &format!("UPDATE notes SET title = '{title_a}' WHERE id = 1"),
        );
        exec(
            &s.b,
            &format!("UPDATE notes SET title = '{title_b}' WHERE id = 1"),
        );
        s.a.sync_now().unwrap();
        assert_eq!(s.b.sync_now().unwrap().server_conflicts, 1);
    };
    clash("a1", "b1");
    let shown = s.b.status().unwrap();
    assert_eq!(
        (shown.local_conflicts.len(), shown.server_conflicts.len()),
        (0, 1)
    );
    clash("a2", "b2");
    assert_eq!(s.b.status().unwrap().server_conflicts.len(), 2);
    assert_eq!(s.b.clear_conflicts(&shown).unwrap(), 1);
    let left = s.b.status().unwrap();
    assert_eq!(left.server_conflicts.len(), 1, "the newer conflict stays");
    assert!(left.server_conflicts[0].id > shown.server_conflicts[0].id);
    assert_eq!(s.b.clear_conflicts(&left).unwrap(), 1);
    let none = s.b.status().unwrap();
    assert!(none.local_conflicts.is_empty() && none.server_conflicts.is_empty());
    assert_eq!(
        query_text(&s.b, "SELECT title FROM notes WHERE id = 1").as_deref(),
        Some("b2")
    );
    s.a.sync_now().unwrap();
    s.c.sync_now().unwrap();
    s.assert_converged();
}
