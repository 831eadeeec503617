//! Several nodes over one PostgreSQL store (`--store`): a throwaway cluster
//! (`sync_testkit::pg`), in-process servers each with a data directory of its own — their
//! caches — and real HTTP to whichever node a step picks.

use crate::common::{Local, TestServer, setup_in};
use sync_core::protocol::pull::LogPage;
use sync_testkit::pg::PgCluster;

/// `n` nodes on one fresh store database; the first also holds user `u`, database `d`.
async fn nodes(n: usize) -> (Vec<TestServer>, String, String) {
    let url = PgCluster::shared().create_database();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let url = url.clone();
        nodes.push(
            TestServer::start_with(move |c| {
                c.store = Some(url);
                c.demo = false;
            })
            .await,
        );
    }
    let token = setup_in(nodes[0].data(), "u", "d", "dev-a");
    (nodes, url, token)
}

fn seqs(page: &LogPage) -> Vec<i64> {
    page.entries.iter().map(|e| e.seq).collect()
}

/// The database's position at its head as a node answers it: lineage, chain, checksum.
async fn position(node: &TestServer, token: &str) -> serde_json::Value {
    let head = node.pull(token, "d", 0).await.head_seq;
    let r = node
        .http
        .get(node.url("d", &format!("/position?seq={head}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_push_on_one_node_is_read_on_the_others() {
    let (nodes, _, token) = nodes(3).await;
    let local = Local::new();
    let body = local.change("INSERT INTO notes VALUES (1, 'a', 'x', 1)");
    let r = nodes[0].push_ok(&token, "d", "b1", 0, &body).await;
    assert_eq!(r.seq, 1);
    // A token issued through node 0 works on the others at once (they catch the catalog up
    // before refusing it), and the entry is there.
    for n in &nodes[1..] {
        let page = n.pull(&token, "d", 0).await;
        assert_eq!(seqs(&page), vec![1]);
    }
    let body = local.change("UPDATE notes SET title = 'b' WHERE id = 1");
    let r = nodes[2].push_ok(&token, "d", "b2", 1, &body).await;
    assert_eq!(r.seq, 2, "node 2 appended after node 0's entry");
    let page = nodes[0].pull(&token, "d", 0).await;
    assert_eq!(seqs(&page), vec![1, 2]);
    let a = position(&nodes[0], &token).await;
    for n in &nodes[1..] {
        assert_eq!(
            position(n, &token).await,
            a,
            "every node at the same position"
        );
    }
}

#[tokio::test]
async fn a_batch_retried_on_another_node_is_answered_not_applied_again() {
    let (nodes, url, token) = nodes(2).await;
    let local = Local::new();
    let body = local.change("INSERT INTO notes VALUES (7, 't', 'b', 1)");
    let first = nodes[0].push_ok(&token, "d", "once", 0, &body).await;
    let again = nodes[1].push_ok(&token, "d", "once", 0, &body).await;
    assert!(again.duplicate, "the second node knows the batch");
    assert_eq!(again.seq, first.seq);
    let db = url.rsplit('/').next().unwrap();
    let count = PgCluster::shared().psql(db, "SELECT count(*) FROM sync_entries");
    assert_eq!(count.trim(), "1", "one log entry in the store");
}

#[tokio::test]
async fn concurrent_pushes_on_several_nodes_get_distinct_seqs() {
    let (nodes, url, token) = nodes(3).await;
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..8 {
            let id = (i * 100 + j + 1) as i64;
            let body =
                Local::new().change(&format!("INSERT INTO notes VALUES ({id}, 'n{i}', 'x', 1)"));
            let http = n.http.clone();
            let url = n.url("d", "/push");
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(&token)
                    .header("content-type", "application/vnd.sqlite-changeset")
                    .header("sync-batch-id", format!("n{i}-{j}"))
                    .header("sync-cursor", "0")
                    .header("sync-schema-version", "1")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let page = nodes[1].pull(&token, "d", 0).await;
    assert_eq!(seqs(&page), (1..=24).collect::<Vec<_>>());
    let db = url.rsplit('/').next().unwrap();
    let distinct = PgCluster::shared().psql(
        db,
        "SELECT count(*), count(DISTINCT batch_id), max(seq) FROM sync_entries",
    );
    assert_eq!(distinct.trim(), "24|24|24");
    let rows = nodes[2]
        .local_copy(&token, "d")
        .await
        .rows("SELECT count(*) FROM notes");
    assert_eq!(rows, vec!["Integer(24)".to_string()]);
}

#[tokio::test]
async fn a_replaced_node_with_an_empty_cache_serves_the_same_state() {
    let (mut nodes, url, token) = nodes(2).await;
    let local = Local::new();
    for i in 1..=20 {
        let body = local.change(&format!("INSERT INTO notes VALUES ({i}, 't{i}', 'b', 1)"));
        let n = &nodes[i as usize % 2];
        n.push_ok(&token, "d", &format!("b{i}"), i - 1, &body).await;
    }
    let before = position(&nodes[0], &token).await;
    let gone = nodes.pop().unwrap();
    gone.stop().await;
    let fresh = TestServer::start_with(move |c| {
        c.store = Some(url);
        c.demo = false;
    })
    .await;
    assert!(
        !fresh
            .data_dir()
            .join("dbs")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "the new node starts with no copy"
    );
    assert_eq!(position(&fresh, &token).await, before);
    let page = fresh.pull(&token, "d", 0).await;
    assert_eq!(seqs(&page), (1..=20).collect::<Vec<_>>());
    let body = local.change("DELETE FROM notes WHERE id = 3");
    let r = fresh.push_ok(&token, "d", "after", 20, &body).await;
    assert_eq!(r.seq, 21);
    assert_eq!(
        position(&nodes[0], &token).await,
        position(&fresh, &token).await
    );
}
