//! What `sync-cli` prints: the text and JSON renderings of changes, summaries and apply
//! reports, and a buffered standard output whose errors (a broken pipe above all) are
//! returned instead of panicking as `println!` would.
//!
//! The text forms are for people and may change; the JSON forms are a documented, stable
//! format (`docs/changeset-json.md`).

use crate::error::CliError;
use serde::Serialize;
use std::io::{self, BufWriter, StdoutLock, Write};
use sync_core::engine::apply::ApplyReport;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::decode::{Change, Op, Summary, TableSummary};
use sync_core::engine::value::Value;
use sync_core::protocol::conflicts::Conflict;

/// Output format of the commands that print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON document per line (JSON Lines), see docs/changeset-json.md.
    Json,
}

/// Standard output, buffered and locked for the life of a command.
pub struct Stdout {
    inner: BufWriter<StdoutLock<'static>>,
}

impl Stdout {
    /// Locks standard output.
    pub fn new() -> Stdout {
        Stdout {
            inner: BufWriter::new(io::stdout().lock()),
        }
    }

    /// Writes one line.
    pub fn line(&mut self, line: &str) -> Result<(), CliError> {
        writeln!(self.inner, "{line}").map_err(write_error)
    }

    /// Writes `value` as one line of JSON.
    pub fn json<T: Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        // Serializing to a String cannot fail for these types (string map keys only); an I/O
        // error can only come from the write, which keeps its `io::ErrorKind`.
        let line = serde_json::to_string(value).map_err(|e| CliError::Write {
            what: "standard output".to_string(),
            source: io::Error::other(e),
        })?;
        self.line(&line)
    }

    /// Flushes what was written so far (a long-running command shows each line as it
    /// happens).
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.inner.flush().map_err(write_error)
    }

    /// Flushes; a command must call this before reporting success.
    pub fn finish(mut self) -> Result<(), CliError> {
        self.inner.flush().map_err(write_error)
    }
}

fn write_error(source: io::Error) -> CliError {
    CliError::Write {
        what: "standard output".to_string(),
        source,
    }
}

/// Prints `sync-cli: warning: …` on standard error. A failure to write a warning is ignored:
/// there is nowhere left to report it.
pub fn warn(message: &str) {
    let _ = writeln!(io::stderr().lock(), "sync-cli: warning: {message}");
}

