//! The client commands: `init`, `exec`, `query`, `sync`, `status`, `search` — a sync client at
//! the terminal. They go through the `sync-client` library, the same code an app runs: writes
//! are captured into the outbox by the writer, reads use read-only connections, `sync` is one
//! `sync_now`.
//!
//! Settings live in the local database: `init` stores the server, token, database name and the
//! full-text search tables, and every other command opens the database with them. A database
//! is never created except by `init`.

use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{self, Format, Stdout};
use crate::sql_values::{self, RowJson};
use rusqlite::Connection;
use rusqlite::fallible_iterator::FallibleIterator;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use sync_client::ServerConflict;
use sync_client::Status;
use sync_client::{
    ClientConfig, Error, ErrorKind, FtsTable, RemoteConfig, SearchHit, SyncClient, SyncReport,
};
use sync_core::client::conflicts::LocalConflict;
use sync_core::engine::value::Value;

/// Create DB, a local copy of a server database, from a snapshot.
///
/// Downloads a snapshot of DATABASE and stores the server settings (and the search
/// configuration) in DB, so later commands need only DB. DB must not exist. The token is a device token from `sync-server token issue USER --device NAME`;
/// pass it with --token or in the SYNC_TOKEN environment variable (keeps it out of `ps` and
/// the shell history).
///
/// Exit status: 0 created, 2 error (nothing is left behind).
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The local database to create.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The server's base URL, e.g. http://127.0.0.1:8787.
    #[arg(long, value_name = "URL")]
    server: String,
    /// This device's bearer token.
    #[arg(long, env = "SYNC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: String,
    /// The database's name on the server.
    #[arg(long, value_name = "NAME")]
    database: String,
    /// Index these columns of TABLE for `search` (repeatable), e.g. --fts notes:title,body.
    /// The index is a separate file, DB.fts, never synced.
    #[arg(long = "fts", value_name = "TABLE:COLUMN,…")]
    fts: Vec<FtsTable>,
}

/// Runs `init`.
pub fn init(args: &InitArgs) -> Result<Outcome, CliError> {
    let remote = RemoteConfig {
        url: args.server.clone(),
        token: args.token.clone(),
        database: args.database.clone(),
    };
    let config = ClientConfig {
        fts: args.fts.clone(),
        ..cli_config()
    };
    let client =
        SyncClient::init(&args.db, remote, config).map_err(|e| client_error(&args.db, e))?;
    let status = client.status().map_err(|e| client_error(&args.db, e))?;
    client.close();
    let mut out = Stdout::new();
    out.line(&format!(
        "initialized {} from database {} on {} at seq {} (schema version {})",
        args.db.display(),
        args.database,
        args.server,
        status.cursor,
        status.schema_version
    ))?;
    out.finish()?;
    Ok(Outcome::Clean)
}

/// Run SQL as one local write transaction, captured for sync; print the rows changed.
///
/// Works offline: the change is committed to DB together with its changeset in the outbox, and
/// pushed by the next `sync` (or right away with --sync). Several statements separated by `;`
/// run in the one transaction (all or nothing). `sync_id()` in SQL gives a new row id.
///
/// Parameters bind to ?1, ?2, … (or named parameters in order) of a single statement:
/// `42` is an INTEGER, `1.5` or `2e3` a REAL, `NULL` is NULL, anything else TEXT. Say the type
/// to be exact: `int:42`, `real:1`, `text:007`, `text:NULL`, `blob:00ff10` (hex), `null:`.
/// A parameter that starts with `-` but is not a number goes after `--`.
///
/// Exit status: 0 written, 1 written and --sync recorded conflicts, 2 error (nothing written;
/// with --sync, a failed sync after the write exits 2 but the write is kept for later).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The local database (created by `init`, or any SQLite database to use local-only).
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The SQL to run.
    #[arg(value_name = "SQL")]
    sql: String,
    /// Values for the statement's parameters, in order.
    #[arg(value_name = "PARAM", allow_negative_numbers = true)]
    params: Vec<String>,
    /// Sync right after the write (as `sync-cli sync DB`).
    #[arg(long)]
    sync: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `exec`.
