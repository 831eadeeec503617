//! `sync-cli upgrade`: bring a local copy to the server's schema version now.

use super::{client_error, open};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use serde::Serialize;
use std::path::PathBuf;

/// Upgrade DB to the server's app-schema version in place, keeping its pending transactions.
///
/// Asks the server for its schema version; when it is newer than DB's, fetches the migration
/// scripts the server runs (`GET …/migrations`), pulls the log up to where the server ran each
/// one, and runs them on DB in one local transaction with the rebase of the pending
/// transactions — rewritten for the new schema and kept, or, when the new schema cannot take
/// one (it drops a table or column the transaction writes), moved to the rejected queue with
/// the reason (see `sync-cli rejected`). Then syncs as `sync` does. Every `sync` does the same
/// when it learns of a newer version; this does it on demand. The search index and the
/// library's own tables are kept.
///
/// Exit status: 0 upgraded (or already at the server's version) and synced, 1 the same but
/// transactions were rejected or conflicts recorded, 2 error (nothing changed).
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The local database (created by `init`).
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// The JSON form of an upgrade.
#[derive(Serialize)]
struct UpgradeJson {
    /// The schema version before.
    from: u32,
    /// The schema version after (the server's).
    to: u32,
    /// Whether the local copy was upgraded.
    upgraded: bool,
    /// Pending transactions before.
    pending_before: u64,
    /// Transactions moved to the rejected queue (by the new schema, or by the sync after).
    rejected_transactions: usize,
    /// Transactions the sync after pushed.
    pushed_transactions: usize,
    /// Log entries integrated.
    pulled_entries: usize,
    /// The cursor afterwards.
    cursor: i64,
}

/// Runs `upgrade`.
pub fn upgrade(args: &UpgradeArgs) -> Result<Outcome, CliError> {
    let client = open(&args.db, Vec::new())?;
    let err = |e| client_error(&args.db, e);
    let result = (|| {
        let before = client.status().map_err(err)?;
        let progress = crate::progress::Follow::start(&client);
        let report = client.upgrade().map_err(err);
        drop(progress);
        let report = report?;
        let after = client.status().map_err(err)?;
        let mut out = Stdout::new();
        match args.format {
            Format::Text => {
                match report.upgraded_to {
                    Some(to) => out.line(&format!(
                        "upgraded from schema version {} to {to} with {} pending transaction(s)",
                        before.schema_version, before.pending_changesets,
                    ))?,
                    None => out.line(&format!(
                        "already at the server's schema version ({})",
                        after.schema_version
                    ))?,
                }
                out.line(&format!(
                    "pushed {} transaction(s), {} rejected, pulled {} log entries, cursor {}",
                    report.pushed_transactions,
                    report.rejected_transactions,
                    report.pulled_entries,
                    report.cursor
                ))?;
                let seen = before.rejected.last().map_or(0, |r| r.id);
                for r in after.rejected.iter().filter(|r| r.id > seen) {
                    out.line(&format!("rejected: {}", super::rejected::rejected_text(r)))?;
                }
            }
            Format::Json => out.json(&UpgradeJson {
                from: before.schema_version,
                to: after.schema_version,
                upgraded: report.upgraded_to.is_some(),
                pending_before: before.pending_changesets,
                rejected_transactions: report.rejected_transactions,
                pushed_transactions: report.pushed_transactions,
                pulled_entries: report.pulled_entries,
                cursor: report.cursor,
            })?,
        }
        out.flush()?;
        Ok(
            if report.rejected_transactions > 0
                || report.new_conflicts > 0
                || report.server_conflicts > 0
            {
                Outcome::Differences
            } else {
                Outcome::Clean
            },
        )
    })();
    client.close();
    result
}
