//! Two and three devices syncing through a real server.

use session_sync_tests::*;
use sync_client::ClientConfig;

#[test]
fn offline_edits_on_two_devices_converge_with_the_server() {
    let server = Server::start();
    let ta = server.setup("alice", "notes", "laptop");
    let tb = server.token("alice", "phone");
    let dir = tempfile::tempdir().unwrap();
    let a = init_client(
        dir.path(),
        "a.db",
        server.remote(&ta, "notes"),
        ClientConfig::default(),
    );
    let b = init_client(
        dir.path(),
        "b.db",
        server.remote(&tb, "notes"),
        ClientConfig::default(),
    );
    a.write(|c| {
        c.execute(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (1, 'from a', '', 1)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    b.write(|c| {
        c.execute(
            "INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), 'from b', '', 2)",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    a.sync_now().unwrap();
    b.sync_now().unwrap();
    a.sync_now().unwrap();
    let n: i64 = a
        .read(|c| Ok(c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 2);
    a.close();
    b.close();
    let server_db = server.db_path("notes");
    assert_eq!(sqldiff(&server_db, &dir.path().join("a.db")), "");
    assert_eq!(sqldiff(&server_db, &dir.path().join("b.db")), "");
}
