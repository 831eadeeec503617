//! Bad input gets its coded 4xx and changes nothing: the database (every table, internal
//! ones included) and the log head are the same before and after.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value as Json;

const LIMIT: usize = 64 * 1024;

/// A server with a small body limit and a database with one applied batch.
async fn fixture() -> (TestServer, String) {
    let s = TestServer::start_with(|c| c.max_body_bytes = LIMIT).await;
    let token = s.setup("alice", "notes");
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 'keep', 'me', 1)");
    s.push_ok(&token, "notes", "base", 0, &cs).await;
    (s, token)
}

/// One push request with adjustable parts.
struct Req {
    body: reqwest::Body,
    headers: Vec<(&'static str, String)>,
}

impl Req {
    fn new(body: impl Into<reqwest::Body>) -> Req {
        Req {
            body: body.into(),
            headers: vec![
                ("content-type", "application/vnd.sqlite-changeset".into()),
                ("sync-batch-id", "bad-1".into()),
                ("sync-cursor", "1".into()),
                ("sync-schema-version", "1".into()),
            ],
        }
    }

    fn set(mut self, name: &'static str, value: &str) -> Req {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_string()));
        self
    }

    fn without(mut self, name: &'static str) -> Req {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    async fn send(self, s: &TestServer, token: &str) -> (StatusCode, Json) {
        let mut r = s.http.post(s.url("notes", "/push")).bearer_auth(token);
        for (n, v) in self.headers {
            r = r.header(n, v);
        }
        json_of(r.body(self.body).send().await.unwrap()).await
    }
}

/// Sends `req`, checks the code, and checks that nothing changed.
async fn refused(
    s: &TestServer,
    token: &str,
    what: &str,
    req: Req,
    status: u16,
    code: &str,
) -> Json {
    let before = dump(&s.db_path("notes"));
    let (st, json) = req.send(s, token).await;
    assert_eq!(
        (st.as_u16(), json["code"].as_str().unwrap_or("")),
        (status, code),
        "{what}: {json}"
    );
    assert_eq!(
        dump(&s.db_path("notes")),
        before,
        "{what} changed the database"
    );
    json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_mismatched_changesets() {
    let (s, token) = fixture().await;
    let good = Local::new().change("INSERT INTO notes VALUES (2, 'new', '', 2)");

    let j = refused(
        &s,
        &token,
        "garbage",
        Req::new(b"this is not a changeset".to_vec()),
        400,
        "invalid_changeset",
    )
    .await;
    assert_eq!(j["offset"], 0);
    let j = refused(
        &s,
        &token,
        "truncated",
        Req::new(good[..good.len() - 3].to_vec()),
        400,
        "invalid_changeset",
    )
    .await;
    assert!(j["offset"].as_u64().unwrap() > 0, "{j}");
    refused(
        &s,
        &token,
        "empty body",
        Req::new(Vec::new()),
        400,
        "invalid_changeset",
    )
    .await;

    let extra = Local::with_schema(&format!(
        "{}\nCREATE TABLE extra(id INTEGER PRIMARY KEY, v TEXT);",
        demo_sql()
    ))
    .change("INSERT INTO extra VALUES (1, 'x')");
    let j = refused(
        &s,
        &token,
        "unknown table",
        Req::new(extra),
        400,
        "changeset_schema_mismatch",
    )
    .await;
    assert!(j["message"].as_str().unwrap().contains("extra"), "{j}");
    let wide = Local::with_schema(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT, updated_at INTEGER, color TEXT);",
    )
    .change("INSERT INTO notes VALUES (3, 't', 'b', 1, 'red')");
    refused(
        &s,
        &token,
        "wrong column count",
        Req::new(wide),
        400,
        "changeset_schema_mismatch",
    )
    .await;
    let rekeyed =
        Local::with_schema("CREATE TABLE tags(id INTEGER, name TEXT NOT NULL, PRIMARY KEY(name));")
            .change("INSERT INTO tags VALUES (1, 'x')");
    refused(
        &s,
        &token,
        "wrong primary key",
        Req::new(rekeyed),
        400,
        "changeset_schema_mismatch",
    )
    .await;

    let j = refused(
        &s,
        &token,
        "schema version",
        Req::new(good.clone()).set("sync-schema-version", "2"),
        409,
        "schema_mismatch",
    )
    .await;
    assert_eq!(
        (j["server_version"].as_u64(), j["client_version"].as_u64()),
        (Some(1), Some(2))
    );

    let j = refused(
        &s,
        &token,
        "no batch id",
        Req::new(good.clone()).without("sync-batch-id"),
        400,
        "bad_request",
    )
    .await;
    assert_eq!(j["header"], "sync-batch-id");
    refused(
        &s,
        &token,
        "bad batch id",
        Req::new(good.clone()).set("sync-batch-id", "has space"),
        400,
        "bad_request",
    )
    .await;
    refused(
        &s,
        &token,
        "bad cursor",
        Req::new(good.clone()).set("sync-cursor", "-4"),
        400,
        "bad_request",
    )
    .await;
    refused(
        &s,
        &token,
        "content type",
        Req::new(good.clone()).set("content-type", "application/json"),
        415,
        "unsupported_media_type",
    )
    .await;
    refused(
        &s,
        &token,
        "encoding",
        Req::new(good.clone()).set("content-encoding", "gzip"),
        415,
        "unsupported_media_type",
    )
    .await;
    refused(
        &s,
        &token,
        "bad zstd",
        Req::new(b"not zstd at all".to_vec()).set("content-encoding", "zstd"),
        400,
        "bad_request",
    )
    .await;

    // None of the refusals was recorded as processed: the same batch id still applies.
    let ok = s.push_ok(&token, "notes", "bad-1", 1, &good).await;
    assert_eq!((ok.seq, ok.duplicate), (2, false));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let (s, token) = fixture().await;
    // Declared too large: refused on Content-Length alone.
    let j = refused(
        &s,
        &token,
        "content-length",
        Req::new(vec![b'T'; LIMIT + 1]),
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(j["limit"], LIMIT as u64);
    // Streamed without a length (chunked): refused once the limit is crossed.
    let before = dump(&s.db_path("notes"));
    let mut request = format!(
        "POST /v1/databases/notes/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Sync-Batch-Id: chunked\r\nSync-Cursor: 1\r\nSync-Schema-Version: 1\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..64 {
        request.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        request.extend_from_slice(&[b'T'; 16 * 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, json) = raw_request(s.addr, &request).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (413, Some("payload_too_large")),
        "{json}"
    );
    assert_eq!(dump(&s.db_path("notes")), before);
    // A zstd bomb: 1 KiB on the wire, 16 MiB decompressed.
    let bomb = zstd::encode_all(&vec![0u8; 16 << 20][..], 19).unwrap();
    assert!(bomb.len() < LIMIT);
    refused(
        &s,
        &token,
        "zstd bomb",
        Req::new(bomb).set("content-encoding", "zstd"),
        413,
        "payload_too_large",
    )
    .await;
    // The server is still fine, and the connection pool too.
    let cs = Local::new().change("INSERT INTO notes VALUES (9, 'after', '', 1)");
    s.push_ok(&token, "notes", "after", 1, &cs).await;
    s.stop().await;
}
