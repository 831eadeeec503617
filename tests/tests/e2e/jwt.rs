//! Bring-your-own auth from the client's side: a credentials provider hands out JWTs the
//! server verifies (HS256, minted here). A token that expires is refreshed after the `401`
//! and the request retried; the token never lands in the database file.

use session_sync_tests::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_client::{ClientConfig, Credentials, ErrorKind, RemoteConfig, SyncClient};
use sync_server::config::JwtConfig;

const SECRET: &[u8] = b"the e2e HS256 secret, thirty-two bytes or more";
const AUD: &str = "session-sync";
const ISS: &str = "https://id.example.test/";

fn mint(sub: &str, device: &str, ttl_secs: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": sub, "device": device,
        "iat": now, "exp": now + ttl_secs,
        "sync": {"databases": {"notes": "rw"}},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

/// An identity provider stand-in: the first token lives `first_ttl` seconds, refreshed ones
/// `refreshed_ttl`; it counts the calls and remembers every token it gave.
struct Provider {
    first_ttl: i64,
    refreshed_ttl: i64,
    asked: AtomicUsize,
    refreshed: AtomicUsize,
    given: std::sync::Mutex<Vec<String>>,
}

impl Provider {
    fn new(first_ttl: i64, refreshed_ttl: i64) -> Arc<Provider> {
        Arc::new(Provider {
            first_ttl,
            refreshed_ttl,
            asked: AtomicUsize::new(0),
            refreshed: AtomicUsize::new(0),
            given: Default::default(),
        })
    }
}

impl Credentials for Provider {
    fn token(&self, refresh: bool) -> sync_client::Result<String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ttl = if refresh {
            self.refreshed.fetch_add(1, Ordering::SeqCst);
            self.refreshed_ttl
        } else {
            self.first_ttl
        };
        let token = mint("alice", "phone", ttl);
        self.given.lock().unwrap().push(token.clone());
        Ok(token)
    }
}

fn jwt_server() -> Server {
    Server::start_with(|c| {
        let mut jwt = JwtConfig::hs256(SECRET, AUD, ISS);
        jwt.leeway = Duration::ZERO;
        c.jwt = Some(jwt);
    })
}

fn config(provider: &Arc<Provider>) -> ClientConfig {
    ClientConfig {
        credentials: Some(provider.clone() as Arc<dyn Credentials>),
        retries: 2,
        ..ClientConfig::default()
    }
}

/// Every byte of the copy's files (database, WAL).
fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(path).unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    all.extend(std::fs::read(wal).unwrap_or_default());
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_provider_refreshes_an_expired_token_after_a_401_and_the_file_holds_no_token() {
    let server = jwt_server();
    server.setup("owner", "notes", "owner-laptop");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    // The first token expires two seconds from now; refreshed ones last five minutes.
    let provider = Provider::new(2, 300);
    let remote = RemoteConfig {
        url: server.remote("", "notes").url,
        token: String::new(),
        database: "notes".into(),
    };
    let client = SyncClient::init(&path, remote, config(&provider)).unwrap();
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'first', 1)",
    );
    client.sync_now().unwrap();
    assert_eq!(provider.refreshed.load(Ordering::SeqCst), 0);

    // `exp` is in whole seconds and a token is valid through its `exp` second.
    std::thread::sleep(Duration::from_millis(3_200));
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'after expiry', 2)",
    );
    client
        .sync_now()
        .expect("the provider's fresh token is used");
    assert_eq!(provider.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(client.status().unwrap().pending_changesets, 0);
    let log = server.log("notes");
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|(_, device, applied, _)| device == "jwt:alice:phone" && *applied)
    );

    // No token the provider gave is in the copy's files.
    client.close();
    let bytes = file_bytes(&path);
    for token in provider.given.lock().unwrap().iter() {
        assert!(
            !contains(&bytes, token.as_bytes()),
            "a token is in the file"
        );
        let signature = token.rsplit('.').next().unwrap();
        assert!(!contains(&bytes, signature.as_bytes()));
    }
    // Reopened with no remote, the copy takes the provider from the config and syncs.
    let client = SyncClient::open(&path, config(&provider)).unwrap();
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (3, 'reopened', 3)",
    );
    client.sync_now().unwrap();
    assert_eq!(server.log("notes").len(), 3);
    client.close();
    // Without a provider there is no stored token to fall back on: an auth error, local
    // work unaffected.
    let client = SyncClient::open(&path, ClientConfig::default()).unwrap();
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (4, 'offline', 4)",
    );
    let err = client.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(client.status().unwrap().pending_changesets, 1);
}

