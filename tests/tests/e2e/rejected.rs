//! The local transaction is the unit, end to end: a transaction the server rejects is rejected
//! alone — the others of its batch apply — and is kept in the device's rejected queue, to be
//! redone or discarded; a rebase keeps every pending transaction its own outbox entry.

use session_sync_tests::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_client::transport::{EventStream, Transport};
use sync_client::{ClientConfig, ErrorKind, HttpTransport, RejectedBy, RejectedReason, SyncClient};
use sync_core::engine::conflict::ConflictKind;
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::pull::PullQuery;
use sync_core::protocol::push::{PushHeaders, PushResponse};
use sync_core::protocol::rowid::Lease;

/// The real HTTP transport, whose pushes after the first fail as a lost network would.
struct OnePushOnly {
    inner: HttpTransport,
    pushes: AtomicUsize,
}

impl Transport for OnePushOnly {
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
        if self.pushes.fetch_add(1, Ordering::SeqCst) > 0 {
            return Err(sync_client::Error::new(ErrorKind::Network, "cut off"));
        }
        self.inner.push(h, body)
    }
    fn pull(&self, query: &PullQuery) -> sync_client::Result<LogPage> {
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

/// The scenario: A inserts note 99, then tags note 1 — two acknowledged transactions —
/// while B deletes note 1. A's next sync pushes both in one batch; the tag would leave a
/// foreign-key violation, so it alone is rejected: note 99 reaches every device, the tag waits
/// in A's rejected queue with reason `foreign_key`.
#[test]
fn a_rejected_transaction_takes_nothing_else_with_it_and_waits_in_the_queue() {
    let server = Server::start();
    let p = server.pair();
    let (a, b) = (&p.a, &p.b);
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one', 1);
         INSERT INTO tags(id, name) VALUES (1, 'work');",
    );
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    exec(b, "DELETE FROM notes WHERE id = 1");
    b.sync_now().unwrap();
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (99, 'ninety-nine', 2)",
    );
    exec(a, "INSERT INTO note_tags VALUES (1, 1)");
    assert_eq!(a.status().unwrap().pending_changesets, 2);

    let report = a.sync_now().unwrap();
    assert_eq!(report.pushed_batches, 1, "{report:?}");
    assert_eq!(report.pushed_transactions, 2, "{report:?}");
    assert_eq!(report.rejected_transactions, 1, "{report:?}");
    b.sync_now().unwrap();
    for client in [a, b] {
        assert_eq!(
            query_text(client, "SELECT title FROM notes WHERE id = 99").as_deref(),
            Some("ninety-nine"),
            "note 99 is on every device"
        );
        assert_eq!(query_i64(client, "SELECT count(*) FROM note_tags"), 0);
    }
    let status = a.status().unwrap();
    assert_eq!(status.pending_changesets, 0);
    assert_eq!(status.rejected.len(), 1, "{status:?}");
    let rejected = &status.rejected[0];
    assert_eq!(rejected.reason, RejectedReason::ForeignKey);
    assert_eq!(rejected.by, RejectedBy::Server);
    assert_eq!(rejected.changes, 1);
    assert_eq!(
        rejected.conflicts.last().map(|c| c.kind),
        Some(ConflictKind::ForeignKey)
    );
    let shown = a.rejected_transaction(rejected.id).unwrap().unwrap();
    let change = &shown.changeset.inspect().unwrap()[0];
    assert_eq!(change.table, "note_tags");

    // Redo while note 1 is still gone: rejected again, nothing changes, it stays queued.
    let err = a.redo_rejected(rejected.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert_eq!(a.rejected().unwrap().len(), 1);
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    assert_eq!(query_i64(a, "SELECT count(*) FROM note_tags"), 0);

    // Once note 1 exists again, the redo is a new write that syncs like any other.
    exec(
        b,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one again', 3)",
    );
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    let redone = a.redo_rejected(rejected.id).unwrap();
    assert!(redone.outbox_seq.is_some());
    assert!(redone.conflicts.is_empty(), "{redone:?}");
    assert!(a.rejected().unwrap().is_empty());
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    assert_eq!(query_i64(b, "SELECT count(*) FROM note_tags"), 1);
    let err = a.redo_rejected(rejected.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    p.assert_converged(&server);
}

/// Discarding forgets a rejected transaction and changes nothing else.
#[test]
fn a_discarded_rejected_transaction_is_gone_and_nothing_else_changed() {
    let server = Server::start();
    let p = server.pair();
    let (a, b) = (&p.a, &p.b);
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'one', 1);
         INSERT INTO tags(id, name) VALUES (1, 'work');",
    );
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    exec(b, "DELETE FROM tags WHERE id = 1");
    b.sync_now().unwrap();
    exec(a, "INSERT INTO note_tags VALUES (1, 1)");
    a.sync_now().unwrap();
    let rejected = a.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    let before = dump(&p.path("a.db"))
        .into_iter()
        .filter(|(t, _)| !t.starts_with("_sync"))
        .collect::<Vec<_>>();
    assert!(a.discard_rejected(rejected[0].id).unwrap());
    assert!(!a.discard_rejected(rejected[0].id).unwrap());
    assert!(a.rejected().unwrap().is_empty());
    let after = dump(&p.path("a.db"))
        .into_iter()
        .filter(|(t, _)| !t.starts_with("_sync"))
        .collect::<Vec<_>>();
    assert_eq!(before, after);
    p.assert_converged(&server);
}

