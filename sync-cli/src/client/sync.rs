//! `sync-cli sync`: one sync, or `--watch` to keep syncing and print what happens.

use super::{
    changesets, client_error, clock, local_conflict_text, now_ms, open_copy, remote_text,
    server_conflict_text,
};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use sync_client::{LocalConflict, ServerConflict, Status, SyncClient, SyncReport};

/// Sync DB with its server once: push pending changes, pull and integrate remote ones.
///
/// Prints what happened: transactions and batches pushed, transactions rejected, log entries
/// pulled, whether the database was re-based on a snapshot, the new cursor, and every conflict
/// this sync recorded — conflicts the server resolved in our transactions (its policy decided;
/// e.g. a change of ours that lost, or a rowid collision), local conflicts (a pending change
/// that could not be kept, e.g. an update of a row deleted on another device) and rejected
/// transactions (kept whole: see `sync-cli rejected`).
///
/// With --watch: run background sync (on an interval, after local writes by anyone using this
/// library on DB, and when the server announces new changes) and print what happens — remote
/// changes, status changes, errors, conflicts — until interrupted (Ctrl-C; interrupting is
/// safe, every acknowledged write is committed).
///
/// Exit status: 0 synced, 1 synced and conflicts were recorded or transactions rejected, 2
/// error (e.g. server unreachable: local changes stay pending).
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The local database (created by `init`).
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Keep syncing in the background and print what happens, until interrupted.
    #[arg(long)]
    watch: bool,
    /// Output format (JSON: one object per sync; with --watch, one object per event).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `sync`.
pub fn sync(args: &SyncArgs) -> Result<Outcome, CliError> {
    let client = open_copy(&args.db, Vec::new())?;
    let before = client.status().map_err(|e| client_error(&args.db, e))?;
    let mut out = Stdout::new();
    let result = if args.watch {
        watch(&client, &args.db, before, args.format, &mut out)
    } else {
        sync_and_report(&client, &args.db, &before, args.format, &mut out)
    };
    client.close();
    result
}

/// One `sync_now`, then the report and the conflicts it recorded.
pub(super) fn sync_and_report(
    client: &SyncClient,
    db: &Path,
    before: &Status,
    format: Format,
    out: &mut Stdout,
) -> Result<Outcome, CliError> {
    let progress = crate::progress::Follow::start(client);
    let report = client.sync_now().map_err(|e| client_error(db, e));
    drop(progress);
    let report = report?;
    let after = client.status().map_err(|e| client_error(db, e))?;
    let (local, server) = new_conflicts(before, &after);
    match format {
        Format::Text => {
            out.line(&report_text(&report))?;
            if let Some(version) = report.upgraded_to {
                out.line(&format!(
                    "upgraded the local copy to the server's schema version {version} (pending transactions kept)"
                ))?;
            }
            if report.bootstrapped {
                out.line("re-based on a snapshot of the server's database")?;
            }
            if !report.changed_tables.is_empty() {
                out.line(&format!(
                    "remote changes in: {}",
                    report.changed_tables.join(", ")
                ))?;
            }
            for c in &server {
                out.line(&format!("server conflict: {}", server_conflict_text(c)))?;
            }
            for c in &local {
                out.line(&format!("local conflict: {}", local_conflict_text(c)))?;
            }
            let seen = before.rejected.last().map_or(0, |r| r.id);
            for r in after.rejected.iter().filter(|r| r.id > seen) {
                out.line(&format!("rejected: {}", super::rejected::rejected_text(r)))?;
            }
        }
        Format::Json => out.json(&ReportJson::new(&report, &server, &local))?,
    }
    out.flush()?;
    Ok(
        if report.new_conflicts > 0
            || report.server_conflicts > 0
            || report.rejected_transactions > 0
        {
            Outcome::Differences
        } else {
            Outcome::Clean
        },
    )
}

fn report_text(r: &SyncReport) -> String {
    format!(
        "pushed {} {} in {} {}, {} rejected, pulled {} log {}, cursor {}",
        r.pushed_transactions,
        if r.pushed_transactions == 1 {
            "transaction"
        } else {
            "transactions"
        },
        r.pushed_batches,
        if r.pushed_batches == 1 {
            "batch"
        } else {
            "batches"
        },
        r.rejected_transactions,
        r.pulled_entries,
        if r.pulled_entries == 1 {
            "entry"
        } else {
            "entries"
        },
        r.cursor
    )
}

