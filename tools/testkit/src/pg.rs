//! A real, throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, then
//! `pg_ctl start` on a free port of 127.0.0.1 — nothing needs to be installed as a service or
//! running beforehand, only Debian's `postgresql` package (`apt-get install postgresql`).
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then every PostgreSQL binary runs as
//! the unprivileged `nobody` user (uid and gid read from `/etc/passwd`), over a temporary
//! directory chowned to it with mode 0700. Otherwise it runs as the current user.
//!
//! Most tests share one cluster per test process ([`PgCluster::shared`]) and one database each
//! ([`PgCluster::create_database`]), so they stay isolated without paying for an `initdb` each.
//! A test that stops or restarts PostgreSQL starts a cluster of its own ([`PgCluster::start`]):
//! a restart of the shared one would hit every test running beside it.
//!
//! No cluster outlives the test process: dropping a [`PgCluster`] stops it (immediate mode) and
//! removes its directory, and since statics are never dropped, each cluster also has a
//! watchdog — a small `sh` reading a pipe whose other end only the test process holds. When the
//! test process exits, however it exits, the pipe closes and the watchdog stops the cluster and
//! removes its directory.

use std::fmt::Write;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many free ports [`PgCluster::start`] tries before giving up (another process may take
/// the port between our probe and PostgreSQL's bind).
const START_ATTEMPTS: u32 = 5;

/// Seconds `pg_ctl -w` waits for a start or a stop.
const PG_CTL_TIMEOUT: &str = "60";

/// Environment variables that would make a PostgreSQL tool look somewhere else than the
/// cluster we name explicitly.
const PG_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGCLUSTER",
];

/// A running PostgreSQL cluster in a temporary directory, stopped and removed on drop.
///
/// Its one superuser is `postgres`, with trust authentication on 127.0.0.1: URLs need no
/// password.
pub struct PgCluster {
    /// The temporary directory: `data/` (the cluster), `log` (the server's log) and the Unix
    /// socket. Removed on drop.
    dir: Option<tempfile::TempDir>,
    /// Where `initdb`, `pg_ctl` and `postgres` are.
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// The unprivileged user the binaries run as when we are root (uid, gid); `None`: the
    /// current user.
    run_as: Option<(u32, u32)>,
    /// Stops the cluster when the test process exits without dropping it (statics).
    watchdog: Option<Child>,
}