pub fn exec(args: &ExecArgs) -> Result<Outcome, CliError> {
    let params = parse_params(&args.params)?;
    let client = open(&args.db, Vec::new())?;
    let before = client.status().map_err(|e| client_error(&args.db, e))?;
    let sql = args.sql.clone();
    let changed = client
        .write(move |conn| execute(conn, &sql, &params))
        .map_err(|e| client_error(&args.db, e))?;
    let mut out = Stdout::new();
    match args.format {
        Format::Text => out.line(&format!(
            "{changed} {} changed",
            if changed == 1 { "row" } else { "rows" }
        ))?,
        Format::Json => out.json(&serde_json::json!({ "changed": changed }))?,
    }
    if !args.sync {
        out.finish()?;
        client.close();
        return Ok(Outcome::Clean);
    }
    out.flush()?;
    let result = sync_and_report(&client, &args.db, &before, args.format, &mut out);
    client.close();
    result
}

/// Executes every statement of `sql` (parameters only with a single statement); returns the
/// rows changed by the statements themselves (not by triggers).
fn execute(conn: &Connection, sql: &str, params: &[Value]) -> sync_client::Result<u64> {
    let mut batch = rusqlite::Batch::new(conn, sql);
    let mut changed = 0u64;
    let mut count = 0usize;
    while let Some(mut stmt) = batch.next()? {
        count += 1;
        if count > 1 && !params.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidSql,
                "parameters can be given only with a single SQL statement",
            ));
        }
        if stmt.column_count() > 0 {
            return Err(Error::new(
                ErrorKind::InvalidSql,
                format!(
                    "statement {count} returns rows; exec prints no rows — use `sync-cli query` to read"
                ),
            ));
        }
        sql_values::bind(&mut stmt, if count == 1 { params } else { &[] })?;
        // `changes()` keeps its value across statements that change nothing (DDL), so only
        // trust it when the total moved; it excludes rows changed by triggers.
        let total = conn.total_changes();
        stmt.raw_execute()?;
        if conn.total_changes() != total {
            changed += conn.changes();
        }
    }
    if count == 0 {
        return Err(Error::new(ErrorKind::InvalidSql, "no SQL statement given"));
    }
    Ok(changed)
}

/// Run one read-only SQL statement and print its rows.
///
/// Reads through a read-only connection: SQLite itself refuses any write (use `exec` for
/// writes). Parameters as for `exec`.
///
/// Text: a header line with the column names, then one line per row, values as SQL literals
/// separated by `|` (`1|'hello'|NULL|X'00FF'`). JSON: one object per row (JSON Lines), column
/// name → value in the typed form of docs/changeset-json.md; a repeated column name gets
/// `:N` appended (N its 1-based position).
///
/// Exit status: 0 ok (also for no rows), 2 error.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// One SQL statement that reads.
    #[arg(value_name = "SQL")]
    sql: String,
    /// Values for the statement's parameters, in order.
    #[arg(value_name = "PARAM", allow_negative_numbers = true)]
    params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `query`.
pub fn query(args: &QueryArgs) -> Result<Outcome, CliError> {
    let params = parse_params(&args.params)?;
    let client = open(&args.db, Vec::new())?;
    let mut out = Stdout::new();
    let mut output_error: Option<CliError> = None;
    let result = client.read(|conn| {
        let mut stmt = conn.prepare(&args.sql).map_err(|e| match e {
            rusqlite::Error::MultipleStatement => Error::new(
                ErrorKind::InvalidSql,
                "query runs exactly one SQL statement",
            ),
            e => e.into(),
        })?;
        if !stmt.readonly() {
            return Err(Error::new(
                ErrorKind::InvalidSql,
                "query runs read-only statements and this one writes; use `sync-cli exec` for writes",
            ));
        }
        sql_values::bind(&mut stmt, &params)?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let unique = sql_values::unique_names(&names);
        if args.format == Format::Text {
            let header: Vec<String> = names.iter().map(|n| output::ident(n)).collect();
            if let Err(e) = out.line(&header.join("|")) {
                output_error = Some(e);
                return Ok(());
            }
        }
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            let values = (0..names.len())
                .map(|i| row.get_ref(i).map(Value::from))
                .collect::<rusqlite::Result<Vec<Value>>>()?;
            let line = match args.format {
                Format::Text => out.line(
                    &values
                        .iter()
                        .map(output::literal)
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                Format::Json => out.json(&RowJson {
                    names: &unique,
                    values: &values,
                }),
            };
            if let Err(e) = line {
                // Stop reading: the output is gone (a closed pipe, say).
                output_error = Some(e);
                return Ok(());
            }
        }
        Ok(())
    });
    client.close();
    if let Some(e) = output_error {
        return Err(e);
    }
    result.map_err(|e| client_error(&args.db, e))?;
    out.finish()?;
    Ok(Outcome::Clean)
}

