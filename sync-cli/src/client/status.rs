//! `sync-cli status`: where a local copy stands.

use super::{
    changesets, datetime, local_conflict_text, read_copy, remote_text, server_conflict_text,
};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use serde::Serialize;
use std::path::PathBuf;
use sync_client::{LocalConflict, Rejected, ServerConflict, Status};

/// Show where DB stands: pending changes, cursor, last sync, conflicts, rejected transactions,
/// search lag.
///
/// Server and database, cursor, pending transactions, the batch in flight, the last sync and
/// its error, recorded conflicts (local ones, and those the server reported for our batches),
/// rejected transactions (see `sync-cli rejected`), search index lag, leased rowids left.
/// Reads only; works offline. JSON: one object (see docs/cli.md).
///
/// Exit status: 0 ok, 2 error.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `status`.
pub fn status(args: &StatusArgs) -> Result<Outcome, CliError> {
    // Read-only: works while another process holds the writer (`sync --watch`).
    let fts = |tables: &[sync_client::FtsTable]| tables.iter().map(|t| t.to_string()).collect();
    let (status, fts): (Status, Vec<String>) = read_copy(
        &args.db,
        |c| Ok((c.status()?, fts(c.fts_tables()))),
        |c| Ok((c.status()?, fts(c.fts_tables()))),
    )?;
    let mut out = Stdout::new();
    match args.format {
        Format::Text => {
            for line in status_text(&status, &fts) {
                out.line(&line)?;
            }
        }
        Format::Json => out.json(&StatusJson {
            server: status.server.as_deref(),
            database: status.database.as_deref(),
            cursor: status.cursor,
            schema_version: status.schema_version,
            pending_changesets: status.pending_changesets,
            pending_bytes: status.pending_bytes,
            inflight_batch: status.inflight_batch.as_deref(),
            last_sync_ms: status.last_sync_ms,
            last_error: status.last_error.as_deref(),
            fts_tables: &fts,
            fts_lag: status.fts_lag,
            rowids_remaining: status.rowids_remaining,
            local_conflicts: &status.local_conflicts,
            server_conflicts: &status.server_conflicts,
            rejected: &status.rejected,
            repairs: status.repairs,
            checksum: status.checksum.as_deref(),
        })?,
    }
    out.finish()?;
    Ok(Outcome::Clean)
}

/// The JSON form of `status`.
#[derive(Serialize)]
struct StatusJson<'a> {
    server: Option<&'a str>,
    database: Option<&'a str>,
    cursor: i64,
    schema_version: u32,
    pending_changesets: u64,
    pending_bytes: u64,
    inflight_batch: Option<&'a str>,
    last_sync_ms: Option<i64>,
    last_error: Option<&'a str>,
    fts_tables: &'a [String],
    fts_lag: u64,
    rowids_remaining: Option<i64>,
    local_conflicts: &'a [LocalConflict],
    server_conflicts: &'a [ServerConflict],
    rejected: &'a [Rejected],
    repairs: u64,
    checksum: Option<&'a str>,
}

fn status_text(s: &Status, fts: &[String]) -> Vec<String> {
    let mut lines = vec![
        format!("server:           {}", remote_text(s)),
        format!(
            "cursor:           {} (schema version {})",
            s.cursor, s.schema_version
        ),
        format!(
            "pending:          {} ({} bytes)",
            changesets(s.pending_changesets),
            s.pending_bytes
        ),
        format!(
            "in flight:        {}",
            s.inflight_batch
                .as_deref()
                .map_or("none".to_string(), |b| format!("batch {b}"))
        ),
        format!(
            "last sync:        {}",
            s.last_sync_ms
                .map_or("never".to_string(), |ms| format!("{} UTC", datetime(ms)))
        ),
        format!(
            "last error:       {}",
            s.last_error.as_deref().unwrap_or("none")
        ),
        format!(
            "search index:     {}",
            if fts.is_empty() {
                "not configured".to_string()
            } else {
                format!("{}; {} rows waiting", fts.join(" "), s.fts_lag)
            }
        ),
        format!(
            "rowids:           {}",
            s.rowids_remaining
                .map_or("random".to_string(), |n| format!("{n} leased ids left"))
        ),
        format!(
            "repairs:          {}{}",
            s.repairs,
            if s.repairs > 0 {
                " (the synced state differed from the server's and was re-based on a snapshot)"
            } else {
                ""
            }
        ),
        format!(
            "checksum:         {}",
            s.checksum.as_deref().unwrap_or("unknown")
        ),
        format!("local conflicts:  {}", s.local_conflicts.len()),
    ];
    lines.extend(
        s.local_conflicts
            .iter()
            .map(|c| format!("  {}", local_conflict_text(c))),
    );
    lines.push(format!("server conflicts: {}", s.server_conflicts.len()));
    lines.extend(
        s.server_conflicts
            .iter()
            .map(|c| format!("  {}", server_conflict_text(c))),
    );
    lines.push(format!("rejected:         {}", s.rejected.len()));
    lines.extend(
        s.rejected
            .iter()
            .map(|r| format!("  {}", super::rejected::rejected_text(r))),
    );
    lines
}
