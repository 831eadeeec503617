//! `sync-cli`: session-sync at the terminal.
//!
//! | module | its one job |
//! |---|---|
//! | [`changeset_cmds`] | the changeset commands: diff, inspect, validate, apply, invert, concat |
//! | [`client`] | the client commands: init, exec, query, sync, status, rejected, search, remote, conflicts |
//! | [`sql_text`] | `inspect --format sql`: a change as the SQL statement that makes it |
//! | [`sql_values`] | SQL parameters from the command line; result rows as text and JSON |
//! | [`output`] | text and JSON renderings; a standard output that reports a broken pipe |
//! | [`progress`] | a progress line on standard error when it is a terminal (push, pull, init, adopt) |
//! | [`files`] | changeset inputs and outputs: a path, or `-` for standard input/output |
//! | [`error`] | [`CliError`](error::CliError): everything that exits with status 2 |
//!
//! Exit statuses follow `diff(1)` and ripgrep: 0 ok, 1 differences or conflicts, 2 error (3:
//! `exec --sync` kept its write but the sync failed). A
//! write to a closed pipe (`sync-cli inspect big.cs | head`) ends the program quietly with 0.
//!
//! Errors are a typed enum rather than `anyhow`: `main` must tell a broken pipe and an
//! aborted apply from other failures, and every message already names its file.

mod changeset_cmds;
mod client;
mod error;
mod files;
mod output;
mod progress;
mod sql_text;
mod sql_values;

use changeset_cmds::Outcome;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// session-sync at the terminal. Changeset tools: diff two SQLite databases into a changeset;
/// inspect, validate, apply, invert and concatenate changesets (SQLite session extension
/// format). A sync client: init a local copy of a server database, exec and query SQL on it
/// (offline too), sync, status, the rejected queue, conflicts, search, and its server
/// settings (remote: a new token or URL in place). Long steps show a progress line when
/// standard error is a terminal.
///
/// Exit status: 0 ok, 1 differences (diff), conflicts or rejected transactions (apply, sync)
/// or no match (search), 2 error, 3 a write kept while the sync after it failed (exec --sync).
#[derive(Debug, Parser)]
#[command(name = "sync-cli", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Diff(changeset_cmds::DiffArgs),
    Inspect(changeset_cmds::InspectArgs),
    Validate(changeset_cmds::ValidateArgs),
    Apply(changeset_cmds::ApplyArgs),
    Invert(changeset_cmds::InvertArgs),
    Concat(changeset_cmds::ConcatArgs),
    Init(client::InitArgs),
    Exec(client::ExecArgs),
    Query(client::QueryArgs),
    Sync(client::SyncArgs),
    Status(client::StatusArgs),
    Rejected(client::RejectedArgs),
    Search(client::SearchArgs),
    Verify(client::VerifyArgs),
    Upgrade(client::UpgradeArgs),
    Remote(client::RemoteArgs),
    Conflicts(client::ConflictsArgs),
}

impl Command {
    fn run(&self) -> Result<Outcome, error::CliError> {
        match self {
            Command::Diff(args) => changeset_cmds::diff(args),
            Command::Inspect(args) => changeset_cmds::inspect(args),
            Command::Validate(args) => changeset_cmds::validate(args),
            Command::Apply(args) => changeset_cmds::apply(args),
            Command::Invert(args) => changeset_cmds::invert(args),
            Command::Concat(args) => changeset_cmds::concat(args),
            Command::Init(args) => client::init(args),
            Command::Exec(args) => client::exec(args),
            Command::Query(args) => client::query(args),
            Command::Sync(args) => client::sync(args),
            Command::Status(args) => client::status(args),
            Command::Rejected(args) => client::rejected(args),
            Command::Search(args) => client::search(args),
            Command::Verify(args) => client::verify(args),
            Command::Upgrade(args) => client::upgrade(args),
            Command::Remote(args) => client::remote(args),
            Command::Conflicts(args) => client::conflicts(args),
        }
    }
}

fn main() -> ExitCode {
    // clap exits by itself: 0 for --help/--version, 2 for a usage error.
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Differences) => ExitCode::from(1),
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr().lock(), "sync-cli: error: {err}");
            ExitCode::from(err.exit_status())
        }
    }
}
