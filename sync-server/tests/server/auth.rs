//! Tokens, grants and names: each refusal has its code and changes nothing.

use crate::common::*;
use reqwest::StatusCode;
use sync_core::protocol::info::Access;
use sync_server::catalog::{self, TokenSelector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bad_and_revoked_tokens_are_401() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    s.push_ok(&token, "notes", "b0", 0, &cs).await;
    let before = dump(&s.db_path("notes"));
    let push = |auth: Option<String>| {
        let mut r = s
            .http
            .post(s.url("notes", "/push"))
            .header("sync-batch-id", "b1")
            .header("sync-cursor", "1")
            .header("sync-schema-version", "1")
            .body(cs.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { json_of(r.send().await.unwrap()).await }
    };
    for (what, auth) in [
        ("missing", None),
        ("not bearer", Some(format!("Basic {token}"))),
        (
            "unknown",
            Some("Bearer sst_notarealtokenatallnotarealtokenatall1234".to_string()),
        ),
        ("empty", Some("Bearer ".to_string())),
    ] {
        let (status, json) = push(auth).await;
        assert_eq!(
            (status.as_u16(), json["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {json}"
        );
    }
    // Revocation by the admin CLI (another connection) counts from the next request on.
    s.catalog(|c| {
        catalog::revoke_tokens(c, &TokenSelector::TokenOrPrefix(token[..12].to_string()))
    });
    let (status, json) = push(Some(format!("Bearer {token}"))).await;
    assert_error(status, &json, 401, "unauthorized");
    let r = s
        .http
        .get(s.url("notes", "/pull?since=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(dump(&s.db_path("notes")), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_decide_and_other_users_databases_look_absent() {
    let s = TestServer::start().await;
    let alice = s.setup("alice", "alice-db");
    let bob = s.setup("bob", "bob-db");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    s.push_ok(&bob, "bob-db", "b0", 0, &cs).await;
    let before = dump(&s.db_path("bob-db"));

    // Alice's token on Bob's database: the same answer as for a database that does not exist.
    let (status, json) = s.push(&alice, "bob-db", "x", 1, &cs).await;
    assert_error(status, &json, 404, "database_not_found");
    let (status2, json2) = s.push(&alice, "no-such-db", "x", 1, &cs).await;
    assert_eq!(status, status2);
    assert_eq!(json2["code"], json["code"]);
    for path in ["/pull?since=0", "/snapshot", "", "/conflicts", "/events"] {
        let r = s
            .http
            .get(s.url("bob-db", path))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        let (status, json) = json_of(r).await;
        assert_error(status, &json, 404, "database_not_found");
    }

    // A read-only grant reads but may not write.
    s.catalog(|c| catalog::grant(c, "bob-db", "alice", Access::ReadOnly));
    let page = s.pull(&alice, "bob-db", 0).await;
    assert_eq!(page.entries.len(), 1);
    let (status, json) = s.push(&alice, "bob-db", "x", 1, &cs).await;
    assert_error(status, &json, 403, "read_only");
    let r = s
        .http
        .post(s.url("bob-db", "/rowid-ranges"))
        .bearer_auth(&alice)
        .body(serde_json::json!({"v": 1, "size": 10}).to_string())
        .send()
        .await
        .unwrap();
    let (status, json) = json_of(r).await;
    assert_error(status, &json, 403, "read_only");
    let r = s
        .http
        .get(s.url("bob-db", ""))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await.1["access"], "read-only");
    assert_eq!(dump(&s.db_path("bob-db")), before);

    // Removing the grant takes effect at once.
    s.catalog(|c| catalog::revoke_grant(c, "bob-db", "alice"));
    let r = s
        .http
        .get(s.url("bob-db", "/pull?since=0"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_database_names_are_400_before_any_lookup() {
    let s = TestServer::start().await;
    let token = s.setup("alice", "notes");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 't', '', 1)");
    s.push_ok(&token, "notes", "b0", 0, &cs).await;
    let before = dump(&s.db_path("notes"));
    let files_before = std::fs::read_dir(s.data_dir().join("dbs")).unwrap().count();
    let long = "a".repeat(64);
    let very_long = "b".repeat(5000);
    for name in [
        "..",
        "%2e%2e",
        "%2E%2E",
        "..%2f..%2fetc",
        "a%00b",
        "%00",
        "Notes",
        "-x",
        "x%20y",
        "%ff",
        long.as_str(),
        very_long.as_str(),
    ] {
        // Raw bytes on the socket: an HTTP client would normalise `..` and `%2e%2e` away.
        let request = format!(
            "POST /v1/databases/{name}/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Sync-Batch-Id: n1\r\nSync-Cursor: 1\r\nSync-Schema-Version: 1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            cs.len()
        );
        let (status, json) =
            raw_request(s.addr, &[request.into_bytes(), cs.clone()].concat()).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (400, Some("invalid_database_name")),
            "{name:?}: {json}"
        );
        let get = format!(
            "GET /v1/databases/{name}/pull?since=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let (status, _) = raw_request(s.addr, get.as_bytes()).await;
        assert_eq!(status, 400, "{name:?}");
    }
    // `../` with more segments does not even reach a route: an unknown path is 404.
    let (status, json) = raw_request(
        s.addr,
        b"GET /v1/databases/../../catalog.db/pull HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, json["code"].as_str()), (404, Some("not_found")));
    assert_eq!(dump(&s.db_path("notes")), before);
    assert_eq!(
        std::fs::read_dir(s.data_dir().join("dbs")).unwrap().count(),
        files_before
    );
    s.stop().await;
}
