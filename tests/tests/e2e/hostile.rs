//! A damaged or hostile server: nothing it sends may write this device's internal tables. A
//! pulled log entry that names one — in any letter case — is refused as corruption, and the
//! local database is left exactly as it was.

use rusqlite::Connection;
use session_sync_tests::*;
use std::path::Path;
use std::sync::Arc;
use sync_client::{
    ClientConfig, ErrorKind, EventStream, HttpTransport, Result, SyncClient, Transport,
};
use sync_core::engine::changeset::Changeset;
use sync_core::engine::decode::Change;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::pull::LogEntry;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::pull::PullQuery;
use sync_core::protocol::push::PushHeaders;
use sync_core::protocol::push::PushResponse;
use sync_core::protocol::push::PushStatus;
use sync_core::protocol::rowid::Lease;

/// The real server, except that every pull answers one planted entry right after the cursor.
struct Planting {
    real: HttpTransport,
    effect: Changeset,
}

impl Transport for Planting {
    fn upload_status(&self, batch_id: &str) -> sync_client::Result<Option<u64>> {
        self.real.upload_status(batch_id)
    }
    fn upload_part(
        &self,
        batch_id: &str,
        offset: u64,
        total: u64,
        part: &[u8],
    ) -> sync_client::Result<u64> {
        self.real.upload_part(batch_id, offset, total, part)
    }
    fn push_uploaded(&self, headers: &PushHeaders) -> sync_client::Result<PushResponse> {
        self.real.push_uploaded(headers)
    }
    fn effect(
        &self,
        seq: i64,
        query: &sync_core::protocol::upload::EffectQuery,
    ) -> sync_client::Result<Vec<u8>> {
        self.real.effect(seq, query)
    }
    fn info(&self) -> Result<DatabaseInfo> {
        self.real.info()
    }
    fn push(&self, headers: &PushHeaders, body: &[u8]) -> Result<PushResponse> {
        self.real.push(headers, body)
    }
    fn pull(&self, query: &PullQuery) -> Result<LogPage> {
        let since = query.effective().0;
        Ok(LogPage {
            head_seq: since + 1,
            entries: vec![LogEntry {
                seq: since + 1,
                status: PushStatus::Applied,
                origin: "someone-else".into(),
                batch_id: "planted".into(),
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
        dest: &Path,
        request: &sync_client::transport::SnapshotRequest<'_>,
    ) -> Result<sync_client::transport::SnapshotGot> {
        self.real.snapshot(dest, request)
    }
    fn lease(&self, size: i64) -> Result<Lease> {
        self.real.lease(size)
    }
    fn events(&self) -> Result<Box<dyn EventStream>> {
        self.real.events()
    }
}

fn insert(table: &str, pk: &[u8], values: Vec<Value>) -> Change {
    Change {
        table: table.into(),
        op: Op::Insert,
        indirect: false,
        pk: pk.to_vec(),
        old: None,
        new: Some(values.into_iter().map(Some).collect()),
    }
}

/// Every table of the file and every row, internal tables included — except `_sync_remote`,
/// where a failed sync notes its error for `status`.
fn everything(path: &Path) -> Vec<(String, Vec<Vec<rusqlite::types::Value>>)> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name != '_sync_remote' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            (t, rows)
        })
        .collect()
}

#[test]
fn a_pulled_entry_writing_an_internal_table_is_refused_and_changes_nothing() {
    let server = Server::start();
    let token = server.setup("alice", "notes", "laptop");
    let dir = tempfile::tempdir().unwrap();
    let a = server.notes_client(dir.path(), "a.db", &token, ClientConfig::default());
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'synced', 1)",
    );
    a.sync_now().unwrap();
    a.close();
    let path = dir.path().join("a.db");
    let planted_outbox = |table: &str| {
        vec![insert(
            table,
            &[1, 0, 0],
            vec![
                Value::Integer(999),
                Value::Blob(b"forged".to_vec()),
                Value::Integer(0),
            ],
        )]
    };
    let cases: Vec<(&str, Vec<Change>)> = vec![
        ("_SYNC_OUTBOX", planted_outbox("_SYNC_OUTBOX")),
        ("_sync_outbox", planted_outbox("_sync_outbox")),
        (
            "_Sync_Client",
            vec![insert(
                "_Sync_Client",
                &[1, 0],
                vec![Value::Text("cursor".into()), Value::Integer(1_000_000)],
            )],
        ),
        (
            "sqlite_SEQUENCE",
            vec![insert(
                "sqlite_SEQUENCE",
                &[1, 0],
                vec![Value::Text("notes".into()), Value::Integer(5)],
            )],
        ),
        // Behind an ordinary change in the same effect.
        (
            "_sync_inflight",
            vec![
                insert(
                    "notes",
                    &[1, 0, 0, 0],
                    vec![
                        Value::Integer(50),
                        Value::Text("cover".into()),
                        Value::Null,
                        Value::Integer(1),
                    ],
                ),
                insert(
                    "_sync_inflight",
                    &[1, 0, 0, 0, 0],
                    vec![
                        Value::Integer(1),
                        Value::Text("forged".into()),
                        Value::Integer(0),
                        Value::Null,
                        Value::Null,
                    ],
                ),
            ],
        ),
    ];
    for (table, changes) in cases {
        let effect = Changeset::from_bytes(sync_core::engine::encode::encode(&changes));
        let real = HttpTransport::new(
            &server.remote(&token, "notes"),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let a = SyncClient::open(&path, ClientConfig::default())
            .unwrap()
            .with_transport(Arc::new(Planting { real, effect }))
            .unwrap();
        let before = everything(&path);
        let err = a.sync_now().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{table}: {err}");
        assert!(err.to_string().contains(table), "{table}: {err}");
        assert_eq!(
            everything(&path),
            before,
            "{table}: the local database changed"
        );
        assert!(a.status().unwrap().last_error.is_some());
        a.close();
    }
    // With the honest server again, syncing works and the copies agree.
    let a = SyncClient::open(&path, ClientConfig::default()).unwrap();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'after', 2)",
    );
    a.sync_now().unwrap();
    assert_eq!(a.status().unwrap().pending_changesets, 0);
    a.close();
    let dir_b = tempfile::tempdir().unwrap();
    let b = server.notes_client(
        dir_b.path(),
        "b.db",
        &server.token("alice", "phone"),
        ClientConfig::default(),
    );
    b.close();
    assert_all_equal(&[&path, &dir_b.path().join("b.db")]);
}
