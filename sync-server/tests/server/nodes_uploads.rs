//! Multi-part uploads over several nodes of one PostgreSQL store: the parts of a batch may
//! reach any node (a load balancer without affinity, a node that died in the middle), the
//! push by name may land on yet another, and the limits on uploads hold across all nodes.

use crate::common::{Local, TestServer, assert_error, setup_in};
use crate::nodes::nodes_with;
use crate::uploads::{assert_error_code, big_batch, push_uploaded_in, put_in, status_in};
use reqwest::StatusCode;
use std::time::Duration;
use sync_testkit::pg::PgCluster;

/// `SELECT count(*) FROM table` in the store behind `url`.
fn count(url: &str, table: &str) -> String {
    let db = url.rsplit('/').next().unwrap();
    PgCluster::shared()
        .psql(db, &format!("SELECT count(*) FROM {table}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_one_batch_go_to_different_nodes_and_the_push_completes_on_a_third() {
    let (nodes, url, token) = nodes_with(3, |c| c.max_body_bytes = 64 * 1024).await;
    let mut nodes = nodes.into_iter();
    let (a, b, c) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    let body = big_batch(&Local::new(), 1500);
    let total = body.len() as u64;
    let step = 60 * 1024;
    let parts: Vec<(usize, usize)> = (0..body.len())
        .step_by(step)
        .map(|o| (o, (o + step).min(body.len())))
        .collect();
    assert!(parts.len() >= 4, "{total} bytes");
    let (last, first) = parts.split_last().unwrap();
    for (i, &(start, end)) in first.iter().enumerate() {
        let (node, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (code, json) = put_in(
            node,
            "d",
            &token,
            "big",
            start as u64,
            total,
            &body[start..end],
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{json}");
        assert_eq!(json["received"], end as u64);
        if i == 1 {
            // The same part retried on the other node, overlapping the one before: harmless.
            let back = start - 1000;
            let (code, json) = put_in(
                other,
                "d",
                &token,
                "big",
                back as u64,
                total,
                &body[back..end],
            )
            .await;
            assert_eq!(
                (code, json["received"].as_u64()),
                (StatusCode::OK, Some(end as u64))
            );
        }
        // The third node sees how far it came; its push by name is refused, changing nothing.
        let (code, json) = status_in(&c, "d", &token, "big").await;
        assert_eq!(
            (code, json["received"].as_u64()),
            (StatusCode::OK, Some(end as u64))
        );
        let (code, json) = push_uploaded_in(&c, "d", &token, "big").await;
        assert_error(code, &json, 409, "upload_incomplete");
        assert_eq!(json["received"], end as u64);
    }
    assert_eq!(count(&url, "sync_entries"), "0");
    // Node a goes away in the middle; the rest of the upload goes to b.
    a.stop().await;
    let (start, end) = *last;
    let (code, json) = put_in(
        &b,
        "d",
        &token,
        "big",
        start as u64,
        total,
        &body[start..end],
    )
    .await;
    assert_eq!(
        (code, json["received"].as_u64()),
        (StatusCode::OK, Some(total)),
        "{json}"
    );

    let (code, json) = push_uploaded_in(&c, "d", &token, "big").await;
    assert_eq!(code, StatusCode::OK, "{json}");
    assert_eq!(
        (json["status"].as_str(), json["changes"].as_u64()),
        (Some("applied"), Some(1500))
    );
    // Once the push committed, the upload's rows are gone, on every node.
    assert_eq!(count(&url, "sync_uploads"), "0");
    assert_eq!(count(&url, "sync_upload_parts"), "0");
    assert_error_code(status_in(&b, "d", &token, "big").await, 404, "not_found");
    // A retry on another node gets the stored answer; the entry is there once.
    let (code, again) = push_uploaded_in(&b, "d", &token, "big").await;
    assert_eq!(
        (code, again["duplicate"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(again["seq"], json["seq"]);
    assert_eq!(count(&url, "sync_entries"), "1");
    let rows = b
        .local_copy(&token, "d")
        .await
        .rows("SELECT count(*) FROM notes");
    assert_eq!(rows, vec!["Integer(1500)".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_budget_and_a_devices_uploads_are_counted_across_nodes() {
    let (nodes, url, token) = nodes_with(3, |c| {
        c.max_transaction_bytes = 1000;
        c.upload_budget_bytes = 1000;
    })
    .await;
    let other = nodes[0].token("u", "dev-b");
    // 600 declared through node 0 leaves 400 for every node.
    let (code, json) = put_in(&nodes[0], "d", &token, "x", 0, 600, b"abc").await;
    assert_eq!(code, StatusCode::OK, "{json}");
    let (code, json) = put_in(&nodes[1], "d", &other, "y", 0, 600, b"abc").await;
    assert_error(code, &json, 507, "insufficient_storage");
    assert_eq!(
        count(&url, "sync_uploads"),
        "1",
        "the refused upload left nothing"
    );
    let (code, json) = put_in(&nodes[2], "d", &other, "z", 0, 400, b"abc").await;
    assert_eq!(code, StatusCode::OK, "{json}");
    let (code, json) = put_in(&nodes[1], "d", &token, "w", 0, 1, b"a").await;
    assert_error(code, &json, 507, "insufficient_storage");
    // Going on with an upload that has its room is fine, on any node.
    let (code, json) = put_in(&nodes[1], "d", &token, "x", 3, 600, b"def").await;
    assert_eq!(
        (code, json["received"].as_u64()),
        (StatusCode::OK, Some(6)),
        "{json}"
    );

    // One node's maintenance pass removes idle uploads for all of them: room again.
    let up = &nodes[2].state.shared().uploads;
    assert_eq!(up.expire(Duration::from_secs(3600)), 0);
    assert_eq!(up.expire(Duration::ZERO), 2);
    assert_error_code(
        status_in(&nodes[0], "d", &token, "x").await,
        404,
        "not_found",
    );
    assert_eq!(count(&url, "sync_upload_parts"), "0");
    let (code, json) = put_in(&nodes[1], "d", &other, "y", 0, 600, b"abc").await;
    assert_eq!(code, StatusCode::OK, "{json}");

    // A device has at most 4 uploads in progress, wherever it started them.
    for i in 0..4 {
        let n = &nodes[i % 3];
        let (code, json) = put_in(n, "d", &token, &format!("u{i}"), 0, 10, b"a").await;
        assert_eq!(code, StatusCode::OK, "{json}");
    }
    let (code, json) = put_in(&nodes[1], "d", &token, "u4", 0, 10, b"a").await;
    assert_error(code, &json, 429, "too_many_uploads");
    assert_eq!(count(&url, "sync_uploads"), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_started_at_once_on_several_nodes_never_pass_the_budget() {
    let (nodes, url, token) = nodes_with(3, |c| {
        c.max_transaction_bytes = 1000;
        c.upload_budget_bytes = 1000;
    })
    .await;
    let tokens = [token, nodes[0].token("u", "dev-b")];
    let mut tasks = Vec::new();
    for i in 0..6 {
        let n = &nodes[i % 3];
        let (http, token) = (n.http.clone(), tokens[i % 2].clone());
        let url = n.url("d", &format!("/uploads/s{i}?offset=0&total=300"));
        tasks.push(tokio::spawn(async move {
            let r = http
                .put(url)
                .bearer_auth(token)
                .body(vec![7u8; 10])
                .send()
                .await;
            r.unwrap().status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, vec![200, 200, 200, 507, 507, 507]);
    let db = url.rsplit('/').next().unwrap();
    let declared = PgCluster::shared().psql(db, "SELECT sum(total) FROM sync_uploads");
    assert_eq!(declared.trim(), "900");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_a_part_is_refused_and_the_upload_resumes_after() {
    // A cluster of its own: the shared one serves tests running meanwhile.
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let url = url.clone();
        nodes.push(
            TestServer::start_with(move |c| {
                c.store = Some(url);
                c.demo = false;
                c.max_body_bytes = 64 * 1024;
            })
            .await,
        );
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let token = setup_in(a.data(), "u", "d", "dev-a");
    let body = big_batch(&Local::new(), 500);
    let total = body.len() as u64;
    let half = body.len() / 2;
    assert!(half <= 60 * 1024, "{total} bytes");
    let (code, json) = put_in(a, "d", &token, "big", 0, total, &body[..half]).await;
    assert_eq!(code, StatusCode::OK, "{json}");

    pg.stop();
    let (code, json) = put_in(a, "d", &token, "big", half as u64, total, &body[half..]).await;
    assert_error(code, &json, 503, "unavailable");
    pg.start_again();
    // Nothing of the refused part was kept: the client asks another node and goes on.
    let (code, json) = status_in(b, "d", &token, "big").await;
    assert_eq!(
        (code, json["received"].as_u64()),
        (StatusCode::OK, Some(half as u64))
    );
    let (code, json) = put_in(b, "d", &token, "big", half as u64, total, &body[half..]).await;
    assert_eq!(
        (code, json["received"].as_u64()),
        (StatusCode::OK, Some(total)),
        "{json}"
    );
    let (code, json) = push_uploaded_in(a, "d", &token, "big").await;
    assert_eq!(
        (code, json["changes"].as_u64()),
        (StatusCode::OK, Some(500)),
        "{json}"
    );
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(pg.psql(db, "SELECT count(*) FROM sync_uploads").trim(), "0");
}
