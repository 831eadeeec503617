//! README's newcomer path, run as written: every line of README's `sh` code blocks and every
//! command the server's first-start banner prints, in order, against the real binaries.
//!
//! How it runs:
//!
//! 1. `$CARGO build -p sync-server -p sync-cli` (the profile this test was built with) puts
//!    the two binaries in the workspace's target directory. After `cargo test`'s own build
//!    they are fresh (it built them with the same features) and this takes about 0.2 s.
//! 2. README's lines run one after another in one `bash` (so `TOKEN=$(…)` on one line is seen
//!    by the next), in a scratch directory that stands for the root of the clone, with the
//!    two binaries first on PATH and no `SYNC_*` variable inherited. Each line must exit with
//!    0, or with the status its comment names (`# … exit status 1 …`). A line that does not
//!    work — a missing file, a name nothing created, an unknown flag — fails the test.
//! 3. A few outputs are checked too (the note is found by `search` on both devices, the
//!    second device's edit reaches the first, `validate` prints what README says, the
//!    changesets README calls empty are).
//!
//! The substitutions, all of them:
//!
//! - README's main-job line (`cargo run --release -p sync-server`) starts the built
//!   `sync-server` binary with no arguments in the scratch directory (so its data directory is
//!   `./sync-data` there), except that `SYNC_LISTEN=127.0.0.1:0` picks a free port instead of
//!   8787; `127.0.0.1:8787` in README's lines is rewritten to that address. The banner is read
//!   from its standard output and its commands (the indented lines but the token's) run right
//!   there, as README tells a newcomer to do (README quotes them, with `sst_3uQ0…` for the
//!   token; that they match is checked too).
//! - `cargo install --locked --path sync-cli` and `… --path sync-server` (README's and the
//!   banner's) are skipped: the built binaries are already on PATH. They are debug builds
//!   when the tests are, not README's `--release` ones.
//! - README's test command (`cargo test && …`) is skipped — it is what runs this test — but
//!   `.ci/run` must run exactly it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MAIN_JOB: &str = "cargo run --release -p sync-server";
const TEST_COMMAND: &str = "cargo test && SYNC_TEST_STORE=postgres cargo test -p sync-server --test server && cargo test -p session-sync-tests --features encryption --test encryption && mobile-bindings/scripts/test-bindings.sh";
const INSTALLS: [&str; 2] = [
    "cargo install --locked --path sync-cli",
    "cargo install --locked --path sync-server",
];
const README_ADDR: &str = "127.0.0.1:8787";
/// How README writes the token the banner prints.
const README_TOKEN: &str = "sst_3uQ0…";
/// The whole walk-through; a line left running (say, `sync --watch`) fails the test then.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Outputs checked beyond exit statuses: (a README line's start, a text its output holds).
const OUTPUTS: [(&str, &str); 5] = [
    ("sync-cli search demo.db milk", "Buy milk"),
    ("sync-cli rejected list demo.db", "no rejected transactions"),
    ("sync-cli search phone.db milk", "Buy milk"),
    (
        "sync-cli query demo.db \"SELECT body FROM notes\"",
        "and eggs",
    ),
    (
        "sync-cli validate edits.cs",
        "valid: 2 changes in 2 tables, 82 bytes",
    ),
];

/// Files the walk-through leaves, and whether README says they are empty.
const FILES: [(&str, bool); 5] = [
    ("edits.cs", false),
    ("undo.cs", false),
    ("rest.cs", true),
    ("both.cs", true),
    ("none.cs", true),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The lines of README's `sh` code blocks, `\`-continued lines joined, comment-only and blank
/// lines left out.
fn readme_sh_lines(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if !in_sh {
            in_sh = line.trim_end() == "```sh";
            continue;
        }
        if line.starts_with("```") {
            assert!(pending.is_empty(), "README: a ```sh block ends in `\\`");
            in_sh = false;
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            continue;
        }
        pending.push_str(line);
        let joined = std::mem::take(&mut pending);
        let trimmed = joined.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            lines.push(trimmed.to_string());
        }
    }
    assert!(!in_sh, "README: a ```sh block is not closed");
    lines
}

/// A line without its trailing comment (what the substitutions compare).
fn command_of(line: &str) -> &str {
    line.find(" #").map_or(line, |i| &line[..i]).trim_end()
}

/// The exit status a README line's comment names (`# … exit status 1 …`), else 0.
fn expected_status(line: &str) -> i32 {
    let Some(comment) = line.find(" #").map(|i| &line[i..]) else {
        return 0;
    };
    match comment.find("exit status ") {
        Some(i) => comment[i + "exit status ".len()..][..1]
            .parse()
            .unwrap_or_else(|_| panic!("README: no status after `exit status` in {line}")),
        None => 0,
    }
}

/// Builds `sync-server` and `sync-cli` with the profile of this test; the directory holding
/// both.
fn build_binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile dir>/deps/readme-…
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let started = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "sync-server",
            "-p",
            "sync-cli",
        ])
        .current_dir(workspace())
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "cargo build failed: {status}");
    eprintln!(
        "readme: cargo build -p sync-server -p sync-cli took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for bin in ["sync-server", "sync-cli"] {
        assert!(
            profile_dir.join(bin).is_file(),
            "no {bin} in {profile_dir:?}"
        );
    }
    profile_dir.to_path_buf()
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the main job in `dir`; returns it, its address, its token and its banner's
/// commands.
fn start_main_job(bin: &Path, dir: &Path) -> (Server, String, String, Vec<String>) {
    let mut child = Command::new(bin.join("sync-server"))
        .current_dir(dir)
        .env_clear()
        .envs(clean_env())
        .env("SYNC_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let server = Server(child);
    let mut banner = Vec::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "the main job stopped before listening; stdout {banner:?}; log:\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        };
        if let Some(addr) = line.strip_prefix("sync-server listening on http://") {
            break addr.to_string();
        }
        banner.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    let token = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("sst_").map(|_| l.trim().to_string()))
        .unwrap_or_else(|| panic!("no token in the banner: {banner:#?}"));
    let commands: Vec<String> = banner
        .iter()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| *l != token)
        .map(str::to_string)
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("sync-cli init demo.db ")),
        "the banner prints no init command: {banner:#?}"
    );
    (server, addr, token, commands)
}

