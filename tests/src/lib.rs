//! Black-box tests across crates (server and clients over a real socket) live in this
//! package's `tests/` directory; this library holds what they share: a server running in this
//! process on 127.0.0.1:0, admin shortcuts, client databases, and comparisons.
//!
//! The `sync-cli` tests are not here: Cargo builds a binary before the integration tests of
//! its own package only (and gives them its path in `CARGO_BIN_EXE_sync-cli`), so they live in
//! `sync-cli/tests/cli/`.

use rusqlite::Connection;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sync_client::{ClientConfig, RemoteConfig, SyncClient};
use sync_core::engine::changeset::Changeset;
use sync_core::protocol::conflicts::ConflictRecord;
use sync_server::{AppState, ServerConfig};
use sync_testkit::{Admin, Blocking};

/// A sync server on its own tokio runtime (the client library is blocking): the shared
/// harness, `sync_testkit::Blocking`, with the shortcuts these tests use.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub state: AppState,
    addr: SocketAddr,
    data: tempfile::TempDir,
    running: Blocking,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    /// A server whose configuration `f` adjusts (policies, schema directory, …).
    pub fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = sync_testkit::config(data.path());
        f(&mut config);
        let running = Blocking::start(config);
        let s = running.server().expect("started");
        Server {
            base: s.base.clone(),
            state: s.state.clone(),
            addr: s.addr,
            data,
            running,
        }
    }

    /// Stops serving (graceful: requests in flight finish, event streams end, databases
    /// close). Clients then get "connection refused" until [`Server::restart_with`].
    pub fn stop(&mut self) {
        self.running.stop();
    }

    /// Stops the server if running and starts it again on the same data directory and port
    /// (so clients' stored URL stays valid), with the configuration `f` adjusts.
    pub fn restart_with(&mut self, f: impl FnOnce(&mut ServerConfig)) {
        self.stop();
        let mut config = sync_testkit::config(self.data.path());
        config.listen = self.addr;
        f(&mut config);
        self.running = Blocking::start(config);
        let s = self.running.server().expect("started");
        assert_eq!(s.addr, self.addr);
        self.base = s.base.clone();
        self.state = s.state.clone();
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Creates `user` (if new) and database `db`; returns a token for device `device`.
    pub fn setup(&self, user: &str, db: &str, device: &str) -> String {
        Admin(self.data.path()).setup(user, db, device)
    }

    /// A token for another device of `user`.
    pub fn token(&self, user: &str, device: &str) -> String {
        Admin(self.data.path()).token(user, device)
    }

    /// The server's file for database `db`.
    pub fn db_path(&self, db: &str) -> PathBuf {
        Admin(self.data.path()).db_path(db)
    }

    /// A new local copy of the `notes` database at `dir/file`, initialised from this server
    /// with `token` (see [`Server::setup`] and [`Server::token`]).
    pub fn notes_client(
        &self,
        dir: &Path,
        file: &str,
        token: &str,
        config: ClientConfig,
    ) -> SyncClient {
        init_client(dir, file, self.remote(token, "notes"), config)
    }

    /// Two devices of alice on `notes` — `a` (laptop) and `b` (phone) — with local copies in
    /// a directory of their own.
    pub fn pair(&self) -> Pair {
        let ta = self.setup("alice", "notes", "laptop");
        let tb = self.token("alice", "phone");
        let dir = tempfile::tempdir().unwrap();
        let a = self.notes_client(dir.path(), "a.db", &ta, ClientConfig::default());
        let b = self.notes_client(dir.path(), "b.db", &tb, ClientConfig::default());
        Pair {
            dir,
            a,
            b,
            tokens: (ta, tb),
        }
    }

    pub fn remote(&self, token: &str, db: &str) -> RemoteConfig {
        RemoteConfig {
            url: self.base.clone(),
            token: token.to_string(),
            database: db.to_string(),
        }
    }

    /// The conflicts the server recorded for `db` (what `GET …/conflicts` serves), oldest
    /// first.
    pub fn conflicts(&self, db: &str) -> Vec<ConflictRecord> {
        let conn = read_only(&self.db_path(db));
        sync_core::server::conflicts::conflicts(&conn, 0, 10_000)
            .unwrap()
            .0
    }

    /// `GET path` with `token` over a plain HTTP/1.1 connection, as any HTTP client would
    /// send it: the status and the body (for checking endpoints the client library does not
    /// call, like `/v1/databases/{db}/conflicts`).
    pub fn http_get(&self, token: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            let mut out = String::new();
            let mut rest = body;
            loop {
                let (size, after) = rest.split_once("\r\n").unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                if size == 0 {
                    break;
                }
                out.push_str(&after[..size]);
                rest = &after[size + 2..];
            }
            out
        } else {
            body.to_string()
        };
        (status, body)
    }

    /// The log of `db`: (seq, device, applied?, effect) per entry.
    pub fn log(&self, db: &str) -> Vec<(i64, String, bool, Changeset)> {
        let conn = read_only(&self.db_path(db));
        let mut stmt = conn
            .prepare("SELECT seq, device, status, effect FROM _sync_log ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)? == 0,
                Changeset::from_bytes(r.get(3)?),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}

fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// A new client database in `dir` bootstrapped from the server.
pub fn init_client(
    dir: &Path,
    name: &str,
    remote: RemoteConfig,
    config: ClientConfig,
) -> SyncClient {
    SyncClient::init(dir.join(name), remote, config).unwrap()
}

/// Rows of every app table (internal `_sync_*` tables excluded), sorted.
pub fn dump(path: &Path) -> Vec<(String, Vec<Vec<rusqlite::types::Value>>)> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables = sync_core::engine::schema::user_tables(&conn).unwrap();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n).map(|i| r.get(i)).collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (t, rows)
        })
        .collect()
}

