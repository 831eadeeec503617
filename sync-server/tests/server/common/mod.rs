//! Shared helpers: an in-process server on 127.0.0.1:0 over a temp data directory, admin
//! shortcuts, local "device" databases that produce changesets, HTTP helpers, and dumps of
//! a server database for before/after comparisons.

#![allow(dead_code)]

use reqwest::StatusCode;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::ffi::session::Session;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::protocol::pull as log;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::push::PushResponse;
use sync_server::catalog;
use sync_server::datadir::DataDir;
use sync_server::migrations::AppSchema;
use sync_server::{AppState, ServerConfig};
use sync_testkit::{Admin, InProcess};

/// The demo schema's SQL (what every test device starts from).
pub fn demo_sql() -> String {
    AppSchema::embedded().migrations()[0].sql.clone()
}

/// A server running in this process (the shared harness, `sync_testkit::InProcess`), with an
/// HTTP client and the shortcuts these tests use.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The socket address.
    pub addr: std::net::SocketAddr,
    /// The state it serves (for direct inspection).
    pub state: AppState,
    /// HTTP client with keep-alive.
    pub http: reqwest::Client,
    data: tempfile::TempDir,
    server: Option<InProcess>,
}

impl TestServer {
    /// A server with the default configuration (embedded schema, last-push-wins).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `f` adjusts.
    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = sync_testkit::config(data.path());
        f(&mut config);
        if config.store.is_none() && std::env::var("SYNC_TEST_STORE").as_deref() == Ok("postgres") {
            // The same tests against the PostgreSQL store: a fresh database of the shared
            // throwaway cluster for each server.
            config.store = Some(sync_testkit::pg::PgCluster::shared().create_database());
        }
        let server = InProcess::start(config).await;
        TestServer {
            base: server.base.clone(),
            addr: server.addr,
            state: server.state.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            data,
            server: Some(server),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A catalog connection, as the admin CLI has.
    pub fn admin(&self) -> Connection {
        Admin(self.data.path()).catalog()
    }

    /// The data directory as the admin commands see it (with the server's store, if any).
    pub fn data(&self) -> &DataDir {
        &self.state.shared().data
    }

    /// Creates `user` (if new) and database `db` owned by it; returns a token for device
    /// `{user}-{db}`.
    pub fn setup(&self, user: &str, db: &str) -> String {
        setup_in(self.data(), user, db, &format!("{user}-{db}"))
    }

    /// The PostgreSQL store's URL, when the server has one.
    pub fn store_url(&self) -> Option<String> {
        self.state.shared().config.store.clone()
    }

    /// Runs the catalog write `f` as the admin CLI does (through the store, if any).
    pub fn catalog<T>(&self, f: impl FnMut(&Connection) -> Result<T, catalog::CatalogError>) -> T {
        let dir = self.data();
        let mut c = dir.open_catalog().unwrap();
        dir.catalog_write(&mut c, f).expect("the catalog write")
    }

    /// Creates `user` through the catalog (and the store).
    pub fn add_user(&self, user: &str) {
        let dir = self.data();
        let mut c = dir.open_catalog().unwrap();
        dir.catalog_write(&mut c, |c| catalog::add_user(c, user))
            .expect("a new user");
    }

    /// A token for another device of `user`.
    pub fn token(&self, user: &str, device: &str) -> String {
        let dir = self.data();
        let mut c = dir.open_catalog().unwrap();
        dir.catalog_write(&mut c, |c| catalog::issue_token(c, user, device))
            .expect("a token")
            .token
    }

    /// The file of database `db`.
    pub fn db_path(&self, db: &str) -> PathBuf {
        Admin(self.data.path()).db_path(db)
    }

    /// `{base}/v1/databases/{db}{rest}`
    pub fn url(&self, db: &str, rest: &str) -> String {
        format!("{}/v1/databases/{db}{rest}", self.base)
    }

    /// Pushes `body` as batch `batch` with cursor `cursor` and schema version 1.
    pub async fn push(
        &self,
        token: &str,
        db: &str,
        batch: &str,
        cursor: i64,
        body: &[u8],
    ) -> (StatusCode, Json) {
        let r = self
            .http
            .post(self.url(db, "/push"))
            .bearer_auth(token)
            .header("content-type", "application/vnd.sqlite-changeset")
            .header("sync-batch-id", batch)
            .header("sync-cursor", cursor.to_string())
            .header("sync-schema-version", "1")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    /// Pushes a batch of transactions (the client's framing): `(id, changeset)` each.
    pub async fn push_batch(
        &self,
        token: &str,
        db: &str,
        batch: &str,
        cursor: i64,
        txs: &[(i64, &[u8])],
    ) -> (StatusCode, Json) {
        let body = sync_core::protocol::batch::encode(txs);
        self.push_raw_batch(token, db, batch, cursor, body).await
    }

    /// Pushes `body` as a batch (whatever it holds).
    pub async fn push_raw_batch(
        &self,
        token: &str,
        db: &str,
        batch: &str,
        cursor: i64,
        body: Vec<u8>,
    ) -> (StatusCode, Json) {
        let r = self
            .http
            .post(self.url(db, "/push"))
            .bearer_auth(token)
            .header("content-type", sync_core::protocol::batch::MEDIA_TYPE)
            .header("sync-batch-id", batch)
            .header("sync-cursor", cursor.to_string())
            .header("sync-schema-version", "1")
            .body(body)
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    /// Pushes and expects 200; returns the answer.
    pub async fn push_ok(
        &self,
        token: &str,
        db: &str,
        batch: &str,
        cursor: i64,
        body: &[u8],
    ) -> PushResponse {
        let (status, json) = self.push(token, db, batch, cursor, body).await;
        assert_eq!(status, StatusCode::OK, "push answered {json}");
        serde_json::from_value(json).unwrap()
    }

    /// Pulls one page after `since`.
    pub async fn pull(&self, token: &str, db: &str, since: i64) -> LogPage {
        let r = self
            .http
            .get(self.url(db, &format!("/pull?since={since}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        log::decode(&r.bytes().await.unwrap()).unwrap()
    }

    /// A local database holding the server's state, rebuilt from the whole log (so it also
    /// checks that the log reproduces the server's data).
    pub async fn local_copy(&self, token: &str, db: &str) -> Local {
        let local = Local::new();
        let mut since = 0;
        loop {
            let page = self.pull(token, db, since).await;
            for e in &page.entries {
                local.apply_effect(&e.effect);
                since = e.seq;
            }
            if !page.more {
                break;
            }
        }
        local
    }
}

/// Through `dir`'s catalog (and its store, if any): creates `user` if new and database `db`
/// owned by it; returns a token for `device`.
pub fn setup_in(dir: &DataDir, user: &str, db: &str, device: &str) -> String {
    let mut c = dir.open_catalog().unwrap();
    let _ = dir.catalog_write(&mut c, |c| catalog::add_user(c, user));
    dir.catalog_write(&mut c, |c| catalog::create_database(c, db, user))
        .expect("a new database");
    dir.catalog_write(&mut c, |c| catalog::issue_token(c, user, device))
        .expect("a token")
        .token
}

/// Status and JSON body of a response.
pub async fn json_of(r: reqwest::Response) -> (StatusCode, Json) {
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

/// Asserts a coded error.
pub fn assert_error(status: StatusCode, json: &Json, want_status: u16, want_code: &str) {
    assert_eq!(
        (status.as_u16(), json["code"].as_str().unwrap_or("")),
        (want_status, want_code),
        "answer: {json}"
    );
    assert_eq!(json["v"], 1, "{json}");
    assert!(json["message"].is_string(), "{json}");
}

/// A device's local database with the demo schema; makes changesets with a session.
pub struct Local {
    /// The connection.
    pub conn: Connection,
}

impl Local {
    /// An empty database with the demo schema.
    pub fn new() -> Local {
        Self::with_schema(&demo_sql())
    }

    /// An empty database with another schema.
    pub fn with_schema(sql: &str) -> Local {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(sql).unwrap();
        Local { conn }
    }

    /// Runs `sql` and returns the changeset it produced.
    pub fn change(&self, sql: &str) -> Vec<u8> {
        let mut session = Session::new(&self.conn).unwrap();
        session.attach(None).unwrap();
        self.conn.execute_batch(sql).unwrap();
        let mut out = Vec::new();
        session.changeset_strm(&mut out).unwrap();
        out
    }

    /// Applies a pulled effect; any conflict is a test failure (the log is authoritative).
    pub fn apply_effect(&self, effect: &Changeset) {
        apply_effect(&self.conn, effect);
    }

    /// `SELECT` rows as strings.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        rows(&self.conn, sql)
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

/// Applies a pulled effect to `conn` as a client does (foreign-key actions off: the effect
/// already contains cascaded rows); panics on any conflict.
pub fn apply_effect(conn: &Connection, effect: &Changeset) {
    if effect.is_empty() {
        return;
    }
    let options = ApplyOptions {
        fk_no_action: true,
        ..ApplyOptions::with_policies(PolicySet::uniform(Policy::Abort))
    };
    let report = sync_core::engine::apply::apply(conn, effect, &options).unwrap();
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
}

/// Every row of a query, each as one string.
pub fn rows(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                ValueRef::Text(t) => format!("Text({:?})", String::from_utf8_lossy(t)),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A logical dump of a database file — every table, internal ones included, every row in key
/// order — to compare before and after a request.
pub fn dump(path: &Path) -> String {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut out = String::new();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for sql in rows(&conn, "SELECT sql FROM sqlite_schema ORDER BY name") {
        out.push_str(&sql);
        out.push('\n');
    }
    for name in names {
        out.push_str(&format!("== {name}\n"));
        let mut all = rows(&conn, &format!("SELECT * FROM \"{name}\""));
        all.sort();
        for row in all {
            out.push_str(&row);
            out.push('\n');
        }
    }
    out
}

/// A consistent copy of a live database file (SQLite's backup API).
pub fn copy_db(from: &Path, to: &Path) {
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    src.backup(
        rusqlite::MAIN_DB,
        to,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .unwrap();
}

/// Runs `sqldiff --primarykey --table T A B` for every app table; returns its output.
pub fn sqldiff_app_tables(a: &Path, b: &Path) -> String {
    let mut out = String::new();
    for table in ["notes", "tags", "note_tags"] {
        let o = std::process::Command::new("sqldiff")
            .args(["--primarykey", "--table", table])
            .arg(a)
            .arg(b)
            .output()
            .expect("sqldiff (sqlite3-tools) must be installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

/// Polls `f` until it returns `Some`, up to `deadline`.
pub async fn eventually<T>(deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Sends raw bytes to the server and returns the status and the JSON body (for requests an
/// HTTP client would normalise, like `..` in a path).
pub async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Json) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or(Json::String(body.to_string()));
    (status, json)
}

/// The real `sync-server` binary running as a child process.
pub struct Spawned {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its stdout up to and including the "listening" line.
    pub banner: Vec<String>,
}

/// The binary under test.
pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sync-server")
}

/// Starts the binary with `args` (and `envs`) and waits until it prints its address. Its
/// stderr (the log) goes to `log`.
pub async fn spawn_server(args: Vec<String>, envs: Vec<(String, String)>, log: PathBuf) -> Spawned {
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = std::process::Command::new(server_bin())
            .args(&args)
            .envs(envs)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!(
                    "server exited ({status}) before listening; stdout {banner:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            banner.push(line.clone());
            if let Some(a) = line.strip_prefix("sync-server listening on http://") {
                break a.parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Spawned {
            child,
            addr,
            banner,
        }
    })
    .await
    .unwrap()
}

impl Spawned {
    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            self.child.wait().unwrap()
        })
        .await
        .unwrap()
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// One INSERT into `table` as changeset bytes, written by hand (so a test can name any table
/// in any letter case, including ones no session would record). `pk` holds the key flag of
/// each column (0 = not in the key).
pub fn insert_changeset(
    table: &str,
    pk: &[u8],
    values: Vec<sync_core::engine::value::Value>,
) -> Vec<u8> {
    sync_core::engine::encode::encode(&[sync_core::engine::decode::Change {
        table: table.into(),
        op: sync_core::engine::decode::Op::Insert,
        indirect: false,
        pk: pk.to_vec(),
        old: None,
        new: Some(values.into_iter().map(Some).collect()),
    }])
}

/// The bytes of a database file and its WAL (the shared-memory index is left out: readers
/// write their marks there). Equal fingerprints mean not a page was written.
pub fn file_fingerprint(db: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        hash.update(std::fs::read(PathBuf::from(p)).unwrap_or_default());
        hash.update([0xff]);
    }
    hash.finalize().to_vec()
}

/// Resident and peak resident memory of a process, in bytes (`VmRSS`, `VmHWM`).
pub fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads from `stream` until the peer closes it (or `deadline` passes); returns what arrived
/// and whether it was closed in time.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    deadline: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// The head of a raw push request with a declared body length.
pub fn push_head(db: &str, token: &str, batch: &str, length: usize) -> Vec<u8> {
    format!(
        "POST /v1/databases/{db}/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/vnd.sqlite-changeset\r\nSync-Batch-Id: {batch}\r\n\
         Sync-Cursor: 0\r\nSync-Schema-Version: 1\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}