/// README quotes the banner's commands (in a `text` code block, since the token differs): they
/// must be the banner's, with README's token and address.
fn check_readme_quotes_banner(readme: &str, banner: &[String], token: &str, addr: &str) {
    for command in banner {
        let quoted = command
            .replace(token, README_TOKEN)
            .replace(addr, README_ADDR);
        assert!(
            readme.lines().any(|l| l == quoted),
            "README does not quote the banner's command {quoted:?}"
        );
    }
}

/// The environment the walk-through runs in: this one without `SYNC_*` variables.
fn clean_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with("SYNC_"))
        .collect()
}

/// One command of the walk-through.
struct Step {
    /// Where it comes from, for messages.
    source: &'static str,
    line: String,
    expected: i32,
}

#[test]
fn readme_and_banner_commands_work_as_written() {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme_sh_lines(&readme);
    assert!(
        lines.iter().any(|l| command_of(l) == MAIN_JOB)
            && lines.iter().any(|l| command_of(l) == TEST_COMMAND),
        "README shows the two commands: {lines:#?}"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l == TEST_COMMAND),
        ".ci/run runs README's test command"
    );
    for (start, _) in OUTPUTS {
        assert!(
            lines.iter().any(|l| l.starts_with(start)),
            "README has no line starting {start:?}: update OUTPUTS"
        );
    }

    let bin = build_binaries();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let mut server = None;
    let mut steps = Vec::new();
    for line in lines {
        let command = command_of(&line);
        if command == TEST_COMMAND || INSTALLS.contains(&command) {
            continue;
        }
        if command == MAIN_JOB {
            assert!(server.is_none(), "README runs the main job twice");
            let (running, addr, token, commands) = start_main_job(&bin, dir);
            check_readme_quotes_banner(&readme, &commands, &token, &addr);
            for command in commands {
                if !INSTALLS.contains(&command_of(&command)) {
                    steps.push(Step {
                        source: "banner",
                        line: command,
                        expected: 0,
                    });
                }
            }
            server = Some((running, addr));
            continue;
        }
        let Some((_, addr)) = &server else {
            panic!("README line before the main job: {line}");
        };
        steps.push(Step {
            source: "README",
            expected: expected_status(&line),
            line: line.replace(README_ADDR, addr),
        });
    }
    assert!(server.is_some(), "README never runs the main job");
    assert!(steps.len() >= 20, "only {} steps", steps.len());

    let out = dir.join(".steps");
    std::fs::create_dir(&out).unwrap();
    let mut script = String::new();
    for (i, step) in steps.iter().enumerate() {
        let o = out.join(i.to_string());
        // The newline before `}` keeps a trailing comment from swallowing it.
        script.push_str(&format!(
            "{{ {}\n}} >'{o}.out' 2>'{o}.err' </dev/null; echo $? >'{o}.rc'\n",
            step.line,
            o = o.display()
        ));
    }
    std::fs::write(out.join("script.sh"), &script).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let started = Instant::now();
    let mut bash = Command::new("bash")
        .args(["--noprofile", "--norc"])
        .arg(out.join("script.sh"))
        .current_dir(dir)
        .env_clear()
        .envs(clean_env())
        .env("PATH", path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    while bash.try_wait().unwrap().is_none() {
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = bash.kill();
            let _ = bash.wait();
            let stuck = (0..steps.len())
                .find(|i| !out.join(format!("{i}.rc")).exists())
                .map_or("?", |i| steps[i].line.as_str());
            panic!("the walk-through did not end in {SCRIPT_TIMEOUT:?}; stuck at: {stuck}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "readme: {} steps in {:.1} s",
        steps.len(),
        started.elapsed().as_secs_f64()
    );

    let read = |i: usize, ext: &str| {
        std::fs::read_to_string(out.join(format!("{i}.{ext}"))).unwrap_or_default()
    };
    let mut failures = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let status: Option<i32> = read(i, "rc").trim().parse().ok();
        let stdout = read(i, "out");
        // The transcript (shown with --nocapture, or when the test fails).
        eprintln!(
            "$ {}\n{stdout}{}[exit status {status:?}]",
            step.line,
            read(i, "err")
        );
        let mut wrong = Vec::new();
        if status != Some(step.expected) {
            wrong.push(format!(
                "exit status {status:?}, expected {}",
                step.expected
            ));
        }
        for (start, text) in OUTPUTS {
            if step.line.starts_with(start) && !stdout.contains(text) {
                wrong.push(format!("output lacks {text:?}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} line {:?}: {}\n--- stdout\n{stdout}--- stderr\n{}",
                step.source,
                step.line,
                wrong.join("; "),
                read(i, "err")
            ));
        }
    }
    for (name, empty) in FILES {
        match std::fs::metadata(dir.join(name)) {
            Ok(m) if (m.len() == 0) == empty => {}
            Ok(m) => failures.push(format!("{name} has {} bytes", m.len())),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} commands did not work as written:\n\n{}\n--- server log\n{}",
        failures.len(),
        steps.len(),
        failures.join("\n"),
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
}
