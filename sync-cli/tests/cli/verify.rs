//! `sync-cli verify`: 0 when the synced state equals the server's, 1 when a row was changed
//! behind the library's back (and nothing is repaired by it), 0 again after `sync` repaired
//! it — and `status` counts the repair.

use crate::common::{Scratch, sqlite3, sync_cli};
use crate::server::Server;

#[test]
fn verify_tells_a_tampered_copy_and_sync_repairs_it() {
    let server = Server::start();
    let scratch = Scratch::new();
    let db = scratch.path("notes.db");
    let db_s = db.to_str().unwrap();
    let token = server.token("laptop");
    sync_cli([
        "init",
        db_s,
        "--server",
        &server.url,
        "--token",
        &token,
        "--database",
        "notes",
    ])
    .expect(0);
    for title in ["one", "two", "three"] {
        sync_cli([
            "exec",
            db_s,
            "INSERT INTO notes(id, title, updated_at) VALUES (sync_id(), ?1, 1)",
            title,
        ])
        .expect(0);
    }
    sync_cli(["sync", db_s]).expect(0);
    let run = sync_cli(["verify", db_s]).expect(0);
    assert!(run.stdout.starts_with("equal at seq 1"), "{}", run.stdout);

    sqlite3(
        &db,
        "UPDATE notes SET title = 'tampered' WHERE title = 'two';",
    )
    .expect(0);
    let run = sync_cli(["verify", db_s, "--format", "json"]).expect(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["equal"], false, "{v}");
    assert_ne!(v["local"], v["server"], "{v}");
    // verify changes nothing: it still differs.
    sync_cli(["verify", db_s]).expect(1);

    sync_cli(["sync", db_s]).expect(0);
    sync_cli(["verify", db_s]).expect(0);
    let run = sync_cli(["status", db_s]).expect(0);
    assert!(run.stdout.contains("repairs:          1"), "{}", run.stdout);
    let run = sync_cli([
        "query",
        db_s,
        "SELECT count(*) FROM notes WHERE title = 'tampered'",
    ])
    .expect(0);
    assert!(run.stdout.contains('0'), "{}", run.stdout);

    // Not a synced copy: an error, not an answer.
    let plain = scratch.path("plain.db");
    sqlite3(&plain, "CREATE TABLE t(x);").expect(0);
    sync_cli(["verify", plain.to_str().unwrap()]).expect(2);
}