/// Sync DB with its server once: push pending changes, pull and integrate remote ones.
///
/// Prints what happened: batches pushed (and rejected), log entries pulled, whether the
/// database was re-based on a snapshot, the new cursor, and every conflict this sync
/// recorded — conflicts the server resolved in our batches (its policy decided; e.g. a change
/// of ours that lost, or a rowid collision) and local conflicts (a pending change that could
/// not be kept, e.g. an update of a row deleted on another device).
///
/// With --watch: run background sync (on an interval, after local writes by anyone using this
/// library on DB, and when the server announces new changes) and print what happens — remote
/// changes, status changes, errors, conflicts — until interrupted (Ctrl-C; interrupting is
/// safe, every acknowledged write is committed).
///
/// Exit status: 0 synced, 1 synced and conflicts were recorded, 2 error (e.g. server
/// unreachable: local changes stay pending).
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
    let client = open(&args.db, Vec::new())?;
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
fn sync_and_report(
    client: &SyncClient,
    db: &Path,
    before: &Status,
    format: Format,
    out: &mut Stdout,
) -> Result<Outcome, CliError> {
    let report = client.sync_now().map_err(|e| client_error(db, e))?;
    let after = client.status().map_err(|e| client_error(db, e))?;
    let (local, server) = new_conflicts(before, &after);
    match format {
        Format::Text => {
            out.line(&report_text(&report))?;
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
        }
        Format::Json => out.json(&ReportJson::new(&report, &server, &local))?,
    }
    out.flush()?;
    Ok(if report.new_conflicts > 0 || report.server_conflicts > 0 {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}

fn report_text(r: &SyncReport) -> String {
    format!(
        "pushed {} {} ({} rejected), pulled {} log {}, cursor {}",
        r.pushed_batches,
        if r.pushed_batches == 1 {
            "batch"
        } else {
            "batches"
        },
        r.rejected_batches,
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
    rejected_batches: usize,
    pulled_entries: usize,
    bootstrapped: bool,
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
            rejected_batches: r.rejected_batches,
            pulled_entries: r.pulled_entries,
            bootstrapped: r.bootstrapped,
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

/// Show where DB stands: pending changes, cursor, last sync, conflicts, search lag.
///
/// Server and database, cursor, pending changes, the batch in flight, the last sync and its
/// error, recorded conflicts (local ones, and those the server reported for our batches),
/// search index lag, leased rowids left. Reads only; works offline. JSON: one object (see docs/cli.md).
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
    let client = open(&args.db, Vec::new())?;
    let status = client.status().map_err(|e| client_error(&args.db, e))?;
    let fts: Vec<String> = client.fts_tables().iter().map(|t| t.to_string()).collect();
    client.close();
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
    lines
}

/// Full-text search of DB's indexed tables; print the matching rows, best first.
///
/// TERMS use SQLite FTS5 query syntax: words (all must match), "a phrase", prefix*, OR, NOT,
/// column:word. The index is brought up to date first, so rows synced from other devices are
/// found.
///
/// Search needs indexed tables: given to `init --fts`, or here with --fts (stored in DB for
/// later commands and for apps that open it).
///
/// Exit status: 0 rows found, 1 nothing found, 2 error.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// What to search for (FTS5 query syntax).
    #[arg(value_name = "TERMS")]
    terms: String,
    /// Most rows to print.
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: usize,
    /// Index these columns of TABLE (repeatable), replacing the stored configuration; the
    /// index is rebuilt.
    #[arg(long = "fts", value_name = "TABLE:COLUMN,…")]
    fts: Vec<FtsTable>,
    /// Output format (JSON: one object per row).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `search`.
pub fn search(args: &SearchArgs) -> Result<Outcome, CliError> {
    let client = open(&args.db, args.fts.clone())?;
    let hits = client
        .index_now()
        .and_then(|_| client.search(&args.terms, args.limit))
        .map_err(|e| match e.kind() {
            ErrorKind::Config => CliError::Usage(format!(
                "{}: {e}; configure it with --fts TABLE:COLUMN,…",
                args.db.display()
            )),
            _ => client_error(&args.db, e),
        });
    client.close();
    let hits = hits?;
    let mut out = Stdout::new();
    for hit in &hits {
        match args.format {
            Format::Text => out.line(&hit_text(hit))?,
            Format::Json => out.json(&HitJson {
                table: &hit.table,
                id: hit.id,
                rank: hit.rank,
                columns: RowJson {
                    names: &hit
                        .columns
                        .iter()
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>(),
                    values: &hit
                        .columns
                        .iter()
                        .map(|(_, v)| v.clone())
                        .collect::<Vec<_>>(),
                },
            })?,
        }
    }
    out.finish()?;
    Ok(if hits.is_empty() {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}

#[derive(Serialize)]
struct HitJson<'a> {
    table: &'a str,
    id: i64,
    rank: f64,
    columns: RowJson<'a>,
}

fn hit_text(hit: &SearchHit) -> String {
    let columns: Vec<String> = hit
        .columns
        .iter()
        .map(|(name, value)| format!("{}={}", output::ident(name), output::literal(value)))
        .collect();
    format!(
        "{} {}: {}",
        output::ident(&hit.table),
        hit.id,
        columns.join(", ")
    )
}

// ---- shared helpers ----

/// Settings of a command-line client: fewer read connections than an app's pool.
fn cli_config() -> ClientConfig {
    ClientConfig {
        read_connections: 2,
        ..ClientConfig::default()
    }
}

/// Opens an existing local database (never creates one) with its stored settings; `fts`
/// replaces the stored search configuration when not empty.
fn open(db: &Path, fts: Vec<FtsTable>) -> Result<SyncClient, CliError> {
    if !db.is_file() {
        return Err(CliError::Usage(format!(
            "{}: no such database (`sync-cli init` creates one)",
            db.display()
        )));
    }
    SyncClient::open(
        db,
        ClientConfig {
            fts,
            ..cli_config()
        },
    )
    .map_err(|e| client_error(db, e))
}

fn client_error(db: &Path, source: Error) -> CliError {
    CliError::Client {
        path: db.to_path_buf(),
        source: Box::new(source),
    }
}

fn parse_params(args: &[String]) -> Result<Vec<Value>, CliError> {
    args.iter()
        .map(|a| sql_values::parse_param(a).map_err(CliError::Usage))
        .collect()
}

fn remote_text(s: &Status) -> String {
    match (&s.database, &s.server) {
        (Some(db), Some(server)) => format!("database {db} on {server}"),
        _ => "none (local only)".to_string(),
    }
}

fn changesets(n: u64) -> String {
    format!("{n} {}", if n == 1 { "changeset" } else { "changesets" })
}

fn server_conflict_text(c: &ServerConflict) -> String {
    format!(
        "{} (batch {}, seq {})",
        output::conflict_text(&c.conflict),
        c.batch_id,
        c.seq
    )
}

fn local_conflict_text(c: &LocalConflict) -> String {
    let mut text = format!("#{} {}", c.id, kind_name(c));
    if !c.table.is_empty() {
        let pk: Vec<String> = c.pk.iter().map(output::literal).collect();
        let op = c.op.map(|o| format!("{} ", o.as_str())).unwrap_or_default();
        text.push_str(&format!(
            " {op}{} pk({})",
            output::ident(&c.table),
            pk.join(", ")
        ));
    }
    text.push_str(&format!(": {}", c.detail));
    text
}

fn kind_name(c: &LocalConflict) -> String {
    serde_json::to_value(c.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `HH:MM:SS` in UTC.
fn clock(ms: i64) -> String {
    datetime(ms)[11..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_utc_calendar_dates() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(datetime(1_763_700_000_123), "2025-11-21 04:40:00");
        assert_eq!(clock(1_763_700_000_123), "04:40:00");
    }
}
