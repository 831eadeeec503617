//! The throwaway PostgreSQL cluster: real `initdb`, real `pg_ctl`, real `psql`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use sync_testkit::pg::{PgCluster, available};

/// The database name at the end of a URL from `create_database`.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().expect("a URL with a path")
}

/// Whether process `pid` is alive (a zombie is not: it has exited, and only its parent's
/// `wait` is missing — in a container nothing may ever reap it).
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !state.starts_with('Z') && !state.starts_with('X')
}

/// The live processes whose parent is `pid` (a postmaster's backends and workers).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .nth(1);
        if ppid == Some(&pid.to_string()) && alive(child) {
            out.push(child);
        }
    }
    out
}

/// Polls until none of `pids` is alive; panics naming the survivors after 60 s.
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "postgres processes left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_removed(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while dir.exists() {
        assert!(Instant::now() < deadline, "{} still exists", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").expect("/proc/self").uid() == 0
}

#[test]
fn binaries_are_installed() {
    assert!(
        available(),
        "PostgreSQL binaries: sudo apt-get install postgresql"
    );
}

#[test]
fn databases_of_the_shared_cluster_are_isolated() {
    let pg = PgCluster::shared();
    assert!(
        std::ptr::eq(pg, PgCluster::shared()),
        "one cluster per process"
    );
    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port())));
    assert_eq!(pg.url(db_name(&a)), a);

    pg.psql(
        db_name(&a),
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
         INSERT INTO notes VALUES (1, 'one'), (2, 'two|pipe');",
    );
    assert_eq!(
        pg.psql(db_name(&a), "SELECT id, body FROM notes ORDER BY id"),
        "1|one\n2|two|pipe\n"
    );
    assert_eq!(
        pg.psql(db_name(&b), "SELECT to_regclass('notes') IS NULL"),
        "t\n",
        "the other database does not see the table"
    );
}

#[test]
fn bad_sql_panics_with_the_error_and_changes_nothing() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let db = db_name(&url);
    pg.psql(
        db,
        "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)",
    );
    let err = catch_unwind(AssertUnwindSafe(|| {
        pg.psql(
            db,
            "BEGIN; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); COMMIT;",
        )
    }))
    .expect_err("a duplicate key fails");
    let msg = err
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(msg.contains("duplicate key"), "psql's stderr in: {msg}");
    assert_eq!(pg.psql(db, "SELECT x FROM t ORDER BY x"), "1\n");

    let err = catch_unwind(AssertUnwindSafe(|| pg.psql("no_such_db", "SELECT 1")))
        .expect_err("no such database");
    let msg = err.downcast_ref::<String>().expect("a message");
    assert!(msg.contains("no_such_db"), "{msg}");
}

#[test]
fn a_crash_like_restart_keeps_committed_data() {
    // A cluster of its own: restarting the shared one would cut the other tests' connections.
    let pg = PgCluster::start().expect("a cluster");
    let url = pg.create_database();
    let db = db_name(&url);
    pg.psql(
        db,
        "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (7)",
    );
    let before = pg.postmaster_pid().expect("running");

    pg.restart();
    let after = pg.postmaster_pid().expect("running again");
    assert_ne!(before, after, "a new postmaster");
    wait_gone(&[before]);
    assert_eq!(pg.psql(db, "SELECT x FROM t"), "7\n");
    assert!(
        fs::read_to_string(pg.log_path())
            .expect("the log")
            .contains("not properly shut down"),
        "immediate mode: crash recovery on start"
    );

    pg.stop();
    assert_eq!(pg.postmaster_pid(), None);
    let refused = catch_unwind(AssertUnwindSafe(|| pg.psql(db, "SELECT 1")));
    assert!(refused.is_err(), "stopped: psql cannot connect");
    pg.start_again();
    pg.psql(db, "INSERT INTO t VALUES (8)");
    assert_eq!(pg.psql(db, "SELECT x FROM t ORDER BY x"), "7\n8\n");
}

#[test]
fn postgres_runs_unprivileged_and_nothing_is_left_after_drop() {
    let pg = PgCluster::start().expect("a cluster");
    let pid_file = pg.data_dir().join("postmaster.pid");
    let owner = fs::metadata(&pid_file).expect("postmaster.pid").uid();
    let me = fs::metadata("/proc/self").expect("/proc/self").uid();
    if running_as_root() {
        assert_ne!(owner, 0, "PostgreSQL does not run as root");
        let nobody = fs::read_to_string("/etc/passwd")
            .expect("/etc/passwd")
            .lines()
            .find(|l| l.starts_with("nobody:"))
            .and_then(|l| l.split(':').nth(2)?.parse::<u32>().ok())
            .expect("nobody's uid");
        assert_eq!(owner, nobody);
    } else {
        assert_eq!(owner, me, "not root: PostgreSQL runs as the current user");
    }
    let postmaster = pg.postmaster_pid().expect("running");
    let status = fs::read_to_string(format!("/proc/{postmaster}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(owner.to_string().as_str()),
        "the postmaster's own uid: {uid_line}"
    );

    // A connection makes a backend: it must go too.
    pg.psql("postgres", "SELECT 1");
    let mut pids = children(postmaster);
    assert!(!pids.is_empty(), "a postmaster has auxiliary processes");
    pids.push(postmaster);
    let dir = pg
        .data_dir()
        .parent()
        .expect("the cluster's dir")
        .to_path_buf();
    drop(pg);
    wait_gone(&pids);
    assert!(!dir.exists(), "{} is removed", dir.display());
}

/// Helper for the next test, run in a child process: starts the shared cluster, prints where
/// it is, and aborts — the harshest exit: no destructor and no atexit handler runs.
#[test]
fn child_process_that_aborts() {
    if std::env::var_os("PGKIT_CHILD").is_none() {
        return;
    }
    let pg = PgCluster::shared();
    println!(
        "PGKIT {} {}",
        pg.postmaster_pid().expect("running"),
        pg.data_dir().display()
    );
    std::process::abort();
}

#[test]
fn the_cluster_stops_when_the_test_process_dies() {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "child_process_that_aborts", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("PGKIT_CHILD", "1")
        .output()
        .expect("the child runs");
    assert!(!out.status.success(), "the child aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| Some(&l[l.find("PGKIT ")? + "PGKIT ".len()..]))
        .unwrap_or_else(|| panic!("the child's report in: {stdout}"));
    let (pid, data) = line.split_once(' ').expect("pid and dir");
    let pid: u32 = pid.parse().expect("a pid");
    let dir = Path::new(data).parent().expect("the cluster's dir");
    wait_gone(&[pid]);
    wait_removed(dir);
}
