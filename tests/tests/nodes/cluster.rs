//! The servers of the nodes world: one throwaway PostgreSQL cluster of the test's own (so that
//! restarting it hits nobody else), and per conflict-policy combination three real
//! `sync-server` processes — the binary, built by this test with its own profile — on one
//! store database, each with a data directory of its own (its caches).
//!
//! A node can be SIGKILLed at any moment and started again on the same port (else a new one),
//! with its data directory kept or wiped to an empty cache.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use sync_server::catalog;
use sync_server::datadir::DataDir;
use sync_server::store::PgStore;
use sync_testkit::pg::PgCluster;

/// Nodes per policy combination.
pub const NODES: usize = 3;

/// The `sync-server` binary of this test's profile, built once per test process.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile dir>/deps/nodes-…
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_string(),
            other => other.to_string(),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--profile", &profile, "-p", "sync-server", "--bin"])
            .arg("sync-server")
            .current_dir(workspace)
            .status()
            .expect("cannot run cargo");
        assert!(
            status.success(),
            "cargo build -p sync-server failed: {status}"
        );
        let bin = profile_dir.join("sync-server");
        assert!(bin.is_file(), "no sync-server in {profile_dir:?}");
        bin
    })
}

/// One node: its process (none while it is down), port and data directory.
struct Node {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    log: PathBuf,
}

/// The three nodes of one policy combination, on one store database.
pub struct Nodes {
    bin: PathBuf,
    /// `serve` arguments every node gets (store, schema, policies, limits).
    args: Vec<String>,
    nodes: Mutex<Vec<Node>>,
    /// The store database's name (for psql).
    pub store_db: String,
    /// The catalog as the admin commands see it (through the store).
    pub admin: DataDir,
    _dir: tempfile::TempDir,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Nodes {
    /// Starts [`NODES`] nodes on a new store database of `pg`, with `serve` arguments `args`.
    pub fn start(pg: &PgCluster, args: Vec<String>) -> Nodes {
        let url = pg.create_database();
        let store_db = url.rsplit('/').next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["serve".to_string(), "--store".into(), url.clone()];
        all.extend(args);
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let data = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let mut node = Node {
                child: None,
                port: 0,
                data,
                log: dir.path().join(format!("node{i}.log")),
            };
            spawn(server_binary(), &all, &mut node).unwrap_or_else(|e| panic!("node {i}: {e}"));
            nodes.push(node);
        }
        let admin_dir = dir.path().join("admin");
        std::fs::create_dir_all(&admin_dir).unwrap();
        let store = PgStore::connect(&url, 2).expect("the store");
        let admin = DataDir::plain(admin_dir).with_store(Arc::new(store));
        Nodes {
            bin: server_binary().to_path_buf(),
            args: all,
            nodes: Mutex::new(nodes),
            store_db,
            admin,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT` of node `i` (whether or not it is up).
    pub fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", lock(&self.nodes)[i].port)
    }

    /// The file of database `id` in node `i`'s cache.
    pub fn db_file(&self, i: usize, id: i64) -> PathBuf {
        lock(&self.nodes)[i]
            .data
            .join("dbs")
            .join(format!("{id}.db"))
    }

    /// SIGKILLs node `i`; false when it was down already.
    pub fn kill(&self, i: usize) -> bool {
        let mut nodes = lock(&self.nodes);
        match nodes[i].child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    /// The nodes that are down.
    pub fn down(&self) -> Vec<usize> {
        let nodes = lock(&self.nodes);
        (0..nodes.len())
            .filter(|i| nodes[*i].child.is_none())
            .collect()
    }

    /// Starts node `i` again (it must be down), its cache kept or (`wipe`) emptied; on its
    /// old port when that is still free, else on a new one.
    pub fn restart(&self, i: usize, wipe: bool) -> Result<(), String> {
        let mut nodes = lock(&self.nodes);
        let node = &mut nodes[i];
        assert!(node.child.is_none(), "node {i} is up");
        if wipe {
            let _ = std::fs::remove_dir_all(&node.data);
            std::fs::create_dir_all(&node.data).unwrap();
        }
        if spawn(&self.bin, &self.args, node).is_ok() {
            return Ok(());
        }
        node.port = 0;
        spawn(&self.bin, &self.args, node)
    }

    /// Nodes that exited although nobody killed them, with their exit status and log tail.
    pub fn crashed(&self) -> Vec<String> {
        let mut nodes = lock(&self.nodes);
        let mut out = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(child) = &mut node.child
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                out.push(format!(
                    "node {i} exited ({status}):\n{}",
                    log_tail(&node.log)
                ));
            }
        }
        out
    }

    /// Creates user `user` if new, database `db` and tokens for `devices`; the database's id
    /// and the tokens.
    pub fn setup(&self, user: &str, db: &str, devices: &[String]) -> (i64, Vec<String>) {
        let dir = &self.admin;
        let mut c = dir.open_catalog().unwrap();
        let _ = dir.catalog_write(&mut c, |c| catalog::add_user(c, user));
        let id = dir
            .catalog_write(&mut c, |c| catalog::create_database(c, db, user))
            .expect("a new database");
        let tokens = devices
            .iter()
            .map(|d| {
                dir.catalog_write(&mut c, |c| catalog::issue_token(c, user, d))
                    .expect("a token")
                    .token
            })
            .collect();
        (id, tokens)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }
}

/// Starts the binary for `node` on its port (0: any) and waits until it says where it
/// listens; its log (stderr) is appended to the node's log file.
fn spawn(bin: &Path, args: &[String], node: &mut Node) -> Result<(), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .unwrap();
    let mut cmd = Command::new(bin);
    // SAFETY: only an async-signal-safe call between fork and exec. The node gets SIGKILL
    // when the thread that started it ends — the test's thread — so no node outlives a test
    // that was killed or panicked.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd
        .args(args)
        .arg("--data")
        .arg(&node.data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", node.port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait().unwrap();
            return Err(format!(
                "node exited ({status}) before listening after {:?}:\n{}",
                started.elapsed(),
                log_tail(&node.log)
            ));
        };
        if let Some(addr) = line.strip_prefix("sync-server listening on http://") {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            break addr.port();
        }
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    node.port = port;
    node.child = Some(child);
    Ok(())
}

/// The last lines of a node's log.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