#[test]
fn a_provider_whose_fresh_token_is_refused_too_is_an_auth_error() {
    let server = jwt_server();
    let own = server.setup("owner", "notes", "owner-laptop");
    let dir = tempfile::tempdir().unwrap();
    // A copy made with the server's own token, then opened with a provider that only has
    // expired tokens: the first 401 asks for a fresh one, the second is the error.
    let client = server.notes_client(dir.path(), "a.db", &own, ClientConfig::default());
    client.close();
    let provider = Provider::new(-60, -60);
    let client = SyncClient::open(dir.path().join("a.db"), config(&provider)).unwrap();
    exec(
        &client,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'kept', 1)",
    );
    let err = client.sync_now().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(
        err.server_body().map(|b| b.code.as_str()),
        Some("token_expired")
    );
    // One refresh per refused request (never a loop): asked once at first use, then once
    // after each 401.
    let refreshed = provider.refreshed.load(Ordering::SeqCst);
    assert!(refreshed >= 1);
    assert_eq!(provider.asked.load(Ordering::SeqCst), refreshed + 1);
    assert_eq!(client.status().unwrap().pending_changesets, 1);
    client.close();
    // The own token the copy was made with is no longer stored: the provider took over.
    // (Its bytes may survive in free pages until a VACUUM: a copy that must never hold a
    // token is set up with a provider from the start, as above.)
    let conn = rusqlite::Connection::open(dir.path().join("a.db")).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM _sync_remote WHERE key = 'token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

/// An identity provider's token that names no device (the common case): the copy names
/// itself with the device id it made at init (`Sync-Device`), the same across reopens, and
/// two copies of one user are two devices.
#[test]
fn a_token_without_a_device_claim_syncs_as_the_copy_s_own_device() {
    struct NoDevice;
    impl Credentials for NoDevice {
        fn token(&self, _refresh: bool) -> sync_client::Result<String> {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            let claims = serde_json::json!({
                "iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300,
                "sync": {"databases": {"notes": "rw"}},
            });
            Ok(jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
            )
            .unwrap())
        }
    }
    let server = jwt_server();
    server.setup("owner", "notes", "owner-laptop");
    let dir = tempfile::tempdir().unwrap();
    let remote = RemoteConfig {
        url: server.remote("", "notes").url,
        token: String::new(),
        database: "notes".into(),
    };
    let config = || ClientConfig {
        credentials: Some(Arc::new(NoDevice) as Arc<dyn Credentials>),
        ..ClientConfig::default()
    };
    let a = SyncClient::init(dir.path().join("a.db"), remote.clone(), config()).unwrap();
    let b = SyncClient::init(dir.path().join("b.db"), remote, config()).unwrap();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (1, 'a', 1)",
    );
    a.sync_now().unwrap();
    a.close();
    let a = SyncClient::open(dir.path().join("a.db"), config()).unwrap();
    exec(
        &a,
        "INSERT INTO notes(id, title, updated_at) VALUES (2, 'a again', 2)",
    );
    a.sync_now().unwrap();
    exec(
        &b,
        "INSERT INTO notes(id, title, updated_at) VALUES (3, 'b', 3)",
    );
    b.sync_now().unwrap();
    let devices: Vec<String> = server
        .log("notes")
        .into_iter()
        .map(|(_, d, _, _)| d)
        .collect();
    assert_eq!(devices.len(), 3);
    assert!(
        devices.iter().all(|d| d.starts_with("jwt:alice:")),
        "{devices:?}"
    );
    assert_eq!(devices[0], devices[1], "a reopened copy is the same device");
    assert_ne!(devices[0], devices[2], "two copies are two devices");
    a.close();
    b.close();
}