/// The JSON form of one sync: the report's fields and the conflicts it recorded.
#[derive(Serialize)]
struct ReportJson<'a> {
    pushed_batches: usize,
    pushed_transactions: usize,
    rejected_transactions: usize,
    pulled_entries: usize,
    bootstrapped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgraded_to: Option<u32>,
    cursor: i64,
    changed_tables: &'a [String],
    server_conflicts: &'a [ServerConflict],
    local_conflicts: &'a [LocalConflict],
}

impl<'a> ReportJson<'a> {
    fn new(
        r: &'a SyncReport,
        server_conflicts: &'a [ServerConflict],
        local_conflicts: &'a [LocalConflict],
    ) -> Self {
        ReportJson {
            pushed_batches: r.pushed_batches,
            pushed_transactions: r.pushed_transactions,
            rejected_transactions: r.rejected_transactions,
            pulled_entries: r.pulled_entries,
            bootstrapped: r.bootstrapped,
            upgraded_to: r.upgraded_to,
            cursor: r.cursor,
            changed_tables: &r.changed_tables,
            server_conflicts,
            local_conflicts,
        }
    }
}

/// Conflicts recorded since `before` was taken.
fn new_conflicts(before: &Status, after: &Status) -> (Vec<LocalConflict>, Vec<ServerConflict>) {
    let local_seen = before.local_conflicts.last().map_or(0, |c| c.id);
    let server_seen = before.server_conflicts.last().map_or(0, |c| c.id);
    (
        after
            .local_conflicts
            .iter()
            .filter(|c| c.id > local_seen)
            .cloned()
            .collect(),
        after
            .server_conflicts
            .iter()
            .filter(|c| c.id > server_seen)
            .cloned()
            .collect(),
    )
}

/// `--watch`: background sync, printing events until the process is interrupted.
fn watch(
    client: &SyncClient,
    db: &Path,
    mut last: Status,
    format: Format,
    out: &mut Stdout,
) -> Result<Outcome, CliError> {
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    client.set_change_listener(Some(Arc::new(move |tables: &[String]| {
        let _ = tx.send(tables.to_vec());
    })));
    client.start_background().map_err(|e| client_error(db, e))?;
    let event = |out: &mut Stdout, kind: &str, text: String, json: serde_json::Value| {
        match format {
            Format::Text => out.line(&format!("[{}] {text}", clock(now_ms()))),
            Format::Json => out.json(&serde_json::json!({
                "at_ms": now_ms(), "event": kind, "detail": json,
            })),
        }
        .and_then(|()| out.flush())
    };
    event(
        out,
        "watching",
        format!(
            "watching {} ({}); Ctrl-C to stop",
            db.display(),
            remote_text(&last)
        ),
        serde_json::json!({ "cursor": last.cursor, "pending_changesets": last.pending_changesets }),
    )?;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(tables) => event(
                out,
                "remote_changes",
                format!("remote changes in: {}", tables.join(", ")),
                serde_json::json!({ "tables": tables }),
            )?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(Outcome::Clean),
        }
        let now = client.status().map_err(|e| client_error(db, e))?;
        let (local, server) = new_conflicts(&last, &now);
        if now.cursor != last.cursor {
            event(
                out,
                "cursor",
                format!("cursor {} -> {}", last.cursor, now.cursor),
                serde_json::json!({ "from": last.cursor, "to": now.cursor }),
            )?;
        }
        if now.pending_changesets != last.pending_changesets {
            event(
                out,
                "pending",
                format!(
                    "pending: {} ({} bytes)",
                    changesets(now.pending_changesets),
                    now.pending_bytes
                ),
                serde_json::json!({ "changesets": now.pending_changesets, "bytes": now.pending_bytes }),
            )?;
        }
        if now.last_error != last.last_error {
            match &now.last_error {
                Some(e) => event(
                    out,
                    "error",
                    format!("sync failed: {e}"),
                    serde_json::json!({ "message": e }),
                )?,
                None => event(
                    out,
                    "recovered",
                    "sync works again".to_string(),
                    serde_json::json!({}),
                )?,
            }
        }
        for c in &server {
            event(
                out,
                "server_conflict",
                format!("server conflict: {}", server_conflict_text(c)),
                serde_json::to_value(c).unwrap_or_default(),
            )?;
        }
        for c in &local {
            event(
                out,
                "local_conflict",
                format!("local conflict: {}", local_conflict_text(c)),
                serde_json::to_value(c).unwrap_or_default(),
            )?;
        }
        last = now;
    }
}
