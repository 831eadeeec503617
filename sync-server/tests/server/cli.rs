//! The binary: first start, admin commands, configuration layering, refusing bad schemas,
//! graceful shutdown on SIGTERM.

use crate::common::*;
use reqwest::StatusCode;
use std::process::Command;

fn admin(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(server_bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn admin_commands_and_token_issue_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(admin(d, &["user", "add", "alice"]).status.success());
    assert!(admin(d, &["user", "add", "bob"]).status.success());
    let dup = admin(d, &["user", "add", "alice"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert_eq!(admin(d, &["user", "add", "../evil"]).status.code(), Some(2));
    assert!(
        admin(d, &["db", "create", "notes", "--owner", "alice"])
            .status
            .success()
    );
    assert!(
        admin(d, &["db", "grant", "notes", "bob", "--read-only"])
            .status
            .success()
    );
    let issued = admin(d, &["token", "issue", "alice", "--device", "laptop"]);
    assert!(issued.status.success());
    let stdout = String::from_utf8(issued.stdout).unwrap();
    let token = stdout.strip_suffix('\n').unwrap();
    assert!(
        token.starts_with("sst_") && token.len() == 47 && !token.contains(char::is_whitespace),
        "{stdout:?}"
    );
    let list = String::from_utf8(admin(d, &["db", "list", "--format", "json"]).stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(json[0]["name"], "notes");
    assert_eq!(json[0]["grants"].as_array().unwrap().len(), 2);
    let tokens = String::from_utf8(admin(d, &["token", "list"]).stdout).unwrap();
    assert!(
        tokens.contains(&token[..12]) && !tokens.contains(token),
        "secret never listed"
    );
    // Stored hashed: no file of the data directory holds the token, or any 13 characters of
    // it (only the 12 shown ones name it); its SHA-256 is there.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let holds = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(holds(&token.as_bytes()[..12]), "the shown part names it");
    assert!(
        !holds(&token.as_bytes()[..13]),
        "no more of the token is stored"
    );
    assert!(!holds(&token.as_bytes()[20..]), "nor its tail");
    assert!(
        holds(&sync_server::catalog::token_hash(token)),
        "its hash is"
    );
    assert!(
        admin(d, &["token", "revoke", &token[..12]])
            .status
            .success()
    );
    let tokens = String::from_utf8(admin(d, &["token", "list"]).stdout).unwrap();
    assert!(tokens.contains("revoked"));
    assert!(
        admin(d, &["token", "issue", "bob", "--device", "phone"])
            .status
            .success()
    );
    let by_device = admin(d, &["token", "revoke", "--device", "phone"]);
    assert_eq!(
        String::from_utf8_lossy(&by_device.stdout),
        "revoked 1 token(s)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_the_demo_and_prints_how_to_connect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sync.toml");
    // The file says port 9; SYNC_LISTEN (env beats file) says any free port.
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:9\"\nlog = \"warn\"\n",
            data
        ),
    )
    .unwrap();
    let server = spawn_server(
        vec!["--config".into(), config.display().to_string()],
        vec![("SYNC_LISTEN".into(), "127.0.0.1:0".into())],
        dir.path().join("server.log"),
    )
    .await;
    assert_ne!(server.addr.port(), 9);
    let banner = server.banner.join("\n");
    let token = banner
        .split_whitespace()
        .find(|w| w.starts_with("sst_"))
        .unwrap_or_else(|| panic!("no token in {banner}"))
        .to_string();
    // The commands: every indented line but the token's, each of which works as printed
    // (the `readme` test of session-sync-tests runs them).
    let commands: Vec<&str> = server
        .banner
        .iter()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| *l != token)
        .collect();
    assert_eq!(
        commands,
        [
            "cargo install --locked --path sync-cli".to_string(),
            format!(
                "sync-cli init demo.db --server http://127.0.0.1:{} --token {token} \
                 --database demo --fts notes:title,body",
                server.addr.port()
            ),
        ],
        "{banner}"
    );
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/v1/databases/demo", server.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, info) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (info["device"].as_str(), info["schema_version"].as_u64()),
        (Some("demo-device"), Some(1))
    );
    let status = server.terminate().await;
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    assert!(data.join("dbs/1.db").exists());

    // The second start finds users and creates nothing.
    let again = spawn_server(
        vec![
            "--data".into(),
            data.display().to_string(),
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        vec![],
        dir.path().join("server2.log"),
    )
    .await;
    assert_eq!(again.banner.len(), 1, "{:?}", again.banner);
    again.kill();
}

#[test]
fn a_schema_with_untrackable_tables_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema");
    std::fs::create_dir(&schema).unwrap();
    std::fs::write(
        schema.join("0001_init.sql"),
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE audit_trail(at INTEGER, what TEXT);",
    )
    .unwrap();
    let out = Command::new(server_bin())
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--schema"])
        .arg(&schema)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audit_trail") && stderr.contains("no PRIMARY KEY"),
        "{stderr}"
    );

    // A policy naming a missing column is refused too.
    std::fs::write(
        schema.join("0001_init.sql"),
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);",
    )
    .unwrap();
    let out = Command::new(server_bin())
        .arg("--data")
        .arg(dir.path().join("data"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            "items=newest-wins:updated_at",
            "--schema",
        ])
        .arg(&schema)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("updated_at"));
}
