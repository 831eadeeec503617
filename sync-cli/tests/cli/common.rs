//! Helpers shared by the CLI tests: running `sync-cli`, the `sqlite3` shell and `sqldiff` as
//! subprocesses, scratch copies of the Chinook database, and checks on files.

use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use sync_core::engine::changeset::Changeset;
use sync_core::engine::decode::Change;

/// Edits that touch six Chinook tables with every kind of change and value: INSERT, UPDATE
/// (to NULL, REAL including +infinity, BLOB) and DELETE, in the composite-key
/// `PlaylistTrack` too, and a TEXT with a newline. Foreign keys stay satisfied.
///
/// 10 changes: Album 1, Artist 2, Invoice 2, InvoiceLine 1, PlaylistTrack 2, Track 2.
pub const EDITS: &str = "
INSERT INTO Artist VALUES (276, 'New Artist');
INSERT INTO Album VALUES (348, 'New Album', 276);
INSERT INTO Track VALUES (3504, 'Two
lines', 348, 1, NULL, NULL, 1000, NULL, 1.5);
UPDATE Track SET Composer = NULL, UnitPrice = 1.29 WHERE TrackId = 1;
UPDATE Artist SET Name = X'00FF10' WHERE ArtistId = 2;
UPDATE Invoice SET Total = 0.25 WHERE InvoiceId = 1;
UPDATE Invoice SET Total = 9e999 WHERE InvoiceId = 2;
DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId = 3390;
INSERT INTO PlaylistTrack VALUES (1, 3504);
DELETE FROM InvoiceLine WHERE InvoiceLineId = 1;
";

/// The tables [`EDITS`] changes.
pub const EDITED_TABLES: [&str; 6] = [
    "Album",
    "Artist",
    "Invoice",
    "InvoiceLine",
    "PlaylistTrack",
    "Track",
];

/// A finished `sync-cli` (or other tool) run.
#[derive(Debug)]
pub struct Run {
    /// Exit status (-1 if killed by a signal).
    pub status: i32,
    /// Standard output, raw.
    pub stdout_bytes: Vec<u8>,
    /// Standard output as text (lossy).
    pub stdout: String,
    /// Standard error as text (lossy).
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            stdout_bytes: output.stdout,
        }
    }

    /// Asserts the exit status, showing both outputs when it differs.
    #[track_caller]
    pub fn expect(self, status: i32) -> Run {
        assert_eq!(
            self.status, status,
            "expected exit status {status}, got {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        );
        self
    }

    /// Standard output's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// The `sync-cli` binary that Cargo built for this test run.
pub fn sync_cli_path() -> &'static str {
    env!("CARGO_BIN_EXE_sync-cli")
}

/// Runs `sync-cli ARGS` with no standard input.
pub fn sync_cli<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    sync_cli_with_stdin(args, &[])
}

/// Runs `sync-cli ARGS` with `stdin` as standard input.
pub fn sync_cli_with_stdin<I, S>(args: I, stdin: &[u8]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(sync_cli_path());
    command.args(args);
    run_with_stdin(&mut command, stdin)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", sync_cli_path()))
}

fn run_with_stdin(command: &mut Command, stdin: &[u8]) -> std::io::Result<Run> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Feed standard input from a thread so a child that writes a lot before reading cannot
    // deadlock against us.
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The child may exit without reading everything; that is its business.
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output()?;
    feeder.join().expect("stdin feeder");
    Ok(Run::from_output(output))
}

/// Runs a Debian SQLite tool (`sqlite3`, `sqldiff`), failing with an install hint when it is
/// missing: these tests check interoperability with the real tools, so they must not skip.
pub fn tool(name: &str, args: &[&std::ffi::OsStr], stdin: &[u8]) -> Run {
    run_with_stdin(Command::new(name).args(args), stdin).unwrap_or_else(|e| {
        panic!(
            "cannot run `{name}` ({e}); install Debian's sqlite3 and sqlite3-tools (see .ci/run)"
        )
    })
}

/// Runs `sql` in the `sqlite3` shell on `db`, stopping at the first error.
#[track_caller]
pub fn sqlite3(db: &Path, sql: &str) -> Run {
    let run = tool(
        "sqlite3",
        &["-bail".as_ref(), db.as_os_str()],
        sql.as_bytes(),
    )
    .expect(0);
    assert!(run.stderr.is_empty(), "sqlite3 complained: {}", run.stderr);
    run
}

