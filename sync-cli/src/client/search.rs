//! `sync-cli search`: full-text search over the local copy's index.

use super::{client_error, open_copy};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{self, Format, Stdout};
use crate::sql_values::RowJson;
use serde::Serialize;
use std::path::PathBuf;
use sync_client::{ErrorKind, FtsTable, SearchHit};

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
    let client = match open_copy(&args.db, args.fts.clone()) {
        Ok(client) => client,
        // Another process holds the writer (and keeps the index current): search the
        // index as it stands, read-only.
        Err(CliError::Client { source, .. })
            if source.kind() == ErrorKind::InUse && args.fts.is_empty() =>
        {
            return print_hits(args, read_only_search(args)?);
        }
        Err(e) => return Err(e),
    };
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
    print_hits(args, hits?)
}

/// Searches with a [`sync_client::ReadOnlyClient`] (the writer is busy elsewhere).
fn read_only_search(args: &SearchArgs) -> Result<Vec<SearchHit>, CliError> {
    let client = super::open_reader(&args.db)?;
    if client.fts_tables().is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no full-text search is configured for this database; configure it with --fts TABLE:COLUMN,…",
            args.db.display()
        )));
    }
    client
        .search(&args.terms, args.limit)
        .map_err(|e| client_error(&args.db, e))
}

fn print_hits(args: &SearchArgs, hits: Vec<SearchHit>) -> Result<Outcome, CliError> {
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