impl PgCluster {
    /// Starts a new cluster: `initdb`, then `pg_ctl start` on a free port (retried on a few
    /// ports if one is taken meanwhile). Errors carry the tool's output and the server's log.
    ///
    /// Panics when no PostgreSQL binaries are installed (see [`available`]): a test that
    /// needs PostgreSQL cannot go on, and should say how to get it.
    pub fn start() -> io::Result<PgCluster> {
        let bin = bindir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: no initdb and pg_ctl in /usr/lib/postgresql/*/bin \
                 nor in `pg_config --bindir`; install Debian's package: \
                 sudo apt-get install postgresql"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("pgkit-")
            .tempdir_in(std::env::temp_dir())?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        // The directory is created by the effective user: its owner says whether we are root.
        let run_as = if fs::metadata(dir.path())?.uid() == 0 {
            let (uid, gid) = nobody()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            Some((uid, gid))
        } else {
            None
        };
        let mut cluster = PgCluster {
            dir: Some(dir),
            bin,
            port: 0,
            run_as,
            watchdog: None,
        };
        cluster.initdb()?;
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// One cluster for the whole test process, started on first use and stopped when the
    /// process exits (by its watchdog: statics are not dropped). Panics when it cannot start.
    ///
    /// Shared by every test in the process: give each test its own database
    /// ([`PgCluster::create_database`]), and do not stop or restart it — start a cluster of
    /// your own for that.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            PgCluster::start().unwrap_or_else(|e| panic!("the shared PostgreSQL cluster: {e}"))
        })
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The server's log file (what to print when a test fails oddly).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("log")
    }

    /// The postmaster's process id, from `postmaster.pid`; `None` when it is not running.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Creates a fresh, empty database with a name unique in this cluster (`t_PID_N`) and
    /// returns its URL. Panics when PostgreSQL refuses.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` (one or more statements) in `database` with `psql -At`, stopping at the
    /// first error, and returns its standard output (unaligned, tuples only: one row a line,
    /// columns separated by `|`). Panics with psql's standard error when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let psql = psql_binary(&self.bin);
        let mut cmd = Command::new(&psql);
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(["-c", sql]);
        scrub(&mut cmd);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", psql.display()));
        if !out.status.success() {
            panic!(
                "psql on database {database} failed ({}) for:\n{sql}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A crash-like restart: `pg_ctl restart -m immediate -w` (no checkpoint, connections cut,
    /// crash recovery on start), on the same port. Returns when it accepts connections again.
    pub fn restart(&self) {
        // `-l` as on start: without it the new postmaster would write to pg_ctl's standard
        // output, a pipe we read to its end — which would then never come.
        let mut cmd = self.pg_ctl();
        cmd.args(["restart", "-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT])
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(self.server_options());
        self.expect_ok(cmd, "restart");
    }

    /// Stops the server (`pg_ctl stop -m fast -w`): clients then get "connection refused"
    /// until [`PgCluster::start_again`].
    pub fn stop(&self) {
        let mut cmd = self.pg_ctl();
        cmd.args(["stop", "-m", "fast", "-w", "-t", PG_CTL_TIMEOUT]);
        self.expect_ok(cmd, "stop");
    }

    /// Starts the server again after [`PgCluster::stop`], on the same port; returns when it
    /// accepts connections.
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("{e}");
        }
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the directory lives as long as the cluster")
            .path()
    }

    /// A command for PostgreSQL binary `name`, as the user the cluster runs as, in its
    /// directory (so a current directory the user cannot read does not matter).
    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.dir()).stdin(Stdio::null());
        scrub(&mut cmd);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(self.data_dir());
        cmd
    }

    fn initdb(&self) -> io::Result<()> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        check(run(cmd, "initdb")?, "initdb", None)
    }

    /// The postmaster's options: the port, the socket in our directory, loopback only.
    fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port,
            self.dir().display()
        )
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let mut cmd = self.pg_ctl();
        cmd.arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", PG_CTL_TIMEOUT, "-o"])
            .arg(self.server_options())
            .arg("start");
        check(
            run(cmd, "pg_ctl start")?,
            "pg_ctl start",
            Some(&self.log_path()),
        )
    }

    fn expect_ok(&self, cmd: Command, what: &str) {
        let result = run(cmd, what).and_then(|out| check(out, what, Some(&self.log_path())));
        if let Err(e) = result {
            panic!("PostgreSQL on port {}: {e}", self.port);
        }
    }

    /// The watchdog: blocks reading its standard input, a pipe whose write end only this
    /// process holds (std opens pipes close-on-exec, so no other child inherits it). At EOF —
    /// this cluster dropped, or the test process gone however it ended — it stops the cluster
    /// and removes the directory. In a process group of its own, so a Ctrl-C at the terminal
    /// does not kill it before it has done so (the postmaster itself is detached by pg_ctl).
    fn spawn_watchdog(&self) -> io::Result<Child> {
        let script = "trap '' INT HUP; read _ignored; \
                      \"$1\" -D \"$2/data\" stop -m immediate -w -t 60 >/dev/null 2>&1; \
                      rm -rf \"$2\"";
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script, "pgkit-watchdog"])
            .arg(self.bin.join("pg_ctl"))
            .arg(self.dir())
            .current_dir(self.dir())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        scrub(&mut cmd);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.spawn()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            let mut cmd = self.pg_ctl();
            cmd.args(["stop", "-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT]);
            let _ = run(cmd, "pg_ctl stop");
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Already stopped: the watchdog has nothing left to do.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // TempDir's drop removes the directory (we own it, or we are root).
        drop(self.dir.take());
    }
}

/// Whether PostgreSQL's server binaries (`initdb`, `pg_ctl`) are installed.
pub fn available() -> bool {
    bindir().is_some()
}

/// Where `initdb` and `pg_ctl` are: the newest `/usr/lib/postgresql/<version>/bin` (Debian's
/// layout, off PATH), else `pg_config --bindir`.
fn bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && has_tools(&bin)).then_some(bin)
}

/// `15` → `[15]`, `9.6` → `[9, 6]`: directory names compared as versions, not as text.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The bindir's `psql`, else Debian's wrapper `/usr/bin/psql`, else whatever PATH has.
fn psql_binary(bin: &Path) -> PathBuf {
    [bin.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// The uid and gid of `nobody`, from `/etc/passwd`.
fn nobody() -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "running as root, and PostgreSQL refuses root: no user `nobody` in /etc/passwd \
                 to run it as",
            )
        })
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Removes the `PG*` variables that would redirect a tool; keeps messages in English so that
/// errors read the same everywhere.
fn scrub(cmd: &mut Command) {
    for var in PG_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_MESSAGES", "C");
}

fn run(mut cmd: Command, what: &str) -> io::Result<Output> {
    cmd.output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {what}: {e}")))
}

/// `Ok` when the tool succeeded; otherwise an error with its output and the log's tail.
fn check(out: Output, what: &str, log: Option<&Path>) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::new();
    let _ = write!(
        msg,
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(log) = log {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let _ = write!(msg, "\nserver log ({}), last lines:", log.display());
        for line in tail.into_iter().rev() {
            let _ = write!(msg, "\n  {line}");
        }
    }
    Err(io::Error::other(msg))
}