/// The wedge: B writes 40 offline transactions of ~300 KB while A writes once; B's
/// first push is followed by a rebase. Every transaction stays its own outbox entry (never one
/// merged changeset past the body limit), and all 4,000 rows arrive.
#[test]
fn a_rebase_keeps_forty_offline_transactions_forty_entries_and_all_rows_arrive() {
    let server = Server::start();
    let p = server.pair();
    let (a, b) = (&p.a, &p.b);
    for t in 0..40 {
        exec(
            b,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
                 INSERT INTO notes(id, title, body, updated_at)
                 SELECT 100000 + {t} * 1000 + i, 'offline', hex(randomblob(1500)), 1 FROM n;"
            ),
        );
    }
    let status = b.status().unwrap();
    assert_eq!(status.pending_changesets, 40);
    assert!(status.pending_bytes > 40 * 290_000, "{status:?}");
    exec(
        a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'from a', 1)",
    );
    a.sync_now().unwrap();
    // B's first batch is not clean (A's write lies between B's cursor and it), so a rebase
    // follows; the network then fails, which leaves the rebased outbox to look at.
    let path = p.path("b.db");
    b.close();
    let transport = OnePushOnly {
        inner: HttpTransport::new(
            &server.remote(&p.tokens.1, "notes"),
            Duration::from_secs(30),
        )
        .unwrap(),
        pushes: AtomicUsize::new(0),
    };
    let b = SyncClient::open(&path, ClientConfig::default())
        .unwrap()
        .with_transport(Arc::new(transport))
        .unwrap();
    let err = b.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    let status = b.status().unwrap();
    let first_batch = 40 - status.pending_changesets;
    assert!(
        (2..=4).contains(&first_batch),
        "a batch holds about 1 MiB of ~300 KB transactions: {first_batch}"
    );
    assert_eq!(b.status().unwrap().cursor, 2, "the rebase happened");
    // 40 transactions minus those the first batch settled: each still its own entry.
    let sizes: Vec<i64> = b
        .read(|c| {
            let mut stmt = c.prepare("SELECT length(changeset) FROM _sync_outbox ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .unwrap();
    assert_eq!(sizes.len() as u64, status.pending_changesets);
    assert!(
        sizes.iter().all(|n| (290_000..400_000).contains(n)),
        "{sizes:?}"
    );
    b.close();
    let b = SyncClient::open(&path, ClientConfig::default()).unwrap();
    let report = b.sync_now().unwrap();
    assert_eq!(report.pushed_transactions as u64, status.pending_changesets);
    assert_eq!(report.rejected_transactions, 0);
    assert_eq!(b.status().unwrap().pending_changesets, 0);
    a.sync_now().unwrap();
    for client in [a, &b] {
        assert_eq!(query_i64(client, "SELECT count(*) FROM notes"), 4001);
    }
    b.close();
    p.assert_converged(&server);
}
