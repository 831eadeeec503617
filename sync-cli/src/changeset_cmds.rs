//! The changeset commands: `diff`, `inspect`, `validate`, `apply`, `invert`, `concat`.
//!
//! Each command is an `Args` struct (its `///` docs are its `--help`) and a `run` function that
//! returns an [`Outcome`] or a [`CliError`]; `main` turns those into exit statuses 0, 1 and 2.

use crate::error::CliError;
use crate::files::{Input, Output, inputs};
use crate::output::{self, ApplyJson, ApplyStatus, Format, Stdout, SummaryJson};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use sync_core::engine::apply::ApplyError;
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::decode;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::schema;

/// How a command that completed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0: done, nothing to report (no differences, no conflicts).
    Clean,
    /// Exit status 1: done, and there were differences (`diff`) or conflicts (`apply`).
    Differences,
}

/// Compute the changeset that turns FROM into TO (like `sqldiff --changeset`).
///
/// Both databases are opened read-only. Every table with a PRIMARY KEY is compared; tables a
/// changeset cannot carry (no PRIMARY KEY, virtual tables) are skipped with a warning on
/// standard error. Both databases must have the same tables with the same columns.
///
/// Exit status: 0 no differences (OUT is still written, empty), 1 differences written,
/// 2 error.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The database as it was.
    #[arg(value_name = "FROM.db")]
    from: PathBuf,
    /// The database as it is now.
    #[arg(value_name = "TO.db")]
    to: PathBuf,
    /// Where to write the changeset; `-` for standard output (not a terminal).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// Runs `diff`.
