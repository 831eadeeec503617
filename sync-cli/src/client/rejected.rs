//! `sync-cli rejected list|show|redo|discard`: the transactions that could not be kept.

use super::{client_error, datetime, open_copy, read_copy};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{self, Format, Stdout};
use serde::Serialize;
use std::path::PathBuf;
use sync_client::{Rejected, SyncClient};

/// List, show, redo or discard the local transactions that could not be kept.
///
/// A transaction is rejected when the server refuses it (a table with the `reject` policy had
/// a conflict, or it would leave foreign-key violations) or when re-applying it over a newer
/// server state would leave foreign-key violations. It is kept here, whole, with the reason
/// and the row that blocked it, until you redo it (a new local write over the current state,
/// pushed with the next sync) or discard it. Works offline.
///
/// Exit status: 0 ok, 1 `redo` met conflicts with the current state (resolved in the redone
/// change's favour where possible, and listed), 2 error (an unknown id; a redo that would
/// still be rejected, which leaves it queued).
#[derive(Debug, clap::Args)]
pub struct RejectedArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the rejected transactions, oldest first.
    List(ListArgs),
    /// Show one rejected transaction: why, what blocked it, and its changes.
    Show(IdArgs),
    /// Re-apply one as a new local write over the current state and remove it from the queue.
    Redo(IdArgs),
    /// Forget one for good.
    Discard(IdArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct IdArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The rejected transaction's id (from `list`).
    #[arg(value_name = "ID")]
    id: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `rejected`.
pub fn rejected(args: &RejectedArgs) -> Result<Outcome, CliError> {
    match &args.action {
        Action::List(a) => list(a),
        Action::Show(a) => with_client(a, show),
        Action::Redo(a) => with_client(a, redo),
        Action::Discard(a) => with_client(a, discard),
    }
}

fn with_client(
    args: &IdArgs,
    f: impl FnOnce(&SyncClient, &IdArgs, &mut Stdout) -> Result<Outcome, CliError>,
) -> Result<Outcome, CliError> {
    let client = open_copy(&args.db, Vec::new())?;
    let mut out = Stdout::new();
    let result = f(&client, args, &mut out);
    client.close();
    let outcome = result?;
    out.finish()?;
    Ok(outcome)
}

/// One line about a rejected transaction.
pub(super) fn rejected_text(r: &Rejected) -> String {
    let blocking = r
        .conflicts
        .last()
        .map(|c| format!("; blocked by {}", output::conflict_text(c)))
        .unwrap_or_default();
    format!(
        "#{} {} ({} by {}, {} {}, written {} UTC): {}{blocking}",
        r.id,
        r.reason.as_str(),
        r.reason.as_str(),
        r.by.as_str(),
        r.changes,
        if r.changes == 1 { "change" } else { "changes" },
        datetime(r.created_ms),
        r.detail
    )
}

/// The JSON form of a rejected transaction (its changes only in `show`).
#[derive(Serialize)]
struct RejectedJson<'a> {
    #[serde(flatten)]
    rejected: &'a Rejected,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes_list: Option<Vec<sync_core::engine::decode::Change>>,
}

fn list(args: &ListArgs) -> Result<Outcome, CliError> {
    let rejected = read_copy(&args.db, |c| c.rejected(), |c| c.rejected())?;
    let mut out = Stdout::new();
    match args.format {
        Format::Text if rejected.is_empty() => out.line("no rejected transactions")?,
        Format::Text => {
            for r in &rejected {
                out.line(&rejected_text(r))?;
            }
        }
        Format::Json => {
            let all: Vec<RejectedJson<'_>> = rejected
                .iter()
                .map(|r| RejectedJson {
                    rejected: r,
                    changes_list: None,
                })
                .collect();
            out.json(&all)?;
        }
    }
    out.finish()?;
    Ok(Outcome::Clean)
}

fn find(client: &SyncClient, args: &IdArgs) -> Result<Rejected, CliError> {
    client
        .rejected_transaction(args.id)
        .map_err(|e| client_error(&args.db, e))?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}: there is no rejected transaction {} (`sync-cli rejected list` shows them)",
                args.db.display(),
                args.id
            ))
        })
}

fn show(client: &SyncClient, args: &IdArgs, out: &mut Stdout) -> Result<Outcome, CliError> {
    let r = find(client, args)?;
    let changes = r.changeset.inspect().map_err(|source| CliError::Decode {
        what: format!("rejected transaction {}", r.id),
        source,
    })?;
    match args.format {
        Format::Text => {
            out.line(&rejected_text(&r))?;
            for c in &r.conflicts {
                out.line(&format!("  conflict: {}", output::conflict_text(c)))?;
            }
            for c in &changes {
                out.line(&format!("  {}", output::change_text(c, None)))?;
            }
        }
        Format::Json => out.json(&RejectedJson {
            rejected: &r,
            changes_list: Some(changes),
        })?,
    }
    Ok(Outcome::Clean)
}

fn redo(client: &SyncClient, args: &IdArgs, out: &mut Stdout) -> Result<Outcome, CliError> {
    let redone = client
        .redo_rejected(args.id)
        .map_err(|e| client_error(&args.db, e))?;
    match args.format {
        Format::Text => {
            out.line(&format!(
                "redone: rejected transaction {} is a new local write{}; `sync-cli sync` pushes it",
                args.id,
                match redone.outbox_seq {
                    Some(seq) => format!(" (outbox #{seq})"),
                    None => " with no effect (the current state already has it)".to_string(),
                }
            ))?;
            for c in &redone.conflicts {
                out.line(&format!("  conflict: {}", output::conflict_text(c)))?;
            }
        }
        Format::Json => out.json(&serde_json::json!({
            "redone": args.id,
            "outbox_seq": redone.outbox_seq,
            "conflicts": redone.conflicts,
        }))?,
    }
    Ok(if redone.conflicts.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

fn discard(client: &SyncClient, args: &IdArgs, out: &mut Stdout) -> Result<Outcome, CliError> {
    if !client
        .discard_rejected(args.id)
        .map_err(|e| client_error(&args.db, e))?
    {
        return Err(CliError::Usage(format!(
            "{}: there is no rejected transaction {}",
            args.db.display(),
            args.id
        )));
    }
    match args.format {
        Format::Text => out.line(&format!("discarded rejected transaction {}", args.id))?,
        Format::Json => out.json(&serde_json::json!({ "discarded": args.id }))?,
    }
    Ok(Outcome::Clean)
}
