//! `SyncClient::adopt` through the library: Chinook's rows cut into many transactions, parents
//! first (the server applies and checks each on its own: a child before its parent would be
//! rejected), or kept whole and uploaded in parts past the body limit; a second device
//! bootstraps equal either way.

use session_sync_tests::{Server, sqldiff};
use std::path::{Path, PathBuf};
use sync_client::{ClientConfig, RemoteConfig, SyncClient};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync-cli/tests/data/chinook.sqlite")
}

fn chinook_copy(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, std::fs::read(fixture()).unwrap()).unwrap();
    p
}

fn chinook_schema(dir: &Path) -> PathBuf {
    let conn = rusqlite::Connection::open_with_flags(
        fixture(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let sql: Vec<String> = conn
        .prepare("SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let d = dir.join("migrations");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("0001_init.sql"), sql.join("\n")).unwrap();
    d
}

fn remote(server: &Server, token: String, database: &str) -> RemoteConfig {
    RemoteConfig {
        url: server.base.clone(),
        token,
        database: database.into(),
    }
}

#[test]
fn adopted_rows_travel_parents_first_in_parts_and_a_second_device_bootstraps_equal() {
    let dir = tempfile::tempdir().unwrap();
    let schema = chinook_schema(dir.path());
    // A small body limit: the one-transaction adoption (about 700 KB) must be uploaded.
    let server = Server::start_with(|c| {
        c.schema_dir = Some(schema);
        c.max_body_bytes = 128 * 1024;
    });
    for (database, target, min_transactions) in [("cut", 64 * 1024, 5), ("whole", u64::MAX, 1)] {
        let token = server.setup("alice", database, &format!("laptop-{database}"));
        let file = chinook_copy(dir.path(), &format!("{database}.db"));
        let client = SyncClient::adopt_in_transactions_of(
            &file,
            remote(&server, token, database),
            ClientConfig::default(),
            target,
        )
        .unwrap();
        let pending = client.status().unwrap().pending_changesets;
        assert!(
            pending >= min_transactions && (database == "cut" || pending == 1),
            "{database}: {pending} transactions"
        );
        assert_eq!(
            sqldiff(&fixture(), &file),
            "",
            "{database}: adopting kept every row"
        );
        let report = client.sync_now().unwrap();
        assert_eq!(
            report.pushed_transactions as u64, pending,
            "{database}: {report:?}"
        );
        assert_eq!(report.rejected_transactions, 0, "{database}: {report:?}");
        assert_eq!(client.status().unwrap().pending_changesets, 0);
        client.close();

        let phone = server.token("alice", &format!("phone-{database}"));
        let b = SyncClient::init(
            dir.path().join(format!("{database}-phone.db")),
            remote(&server, phone, database),
            ClientConfig::default(),
        )
        .unwrap();
        b.close();
        let b_path = dir.path().join(format!("{database}-phone.db"));
        assert_eq!(
            sqldiff(&fixture(), &b_path),
            "",
            "{database}: the second device"
        );
        assert_eq!(sqldiff(&file, &b_path), "", "{database}");
    }
}