/// An SQL identifier as it can be pasted into SQL: bare when it is a plain word, otherwise
/// double-quoted with `"` doubled.
pub fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A value as an SQL literal that fits on one line: like [`Value::to_sql_literal`], except
/// that control characters in TEXT (a newline, a tab) are spliced in as `char(N)`, so
/// `'a' || char(10) || 'b'` stands for a two-line text and each change stays on one line.
pub fn literal(value: &Value) -> String {
    let Value::Text(text) = value else {
        return value.to_sql_literal();
    };
    if !text.chars().any(char::is_control) {
        return value.to_sql_literal();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut run = String::new();
    for c in text.chars() {
        if c.is_control() {
            if !run.is_empty() {
                parts.push(Value::Text(std::mem::take(&mut run)).to_sql_literal());
            }
            parts.push(format!("char({})", u32::from(c)));
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        parts.push(Value::Text(run).to_sql_literal());
    }
    parts.join("||")
}

/// Column names for the text form: the database's names when known, else `c0`, `c1`, …
/// (0-based, as in sync-core's error messages).
pub fn column_name(names: Option<&[String]>, column: usize) -> String {
    match names.and_then(|n| n.get(column)) {
        Some(name) => ident(name),
        None => format!("c{column}"),
    }
}

/// One change as one line of text:
///
/// ```text
/// INSERT Artist pk(276): c0=276, c1='New artist'
/// UPDATE Track pk(1) [indirect]: c5: 'Angus Young' -> NULL, c8: 0.99 -> 1.29
/// DELETE PlaylistTrack pk(1, 3390): c0=1, c1=3390
/// ```
///
/// INSERT shows the new row, DELETE the old row, UPDATE only the columns it changes as
/// `old -> new` (`?` where the changeset does not record a side).
pub fn change_text(change: &Change, names: Option<&[String]>) -> String {
    let pk: Vec<String> = change.pk_values().iter().map(literal).collect();
    let mut line = format!(
        "{} {} pk({})",
        change.op,
        ident(&change.table),
        pk.join(", ")
    );
    if change.indirect {
        line.push_str(" [indirect]");
    }
    let field = |values: Option<&Vec<Option<Value>>>, column: usize| {
        values
            .and_then(|v| v.get(column))
            .and_then(Option::as_ref)
            .map(literal)
    };
    let mut parts = Vec::new();
    for column in 0..change.column_count() {
        let name = column_name(names, column);
        let old = field(change.old.as_ref(), column);
        let new = field(change.new.as_ref(), column);
        match change.op {
            Op::Insert => parts.push(format!("{name}={}", new.as_deref().unwrap_or("?"))),
            Op::Delete => parts.push(format!("{name}={}", old.as_deref().unwrap_or("?"))),
            Op::Update => {
                let in_key = change.pk.get(column).is_some_and(|f| *f != 0);
                // A key column is shown in pk(...) and cannot change; an unchanged column is
                // recorded on neither side.
                if in_key || (old.is_none() && new.is_none()) {
                    continue;
                }
                parts.push(format!(
                    "{name}: {} -> {}",
                    old.as_deref().unwrap_or("?"),
                    new.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    if !parts.is_empty() {
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    line
}

/// `N changes in M tables, B bytes`, the one-line summary shared by `validate` and
/// `inspect --summary`.
pub fn summary_line(summary: &Summary) -> String {
    let changes = summary.changes();
    let tables = summary.tables.len();
    format!(
        "{changes} {} in {tables} {}, {} bytes",
        plural(changes, "change", "changes"),
        plural(tables as u64, "table", "tables"),
        summary.bytes
    )
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The per-table counts as an aligned table, then the summary line.
pub fn summary_text(summary: &Summary) -> Vec<String> {
    let name_width = summary
        .tables
        .keys()
        .map(|t| ident(t).chars().count())
        .chain(["TABLE".len()])
        .max()
        .unwrap_or(0);
    let row = |name: &str, i: &dyn ToString, u: &dyn ToString, d: &dyn ToString| {
        format!(
            "{name:<name_width$}  {:>7}  {:>7}  {:>7}",
            i.to_string(),
            u.to_string(),
            d.to_string()
        )
    };
    let mut lines = vec![row("TABLE", &"INSERT", &"UPDATE", &"DELETE")];
    for (table, t) in &summary.tables {
        let TableSummary { counts, .. } = t;
        lines.push(row(
            &ident(table),
            &counts.insert,
            &counts.update,
            &counts.delete,
        ));
    }
    lines.push(summary_line(summary));
    lines
}

/// The JSON form of a summary: the total change count first, then sync-core's [`Summary`].
#[derive(Serialize)]
pub struct SummaryJson<'a> {
    /// Total number of changes (the sum over tables).
    pub changes: u64,
    /// Size and per-table counts.
    #[serde(flatten)]
    pub summary: &'a Summary,
}

impl<'a> SummaryJson<'a> {
    /// Wraps a summary.
    pub fn new(summary: &'a Summary) -> Self {
        SummaryJson {
            changes: summary.changes(),
            summary,
        }
    }
}

/// How an apply ended, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyStatus {
    /// Every change applied, no conflict.
    Clean,
    /// The apply committed, but conflicts occurred (each resolved by its policy).
    Conflicts,
    /// A conflict resolved to abort; the database is unchanged.
    Aborted,
}

/// The JSON form of an apply report.
#[derive(Serialize)]
pub struct ApplyJson {
    /// How the apply ended.
    pub status: ApplyStatus,
    /// Changes in the changeset.
    pub changes: u64,
    /// Changes written (0 when aborted: everything was rolled back).
    pub applied: u64,
    /// Every conflict, in the order SQLite reported them, in the documented JSON form of a
    /// conflict (the same as on the wire: `docs/changeset-json.md`).
    pub conflicts: Vec<Conflict>,
}

impl ApplyJson {
    /// The report as printed; an aborted apply wrote nothing.
    pub fn new(status: ApplyStatus, report: &ApplyReport) -> Self {
        ApplyJson {
            status,
            changes: report.changes,
            applied: if status == ApplyStatus::Aborted {
                0
            } else {
                report.applied
            },
            conflicts: report.conflicts.iter().map(Conflict::from).collect(),
        }
    }
}

/// One conflict as a line of text: the kind (padded so the rest lines up), what the
/// incoming change was, and how the conflict was resolved:
///
/// ```text
/// DATA         UPDATE Track pk(1) -> replace
/// NOTFOUND     DELETE PlaylistTrack pk(1, 3390) -> omit
/// FOREIGN_KEY  2 foreign-key violations remain -> abort
/// ```
pub fn conflict_text(conflict: &Conflict) -> String {
    let kind = conflict.kind.as_str();
    if conflict.kind == ConflictKind::ForeignKey {
        let n = conflict.fk_violations.unwrap_or(0);
        return format!(
            "{kind:<11}  {n} foreign-key {} remain -> {}",
            plural(n.unsigned_abs(), "violation", "violations"),
            conflict.resolution
        );
    }
    let op = conflict.op.map(Op::as_str).unwrap_or("?");
    let pk: Vec<String> = conflict.pk.iter().map(literal).collect();
    format!(
        "{kind:<11}  {op} {} pk({}) -> {}",
        ident(&conflict.table),
        pk.join(", "),
        conflict.resolution
    )
}

/// The report's closing line: `applied 10 of 12 changes, 2 conflicts`.
pub fn apply_summary_text(status: ApplyStatus, report: &ApplyReport) -> String {
    let conflicts = report.conflicts.len() as u64;
    let conflicts = match conflicts {
        0 => "no conflicts".to_string(),
        n => format!("{n} {}", plural(n, "conflict", "conflicts")),
    };
    match status {
        ApplyStatus::Aborted => format!(
            "aborted: applied 0 of {} {}, {conflicts}; the database is unchanged",
            report.changes,
            plural(report.changes, "change", "changes")
        ),
        _ => format!(
            "applied {} of {} {}, {conflicts}",
            report.applied,
            report.changes,
            plural(report.changes, "change", "changes")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<Value> {
        Some(Value::Text(s.to_string()))
    }

    #[test]
    fn update_shows_only_changed_columns_with_old_and_new() {
        let change = Change {
            table: "notes".to_string(),
            op: Op::Update,
            indirect: false,
            pk: vec![1, 0, 0],
            old: Some(vec![Some(Value::Integer(1)), text("a"), None]),
            new: Some(vec![None, text("b"), None]),
        };
        assert_eq!(
            change_text(&change, None),
            "UPDATE notes pk(1): c1: 'a' -> 'b'"
        );
        let names = ["id".to_string(), "body".to_string(), "n".to_string()];
        assert_eq!(
            change_text(&change, Some(&names)),
            "UPDATE notes pk(1): body: 'a' -> 'b'"
        );
    }

    #[test]
    fn insert_and_delete_show_the_whole_row_and_the_indirect_marker() {
        let row = vec![
            Some(Value::Integer(1)),
            Some(Value::Integer(3390)),
            Some(Value::Null),
            Some(Value::Blob(vec![0xde, 0xad])),
        ];
        let mut change = Change {
            table: "Playlist Track".to_string(),
            op: Op::Delete,
            indirect: true,
            pk: vec![1, 2, 0, 0],
            old: Some(row),
            new: None,
        };
        assert_eq!(
            change_text(&change, None),
            "DELETE \"Playlist Track\" pk(1, 3390) [indirect]: c0=1, c1=3390, c2=NULL, c3=X'DEAD'"
        );
        change.op = Op::Insert;
        change.indirect = false;
        change.new = change.old.take();
        assert_eq!(
            change_text(&change, None),
            "INSERT \"Playlist Track\" pk(1, 3390): c0=1, c1=3390, c2=NULL, c3=X'DEAD'"
        );
    }

    #[test]
    fn text_with_control_characters_stays_on_one_line() {
        assert_eq!(
            literal(&Value::Text("it's\nme\t".to_string())),
            "'it''s'||char(10)||'me'||char(9)"
        );
        assert_eq!(literal(&Value::Text(String::new())), "''");
        assert_eq!(literal(&Value::Real(0.5)), "0.5");
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(ident("Track"), "Track");
        assert_eq!(ident("_t1"), "_t1");
        assert_eq!(ident("1t"), "\"1t\"");
        assert_eq!(ident("a\"b c"), "\"a\"\"b c\"");
    }
}
