//! `sync-cli exec` and `sync-cli query`: SQL on a local copy — captured writes through the
//! writer, reads on read-only connections.

use super::sync::sync_and_report;
use super::{client_error, open, open_reader, parse_params};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{self, Format, Stdout};
use crate::sql_values::{self, RowJson};
use rusqlite::Connection;
use rusqlite::fallible_iterator::FallibleIterator;
use std::path::PathBuf;
use sync_client::{Error, ErrorKind, Value};

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
/// Exit status: 0 written, 1 written and --sync recorded conflicts or rejected transactions,
/// 2 error (nothing written), 3 written and kept, but the sync after it (--sync) failed: the
/// write stays pending for the next sync.
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
    result.map_err(|e| match e {
        broken if broken.is_broken_pipe() => broken,
        other => CliError::SyncAfterWrite(Box::new(other)),
    })
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
    let mut out = Stdout::new();
    let mut shown = Shown::default();
    // Read-only: works while another process holds the writer (`sync --watch`).
    let result = match open_reader(&args.db) {
        Ok(reader) => reader.read(|conn| run_query(conn, args, &params, &mut out, &mut shown)),
        Err(e @ CliError::Usage(_)) => return Err(e),
        Err(CliError::Client { source, .. }) => Err(*source),
        Err(e) => return Err(e),
    };
    let result = match result {
        // Nothing shown yet: the copy may need what only a writer can do first (recover the
        // WAL index after a crash, bring internal tables up to date). Unless the writer is
        // busy elsewhere, an ordinary open does it, and the query runs again.
        Err(first) if !shown.any && shown.output_error.is_none() => {
            match super::open_client(&args.db, Vec::new()) {
                Ok(client) => {
                    let again =
                        client.read(|conn| run_query(conn, args, &params, &mut out, &mut shown));
                    client.close();
                    again
                }
                Err(_) => Err(first),
            }
        }
        other => other,
    };
    if let Some(e) = shown.output_error {
        return Err(e);
    }
    result.map_err(|e| client_error(&args.db, e))?;
    out.finish()?;
    Ok(Outcome::Clean)
}

/// What a query has put on standard output.
#[derive(Default)]
struct Shown {
    /// Whether anything was written (a header or a row).
    any: bool,
    /// Writing failed (a closed pipe, say): reading stopped.
    output_error: Option<CliError>,
}

/// Runs `query`'s statement on `conn` and prints its rows.
fn run_query(
    conn: &Connection,
    args: &QueryArgs,
    params: &[Value],
    out: &mut Stdout,
    shown: &mut Shown,
) -> sync_client::Result<()> {
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
    sql_values::bind(&mut stmt, params)?;
    let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let unique = sql_values::unique_names(&names);
    if args.format == Format::Text {
        let header: Vec<String> = names.iter().map(|n| output::ident(n)).collect();
        shown.any = true;
        if let Err(e) = out.line(&header.join("|")) {
            shown.output_error = Some(e);
            return Ok(());
        }
    }
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let values = (0..names.len())
            .map(|i| row.get_ref(i).map(Value::from))
            .collect::<rusqlite::Result<Vec<Value>>>()?;
        shown.any = true;
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
            shown.output_error = Some(e);
            return Ok(());
        }
    }
    Ok(())
}
