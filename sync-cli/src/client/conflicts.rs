//! `sync-cli conflicts`: the conflicts a local copy has recorded — list them, or clear them
//! once looked at (`SyncClient::clear_conflicts_through`), so `status` stops showing them.

use super::{client_error, local_conflict_text, open_copy, read_copy, server_conflict_text};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use std::path::PathBuf;

/// List or clear the conflicts DB has recorded (the ones `status` shows).
///
/// `list` prints the local conflicts (pending changes that could not be kept over the
/// server's newer state) and the server conflicts (the server's policy resolved a change of
/// ours). `clear` forgets every conflict recorded so far — conflicts recorded later stay — and
/// prints how many it removed. Clearing changes no data and no pending transaction.
///
/// Exit status: `list` 0 none, 1 some listed; `clear` 0 ok; 2 error.
#[derive(Debug, clap::Args)]
pub struct ConflictsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the recorded conflicts, local then server ones (read-only).
    List(DbArgs),
    /// Forget every conflict recorded so far.
    Clear(DbArgs),
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `conflicts`.
pub fn conflicts(args: &ConflictsArgs) -> Result<Outcome, CliError> {
    match &args.action {
        Action::List(a) => list(a),
        Action::Clear(a) => clear(a),
    }
}

fn list(args: &DbArgs) -> Result<Outcome, CliError> {
    let status = read_copy(&args.db, |c| c.status(), |c| c.status())?;
    let mut out = Stdout::new();
    match args.format {
        Format::Text => {
            for c in &status.local_conflicts {
                out.line(&format!("local conflict: {}", local_conflict_text(c)))?;
            }
            for c in &status.server_conflicts {
                out.line(&format!("server conflict: {}", server_conflict_text(c)))?;
            }
        }
        Format::Json => out.json(&serde_json::json!({
            "local_conflicts": status.local_conflicts,
            "server_conflicts": status.server_conflicts,
        }))?,
    }
    out.finish()?;
    Ok(
        if status.local_conflicts.is_empty() && status.server_conflicts.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Differences
        },
    )
}

fn clear(args: &DbArgs) -> Result<Outcome, CliError> {
    let client = open_copy(&args.db, Vec::new())?;
    let result = client.status().and_then(|seen| {
        let local = seen.local_conflicts.iter().map(|c| c.id).max();
        let server = seen.server_conflicts.iter().map(|c| c.id).max();
        client
            .clear_conflicts_through(local, server)
            .map(|removed| (removed, seen))
    });
    client.close();
    let (removed, seen) = result.map_err(|e| client_error(&args.db, e))?;
    let (local, server) = (seen.local_conflicts.len(), seen.server_conflicts.len());
    let mut out = Stdout::new();
    match args.format {
        Format::Text => out.line(&format!(
            "cleared {local} local and {server} server {} ({removed} records removed)",
            if local + server == 1 {
                "conflict"
            } else {
                "conflicts"
            }
        ))?,
        Format::Json => out.json(&serde_json::json!({
            "local": local, "server": server, "removed": removed,
        }))?,
    }
    out.finish()?;
    Ok(Outcome::Clean)
}