pub fn diff(args: &DiffArgs) -> Result<Outcome, CliError> {
    let output = Output::new(&args.output);
    output.check()?;
    let diff = sync_core::engine::diff::diff(&args.from, &args.to)?;
    for skipped in &diff.skipped {
        output::warn(&format!(
            "table {} not compared: {}",
            output::ident(&skipped.table),
            skipped.reason
        ));
    }
    output.write(diff.changeset.as_bytes())?;
    Ok(if diff.changeset.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

/// Print the changes of a changeset, one per line.
///
/// Text lines look like `UPDATE Track pk(1): c5: 'Angus Young' -> NULL`: the operation, the
/// table, the primary-key values, `[indirect]` for changes made by triggers or foreign-key
/// actions, then the values as SQL literals (INSERT: the new row; DELETE: the old row; UPDATE:
/// each changed column as `old -> new`). Columns are named c0, c1, … (0-based) unless --db
/// gives their names. JSON lines are documented in docs/changeset-json.md.
///
/// An empty file prints nothing. Output stops at the first malformed change, with an error.
///
/// Exit status: 0 ok, 2 error (unreadable or malformed changeset).
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The changeset file; `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Output format: text, JSON Lines, or SQL statements that make the same changes (sql
    /// needs --db, whose schema names the columns).
    #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
    format: InspectFormat,
    /// Print per-table counts of INSERT/UPDATE/DELETE instead of the changes.
    #[arg(long)]
    summary: bool,
    /// Name columns after this database's schema in the text format (opened read-only).
    #[arg(long, value_name = "DB")]
    db: Option<PathBuf>,
}

/// Runs `inspect`.
pub fn inspect(args: &InspectArgs) -> Result<Outcome, CliError> {
    if args.db.is_some() && (args.format == InspectFormat::Json || args.summary) {
        return Err(CliError::Usage(
            "--db names columns in the text and SQL listings of changes only \
             (not with --format json or --summary)"
                .to_string(),
        ));
    }
    if args.format == InspectFormat::Sql && (args.db.is_none() || args.summary) {
        return Err(CliError::Usage(
            "--format sql needs --db DB, whose schema names the columns (and no --summary)"
                .to_string(),
        ));
    }
    let mut names = match &args.db {
        Some(path) => Some(ColumnNames::open(path)?),
        None => None,
    };
    let input = Input::new(&args.file);
    let bytes = input.read()?;
    let decode_error = |source| CliError::Decode {
        what: input.describe(),
        source,
    };
    let mut out = Stdout::new();
    if args.summary {
        let summary = if bytes.is_empty() {
            sync_core::engine::decode::Summary::default()
        } else {
            decode::validate(&bytes).map_err(decode_error)?
        };
        match args.format {
            InspectFormat::Json => out.json(&SummaryJson::new(&summary))?,
            _ => {
                for line in output::summary_text(&summary) {
                    out.line(&line)?;
                }
            }
        }
        out.finish()?;
        return Ok(Outcome::Clean);
    }
    let mut sql_begun = false;
    if !bytes.is_empty() {
        // Stream: print each change as it is decoded, so `inspect big.cs | head` is quick and
        // everything before a malformed change is still shown.
        for change in decode::changes(&bytes) {
            let change = match change {
                Ok(change) => change,
                Err(source) => {
                    // What was printed stays printed; flush it before the error.
                    out.finish()?;
                    return Err(decode_error(source));
                }
            };
            match args.format {
                InspectFormat::Text => {
                    let columns = names.as_mut().and_then(|n| n.for_change(&change));
                    out.line(&output::change_text(&change, columns))?;
                }
                InspectFormat::Json => out.json(&change)?,
                InspectFormat::Sql => {
                    if !sql_begun {
                        out.line("BEGIN;")?;
                        sql_begun = true;
                    }
                    let Some(columns) = names.as_mut().and_then(|n| n.for_change(&change)) else {
                        out.finish()?;
                        return Err(CliError::Usage(format!(
                            "table {}: the columns of this change cannot be named from the \
                             database given with --db; no COMMIT was printed",
                            output::ident(&change.table)
                        )));
                    };
                    out.line(&crate::sql_text::statement(&change, columns))?;
                }
            }
        }
    }
    if sql_begun {
        out.line("COMMIT;")?;
    }
    out.finish()?;
    Ok(Outcome::Clean)
}

/// `inspect`'s output formats: the shared text and JSON, and SQL statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per change (JSON Lines), see docs/changeset-json.md.
    Json,
    /// SQL statements making the same changes, in one transaction (needs --db).
    Sql,
}

/// Column names looked up in a database, once per table.
struct ColumnNames {
    path: PathBuf,
    conn: Connection,
    tables: HashMap<String, Option<Vec<String>>>,
}

impl ColumnNames {
    fn open(path: &Path) -> Result<ColumnNames, CliError> {
        Ok(ColumnNames {
            path: path.to_path_buf(),
            conn: open_untouched(path)?,
            tables: HashMap::new(),
        })
    }

    /// The names of `change.table`'s columns, or `None` (with one warning per table) when the
    /// database has no such table or its column count differs from the changeset's.
    fn for_change(&mut self, change: &sync_core::engine::decode::Change) -> Option<&[String]> {
        let (conn, path) = (&self.conn, &self.path);
        self.tables
            .entry(change.table.clone())
            .or_insert_with(|| {
                let table = output::ident(&change.table);
                let fallback = |why: String| {
                    output::warn(&format!("{why}; showing column numbers"));
                    None
                };
                match schema::table_shape(conn, &change.table) {
                    Ok(Some(shape)) if shape.columns.len() == change.column_count() => {
                        Some(shape.columns.into_iter().map(|c| c.name).collect())
                    }
                    Ok(Some(shape)) => fallback(format!(
                        "table {table} has {} columns in {} but {} in the changeset",
                        shape.columns.len(),
                        path.display(),
                        change.column_count()
                    )),
                    Ok(None) => fallback(format!("table {table} is not in {}", path.display())),
                    Err(e) => fallback(format!(
                        "cannot read the columns of {table} from {}: {e}",
                        path.display()
                    )),
                }
            })
            .as_deref()
    }
}

/// Check that a file is a well-formed changeset and print a one-line summary.
///
/// Walks every change and checks the format (table headers, operations, value types, that
/// INSERT/DELETE carry whole rows and keys are never NULL). On success prints
/// `valid: N changes in M tables, B bytes`; otherwise the reason and the byte offset where
/// the problem was found.
///
/// An empty (0-byte) file is invalid unless --allow-empty: it is what a failed transfer looks
/// like, although `diff` writes one when there are no differences.
///
/// Exit status: 0 valid, 2 invalid or unreadable.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The changeset file; `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Accept an empty file as a valid changeset with no changes.
    #[arg(long)]
    allow_empty: bool,
    /// Output format (json prints the summary as JSON).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs `validate`.
pub fn validate(args: &ValidateArgs) -> Result<Outcome, CliError> {
    let input = Input::new(&args.file);
    let bytes = input.read()?;
    let summary = if bytes.is_empty() && args.allow_empty {
        sync_core::engine::decode::Summary::default()
    } else {
        decode::validate(&bytes).map_err(|source| CliError::Decode {
            what: input.describe(),
            source,
        })?
    };
    let mut out = Stdout::new();
    match args.format {
        Format::Text => out.line(&format!("valid: {}", output::summary_line(&summary)))?,
        Format::Json => out.json(&SummaryJson::new(&summary))?,
    }
    out.finish()?;
    Ok(Outcome::Clean)
}

/// Apply a changeset to a database, resolving conflicts by policy, and print the report.
///
/// The changeset is checked first (format, and that its tables exist in DB with the same
/// columns and primary key); then it is applied in one transaction. A conflict (the row to
/// change differs or is missing, the row to insert exists, a constraint fails) is resolved
/// by the table's policy: omit skips the change, replace makes it win where SQLite allows
/// (otherwise it is omitted), abort rolls everything back. Remaining foreign-key violations
/// always abort.
///
/// The report lists each conflict (kind, operation, table, key, resolution) and ends with
/// `applied N of M changes, K conflicts`.
///
/// Exit status: 0 applied without conflicts, 1 applied with conflicts, 2 aborted or error
/// (the database is unchanged).
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The changeset file; `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The database to change. It must exist: a mistyped path is an error, never a new file.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Conflict policy for every table: omit (first-write-wins), replace (last-push-wins),
    /// abort (reject), or newest-wins:COLUMN.
    #[arg(long, value_name = "POLICY", default_value = "abort", value_parser = Policy::parse)]
    on_conflict: Policy,
    /// Policy for one table, overriding --on-conflict; repeatable.
    #[arg(long, value_name = "TABLE=POLICY", value_parser = parse_table_policy)]
    table_policy: Vec<(String, Policy)>,
    /// Run foreign-key actions (CASCADE, SET NULL) as NO ACTION, for changesets that already
    /// contain the cascaded rows.
    #[arg(long)]
    fk_no_action: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_table_policy(s: &str) -> Result<(String, Policy), String> {
    let (table, policy) = s
        .split_once('=')
        .ok_or_else(|| format!("expected TABLE=POLICY, got {s:?}"))?;
    if table.is_empty() {
        return Err(format!("expected TABLE=POLICY, got {s:?} (no table)"));
    }
    Ok((table.to_string(), Policy::parse(policy)?))
}

/// Runs `apply`.
pub fn apply(args: &ApplyArgs) -> Result<Outcome, CliError> {
    let changeset = Input::new(&args.file).read_changeset()?;
    let mut conn = open_existing(&args.db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let mut policies = PolicySet::uniform(args.on_conflict.clone());
    for (table, policy) in &args.table_policy {
        policies = policies.with_table(table.clone(), policy.clone());
    }
    let apply_error = |source| CliError::Apply {
        path: args.db.clone(),
        source,
    };
    let options = ApplyOptions {
        fk_no_action: args.fk_no_action,
        ..ApplyOptions::with_policies(policies)
    };
    // sync_core::engine::apply::apply rolls back to its own savepoint on abort, but in autocommit mode that
    // savepoint is the whole transaction, and releasing it commits: rows are restored, yet
    // SQLite rewrites the pages it touched and bumps the file's change counter. An explicit
    // transaction that is rolled back leaves the file byte-for-byte as it was. IMMEDIATE takes
    // the write lock up front, so a busy database fails before any work.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| apply_error(ApplyError::Sqlite(source)))?;
    let result = sync_core::engine::apply::apply(&tx, &changeset, &options);
    let result = match result {
        Ok(report) => tx.commit().map(|()| report).map_err(ApplyError::Sqlite),
        Err(e) => {
            // Dropping `tx` would roll back too, silently; say so if it fails.
            tx.rollback()
                .map_err(|source| apply_error(ApplyError::Sqlite(source)))?;
            Err(e)
        }
    };
    let (status, report, error) = match result {
        Ok(report) if report.conflicts.is_empty() => (ApplyStatus::Clean, report, None),
        Ok(report) => (ApplyStatus::Conflicts, report, None),
        Err(ApplyError::Aborted { report }) => {
            let error = apply_error(ApplyError::Aborted {
                report: report.clone(),
            });
            (ApplyStatus::Aborted, report, Some(error))
        }
        Err(source) => return Err(apply_error(source)),
    };
    let mut out = Stdout::new();
    match args.format {
        Format::Text => {
            for conflict in &report.conflicts {
                out.line(&output::conflict_text(&conflict.into()))?;
            }
            out.line(&output::apply_summary_text(status, &report))?;
        }
        Format::Json => out.json(&ApplyJson::new(status, &report))?,
    }
    out.finish()?;
    match (error, status) {
        (Some(error), _) => Err(error),
        (None, ApplyStatus::Clean) => Ok(Outcome::Clean),
        (None, _) => Ok(Outcome::Differences),
    }
}

/// Opens `path` read-only without leaving a `-wal`/`-shm` beside it (see
/// `sync_client::probe::open_untouched`), failing here, with the path, when it is missing or
/// not a database.
fn open_untouched(path: &Path) -> Result<Connection, CliError> {
    let open_error = |source| CliError::OpenDatabase {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        // SQLite's own error for a missing file, as every other command reports it.
        return open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY);
    }
    let conn =
        sync_client::probe::open_untouched(path).map_err(|e| CliError::Usage(e.to_string()))?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(open_error)?;
    Ok(conn)
}

/// Opens a database that must already exist (without `SQLITE_OPEN_CREATE`) and reads its
/// schema, so a missing file or a file that is not a database fails here, with its path.
fn open_existing(path: &Path, mode: OpenFlags) -> Result<Connection, CliError> {
    let open_error = |source| CliError::OpenDatabase {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(open_error)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(open_error)?;
    Ok(conn)
}

/// Write the changeset that undoes FILE (INSERT <-> DELETE, UPDATE old <-> new).
///
/// Applying FILE and then its inverse leaves a database as it was.
///
/// Exit status: 0 written, 2 error.
#[derive(Debug, clap::Args)]
pub struct InvertArgs {
    /// The changeset file; `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to write the inverse; `-` for standard output (not a terminal).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// Runs `invert`.
pub fn invert(args: &InvertArgs) -> Result<Outcome, CliError> {
    let output = Output::new(&args.output);
    output.check()?;
    let input = Input::new(&args.file);
    let inverse = input
        .read_changeset()?
        .invert()
        .map_err(|source| CliError::Changeset {
            what: input.describe(),
            source,
        })?;
    output.write(inverse.as_bytes())?;
    Ok(Outcome::Clean)
}

/// Combine changesets, in order, into one (SQLite's changegroup).
///
/// Changes to the same row merge: INSERT then UPDATE gives one INSERT, INSERT then DELETE
/// gives nothing. Applying the result equals applying each input in turn (when they apply
/// cleanly).
///
/// Exit status: 0 written, 2 error.
#[derive(Debug, clap::Args)]
pub struct ConcatArgs {
    /// Two or more changeset files, in order; one of them may be `-` for standard input.
    #[arg(value_name = "FILE", num_args = 2.., required = true)]
    files: Vec<PathBuf>,
    /// Where to write the result; `-` for standard output (not a terminal).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// Runs `concat`.
pub fn concat(args: &ConcatArgs) -> Result<Outcome, CliError> {
    let output = Output::new(&args.output);
    output.check()?;
    let inputs = inputs(&args.files)?;
    let mut changesets = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let changeset: Changeset = input.read_changeset()?;
        // Validate each input here so an error names the file it is in.
        if !changeset.is_empty() {
            changeset.validate().map_err(|source| CliError::Decode {
                what: input.describe(),
                source,
            })?;
        }
        changesets.push(changeset);
    }
    let combined = Changeset::concat_all(&changesets).map_err(|source| CliError::Changeset {
        what: inputs
            .iter()
            .map(Input::describe)
            .collect::<Vec<_>>()
            .join(" + "),
        source,
    })?;
    output.write(combined.as_bytes())?;
    Ok(Outcome::Clean)
}
