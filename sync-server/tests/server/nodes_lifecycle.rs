//! Compaction, backup, revert and point-in-time restore with a PostgreSQL store, the admin
//! commands run as the real binary from "another machine" (a data directory of its own).

use crate::common::{Local, TestServer, json_of, server_bin, setup_in};
use std::path::Path;
use std::process::{Command, Output};
use sync_testkit::pg::PgCluster;

async fn node(url: &str) -> TestServer {
    let url = url.to_string();
    TestServer::start_with(move |c| {
        c.store = Some(url);
        c.demo = false;
        c.log_keep = 10;
    })
    .await
}

/// `sync-server --store URL --data DIR ARGS…`
fn admin(url: &str, data: &Path, args: &[&str]) -> Output {
    let out = Command::new(server_bin())
        .arg("--store")
        .arg(url)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn info(n: &TestServer, token: &str) -> serde_json::Value {
    let r = n
        .http
        .get(n.url("d", ""))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_eq!(status, 200, "{json}");
    json
}

async fn notes(n: &TestServer, token: &str) -> Vec<String> {
    let snap = n
        .http
        .get(n.url("d", "/snapshot"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(snap.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    std::fs::write(&path, snap.bytes().await.unwrap()).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    crate::common::rows(&c, "SELECT id, title FROM notes ORDER BY id")
}

#[tokio::test]
async fn compaction_revert_and_restore_work_across_nodes_and_machines() {
    let url = PgCluster::shared().create_database();
    let (a, b) = (node(&url).await, node(&url).await);
    let token = setup_in(a.data(), "u", "d", "dev");
    let local = Local::new();
    for i in 1..=64 {
        let body = local.change(&format!("INSERT INTO notes VALUES ({i}, 't{i}', '', {i})"));
        let n = if i % 2 == 0 { &a } else { &b };
        n.push_ok(&token, "d", &format!("b{i}"), i - 1, &body).await;
    }
    // Compaction (run by whichever node appended seq 64) is in the store: both agree.
    for n in [&a, &b] {
        let i = info(n, &token).await;
        assert_eq!(
            (i["head_seq"].as_i64(), i["oldest_seq"].as_i64()),
            (Some(64), Some(54))
        );
    }
    let machine = tempfile::tempdir().unwrap();
    let backup = machine.path().join("d.backup");
    let out = admin(
        &url,
        &machine.path().join("cache"),
        &["db", "backup", "d", "-o", backup.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("at seq 64"));

    let body = local.change("UPDATE notes SET title = 'changed' WHERE id = 3");
    a.push_ok(&token, "d", "b65", 64, &body).await;
    // Revert entry 65 from another machine: a new entry, on every node.
    let out = admin(
        &url,
        &machine.path().join("cache2"),
        &["db", "revert", "d", "--seq", "65"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("as entry 66"),
        "{out:?}"
    );
    for n in [&a, &b] {
        assert_eq!(info(n, &token).await["head_seq"], 66);
        assert!(
            notes(n, &token)
                .await
                .contains(&"Integer(3)|Text(\"t3\")".to_string())
        );
    }
    let lineage_before = info(&a, &token).await;

    // Point-in-time restore to seq 60 (rewound along the backup's log), from a third machine.
    let out = admin(
        &url,
        &machine.path().join("cache3"),
        &[
            "db",
            "restore",
            "d",
            "--from",
            backup.to_str().unwrap(),
            "--to-seq",
            "60",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("to seq 60"),
        "{out:?}"
    );
    for n in [&a, &b] {
        let i = info(n, &token).await;
        assert_eq!(i["head_seq"], 60, "{i}");
        let rows = notes(n, &token).await;
        assert_eq!(rows.len(), 60);
    }
    // Writes go on, on either node, in the new history.
    let body = Local::new().change("INSERT INTO notes VALUES (1000, 'after', '', 1)");
    assert!(b.pull(&token, "d", 60).await.entries.is_empty());
    let r = b.push_ok(&token, "d", "after-restore", 60, &body).await;
    assert_eq!(r.seq, 61);
    assert_eq!(info(&a, &token).await["head_seq"], 61);
    assert_ne!(lineage_before, info(&a, &token).await);
}
