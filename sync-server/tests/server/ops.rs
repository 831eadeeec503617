//! Operations keep their word: a clean stop leaves no WAL, admin commands run in parallel and
//! refuse a data directory that is not there, the demo appears only with the demo schema, and
//! the log has one parseable line per refused request.

use crate::common::*;
use reqwest::StatusCode;
use std::path::Path;
use std::process::Command;

fn admin(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(server_bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// Every `-wal` file under `dir` with content, and its size.
fn wal_content(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let name = entry.display().to_string();
        if name.ends_with("-wal") {
            let len = std::fs::metadata(&entry).map_or(0, |m| m.len());
            if len > 0 {
                out.push((name, len));
            }
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_no_database_file_has_wal_content() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_server(
        vec![
            "serve".into(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        vec![],
        dir.path().join("server.log"),
    )
    .await;
    let c = sync_server::catalog::open(&data).unwrap();
    sync_server::catalog::add_user(&c, "alice").unwrap();
    let mut tokens = Vec::new();
    for db in ["one", "two", "three"] {
        sync_server::catalog::create_database(&c, db, "alice").unwrap();
        tokens.push((
            db,
            sync_server::catalog::issue_token(&c, "alice", &format!("d-{db}"))
                .unwrap()
                .token,
        ));
    }
    drop(c);
    let http = reqwest::Client::new();
    for (db, token) in &tokens {
        for i in 0..20 {
            let cs = Local::new().change(&format!("INSERT INTO notes VALUES ({i}, 'n', '', 1)"));
            let r = http
                .post(format!("http://{}/v1/databases/{db}/push", server.addr))
                .bearer_auth(token)
                .header("sync-batch-id", format!("b{i}"))
                .header("sync-cursor", "0")
                .header("sync-schema-version", "1")
                .body(cs)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        // Reads too, so that each database has read-only connections open at the stop.
        let r = http
            .get(format!(
                "http://{}/v1/databases/{db}/pull?since=0",
                server.addr
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert!(
        !wal_content(&data).is_empty(),
        "the test must leave WALs to truncate"
    );
    assert!(server.terminate().await.success());
    assert_eq!(wal_content(&data), Vec::<(String, u64)>::new());
    // And the data is all there.
    for (db, _) in &tokens {
        let id: i64 = rusqlite::Connection::open(data.join("catalog.db"))
            .unwrap()
            .query_row("SELECT id FROM databases WHERE name = ?1", [db], |r| {
                r.get(0)
            })
            .unwrap();
        let n: i64 = rusqlite::Connection::open(data.join(format!("dbs/{id}.db")))
            .unwrap()
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }
}

#[test]
fn three_parallel_admin_processes_each_creating_300_databases_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    assert!(admin(&data, &["user", "add", "alice"]).status.success());
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let data = data.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..300 {
                    let name = format!("db-{w}-{i}");
                    let out = admin(&data, &["db", "create", &name, "--owner", "alice"]);
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    let n: i64 = rusqlite::Connection::open(data.join("catalog.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM databases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 900);
}

#[test]
fn admin_commands_refuse_a_data_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does/not/exist");
    for args in [
        vec!["db", "list"],
        vec!["user", "add", "alice"],
        vec!["token", "list"],
    ] {
        let out = admin(&missing, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no data directory"), "{err}");
    }
    assert!(!dir.path().join("does").exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_appears_only_with_the_demo_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema");
    std::fs::create_dir(&schema).unwrap();
    std::fs::write(schema.join("0001_init.sql"), demo_sql()).unwrap();
    for (name, extra) in [
        (
            "with-schema",
            vec!["--schema".to_string(), schema.display().to_string()],
        ),
        ("no-demo", vec!["--no-demo".to_string()]),
    ] {
        let data = dir.path().join(name);
        let mut args = vec![
            "serve".to_string(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra);
        let server = spawn_server(args, vec![], dir.path().join(format!("{name}.log"))).await;
        assert_eq!(server.banner.len(), 1, "{name}: {:?}", server.banner);
        assert!(
            !server.banner.join(" ").contains("sst_"),
            "{name}: a token was printed"
        );
        assert!(server.terminate().await.success());
        let users: i64 = rusqlite::Connection::open(data.join("catalog.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 0, "{name}: a user was created");
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(!log.contains("sst_"), "{name}: a token in the log");
    }
}

/// A JSON object whose keys are unique at every level (serde_json keeps the last of two).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    map.next_value::<UniqueKeys>()?;
                }
                Ok(UniqueKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueKeys, A::Error> {
                while seq.next_element::<UniqueKeys>()?.is_some() {}
                Ok(UniqueKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
        }
        d.deserialize_any(V)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_one_info_line_and_json_logs_have_unique_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let server = spawn_server(
        vec![
            "serve".into(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--log-format".into(),
            "json".into(),
            "--log".into(),
            "debug".into(),
        ],
        vec![],
        log.clone(),
    )
    .await;
    let token = server
        .banner
        .join(" ")
        .split_whitespace()
        .find(|w| w.starts_with("sst_"))
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    // A refused push: read-write token, bad schema version.
    let cs = Local::new().change("INSERT INTO notes VALUES (1, 'n', '', 1)");
    let r = http
        .post(format!("http://{}/v1/databases/demo/push", server.addr))
        .bearer_auth(&token)
        .header("sync-batch-id", "b1")
        .header("sync-cursor", "0")
        .header("sync-schema-version", "7")
        .body(cs.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let request_id = r
        .headers()
        .get("x-request-id")
        .expect("every answer names its request")
        .to_str()
        .unwrap()
        .to_string();
    // A few more kinds of lines: a success, an unknown path, a bad token.
    for (path, auth) in [
        ("/v1/databases/demo", token.as_str()),
        ("/nope", token.as_str()),
        ("/v1/databases/demo", "sst_wrong"),
    ] {
        http.get(format!("http://{}{path}", server.addr))
            .bearer_auth(auth)
            .send()
            .await
            .unwrap();
    }
    assert!(server.terminate().await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 5, "{text}");
    for line in text.lines() {
        serde_json::from_str::<UniqueKeys>(line)
            .unwrap_or_else(|e| panic!("not a JSON object with unique keys ({e}): {line}"));
    }
    let mine: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["fields"]["request_id"] == request_id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one line for the refused request: {mine:?}");
    let line = &mine[0];
    assert_eq!(line["level"], "INFO", "{line}");
    let f = &line["fields"];
    assert_eq!(
        (
            f["status"].as_u64(),
            f["code"].as_str(),
            f["database"].as_str(),
            f["device"].as_str()
        ),
        (
            Some(409),
            Some("schema_mismatch"),
            Some("demo"),
            Some("demo-device")
        ),
        "{line}"
    );
    // The bad token and the unknown path are refused too, with what is known of them.
    let refused = text
        .lines()
        .filter(|l| l.contains("request refused"))
        .count();
    assert_eq!(refused, 3, "{text}");
}