/// `sqldiff --changeset OUT FROM TO`.
#[track_caller]
pub fn sqldiff_changeset(from: &Path, to: &Path, out: &Path, table: Option<&str>) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--changeset".as_ref(), out.as_os_str()];
    if let Some(table) = table {
        args.extend([OsStr::new("--table"), OsStr::new(table)]);
    }
    args.extend([from.as_os_str(), to.as_os_str()]);
    tool("sqldiff", &args, &[]).expect(0);
}

/// Asserts that `sqldiff --primarykey A B` prints nothing: every table holds the same rows.
#[track_caller]
pub fn assert_same_rows(a: &Path, b: &Path) {
    let run = tool(
        "sqldiff",
        &["--primarykey".as_ref(), a.as_os_str(), b.as_os_str()],
        &[],
    )
    .expect(0);
    assert!(
        run.stdout.is_empty(),
        "sqldiff {} {} found differences:\n{}",
        a.display(),
        b.display(),
        run.stdout
    );
}

/// Asserts that `sqldiff --primarykey A B` reports differences.
#[track_caller]
pub fn assert_rows_differ(a: &Path, b: &Path) {
    let run = tool(
        "sqldiff",
        &["--primarykey".as_ref(), a.as_os_str(), b.as_os_str()],
        &[],
    )
    .expect(0);
    assert!(
        !run.stdout.is_empty(),
        "expected {} and {} to differ",
        a.display(),
        b.display()
    );
}

/// A scratch directory, removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new empty directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// A path inside the directory (nothing is created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A writable copy of the Chinook database named `name`. The fixture itself is never
    /// opened read-write.
    pub fn chinook(&self, name: &str) -> PathBuf {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chinook.sqlite");
        let path = self.path(name);
        std::fs::copy(&fixture, &path)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", fixture.display(), path.display()));
        let mut permissions = std::fs::metadata(&path).expect("stat copy").permissions();
        #[allow(clippy::permissions_set_readonly_false)] // our own scratch file
        permissions.set_readonly(false);
        std::fs::set_permissions(&path, permissions).expect("make the copy writable");
        path
    }

    /// A copy of an existing file.
    pub fn copy(&self, from: &Path, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::copy(from, &path).expect("copy file");
        path
    }

    /// Chinook as it is (`orig.db`) and after [`EDITS`] (`edited.db`), made with the sqlite3
    /// shell.
    pub fn chinook_pair(&self) -> (PathBuf, PathBuf) {
        let orig = self.chinook("orig.db");
        let edited = self.chinook("edited.db");
        sqlite3(&edited, EDITS);
        (orig, edited)
    }

    /// Writes `bytes` to a file in the directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write file");
        path
    }
}

/// SHA-256 of a file's bytes, hex-encoded.
pub fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read file to hash");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a changeset file with sync-core (the reference for what the CLI prints).
pub fn changes_in(path: &Path) -> Vec<Change> {
    let bytes = std::fs::read(path).expect("read changeset");
    Changeset::from_bytes(bytes)
        .inspect()
        .expect("sync-core decodes the changeset")
}

/// `sync-cli inspect FILE` as a sorted list of lines: the set of changes, independent of the
/// order in which a tool wrote them.
pub fn inspect_sorted(path: &Path) -> Vec<String> {
    let run = sync_cli(["inspect".as_ref(), path.as_os_str()]).expect(0);
    let mut lines: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// One value of one row, read with rusqlite (bundled SQLite).
pub fn query_value(db: &Path, sql: &str) -> rusqlite::types::Value {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database read-only");
    conn.query_row(sql, [], |r| r.get(0))
        .expect("query one value")
}

/// `sync-cli sync DB --watch` running in its own process, its stdout read line by line.
pub struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    pub fn start(db: &Path) -> Watcher {
        let mut child = Command::new(sync_cli_path())
            .args([OsStr::new("sync"), db.as_os_str(), OsStr::new("--watch")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (10 s at most) until a line printed so far contains `needle`.
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {needle:?} within 10 s; got {:#?}", self.seen),
            }
        }
    }

    /// SIGKILLs the watcher and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