/// `sqldiff --primarykey` between two databases, per app table: empty when equal.
pub fn sqldiff(a: &Path, b: &Path) -> String {
    let conn = Connection::open_with_flags(a, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables = sync_core::engine::schema::user_tables(&conn).unwrap();
    let mut out = String::new();
    for t in tables {
        let o = std::process::Command::new("sqldiff")
            .arg("--primarykey")
            .arg("--table")
            .arg(&t)
            .arg(a)
            .arg(b)
            .output()
            .expect("sqldiff is installed (sqlite3-tools)");
        assert!(
            o.status.success(),
            "sqldiff failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

/// Two devices on one server database ([`Server::pair`]).
pub struct Pair {
    /// Where their files are.
    pub dir: tempfile::TempDir,
    /// The laptop (`a.db`).
    pub a: SyncClient,
    /// The phone (`b.db`).
    pub b: SyncClient,
    /// Their tokens.
    pub tokens: (String, String),
}

impl Pair {
    /// A file of theirs.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Closes both and checks that their files and the server's equal each other.
    #[track_caller]
    pub fn assert_converged(self, server: &Server) {
        self.a.close();
        self.b.close();
        assert_all_equal(&[
            &server.db_path("notes"),
            &self.path("a.db"),
            &self.path("b.db"),
        ]);
    }
}

/// Asserts that `sqldiff` finds no difference between any two of `dbs` (every pair, in both
/// roles), naming the pair that differs.
#[track_caller]
pub fn assert_all_equal(dbs: &[&Path]) {
    for (i, a) in dbs.iter().enumerate() {
        for b in &dbs[i + 1..] {
            let diff = sqldiff(a, b);
            assert!(
                diff.is_empty(),
                "{} and {} differ:\n{diff}",
                a.display(),
                b.display()
            );
        }
    }
}

/// Polls `cond` until it holds, failing the test with `what` if `timeout` passes first. For
/// outcomes that arrive on their own (background sync, indexing); never sleep instead.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One integer from a read-only query on the client (`SELECT count(*) …`).
pub fn query_i64(client: &SyncClient, sql: &str) -> i64 {
    let sql = sql.to_string();
    client
        .read(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
        .unwrap()
}

/// One optional text value from a read-only query on the client.
pub fn query_text(client: &SyncClient, sql: &str) -> Option<String> {
    let sql = sql.to_string();
    client
        .read(move |c| {
            Ok(c.query_row(&sql, [], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?)
        })
        .unwrap()
}

/// Runs `sql` as one captured local write.
pub fn exec(client: &SyncClient, sql: &str) {
    let sql = sql.to_string();
    client
        .write(move |c| Ok(c.execute_batch(&sql)?))
        .unwrap_or_else(|e| panic!("write failed: {e}"));
}
