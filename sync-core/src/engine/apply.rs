//! Applying a changeset with conflict policies ([`crate::engine::policy`]), and the report of
//! what happened: every conflict met and how it was resolved.

use crate::engine::changeset::Changeset;
use crate::engine::conflict::{ConflictKind, Resolution};
use crate::engine::decode::{DecodeError, Op};
use crate::engine::ffi::{self, ApplyFlags, ConflictItem, RawApplyError};
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::schema::{self, SchemaError, ShapeCache};
use crate::engine::spool::Source;
use crate::engine::tx::Tx;
use crate::engine::value::Value;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// One conflict met during an apply, with how it was resolved. (Its wire and JSON form is
/// the protocol layer's own type, which converts from this one.)
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// DATA, NOTFOUND, CONFLICT, CONSTRAINT or FOREIGN_KEY.
    pub kind: ConflictKind,
    /// The table (empty for FOREIGN_KEY, which concerns the whole apply).
    pub table: String,
    /// The incoming change's operation (absent for FOREIGN_KEY).
    pub op: Option<Op>,
    /// Primary-key values of the row (empty for FOREIGN_KEY).
    pub pk: Vec<Value>,
    /// What was done.
    pub resolution: Resolution,
    /// The target row as it was (DATA and CONFLICT only).
    pub current: Option<Vec<Value>>,
    /// Number of foreign-key violations (FOREIGN_KEY only).
    pub fk_violations: Option<i64>,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    /// Changes in the changeset.
    pub changes: u64,
    /// Changes written to the database: all changes minus those omitted because of a conflict.
    pub applied: u64,
    /// Every conflict, in the order SQLite reported them.
    pub conflicts: Vec<Conflict>,
}

impl ApplyReport {
    /// Changes skipped because of a conflict.
    pub fn omitted(&self) -> u64 {
        self.changes - self.applied
    }
}

/// Options for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Conflict policies.
    pub policies: PolicySet,
    /// Run foreign-key actions (CASCADE, SET NULL) as NO ACTION. Use when applying effects
    /// that already contain their cascaded rows (a pulled log, an undo).
    pub fk_no_action: bool,
    /// Apply the inverse of the changeset (used to undo local changes).
    pub invert: bool,
    /// Do not report conflicts for changes that would not modify the database (deleting a
    /// missing row, setting columns to the values they already have, inserting an identical
    /// row). Used where such changes are expected, e.g. a cascade already ran.
    pub ignore_noop: bool,
    /// Do not open a savepoint: the caller's transaction is the unit of rollback. With this,
    /// an error leaves partial changes that the caller must roll back.
    pub no_savepoint: bool,
}

impl ApplyOptions {
    /// Options with the given policies and default flags.
    pub fn with_policies(policies: PolicySet) -> Self {
        ApplyOptions {
            policies,
            ..ApplyOptions::default()
        }
    }
}

/// Why an apply did not complete. In every case the database is unchanged (unless
/// [`ApplyOptions::no_savepoint`] was set, when the caller must roll back).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The changeset does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The changeset does not fit the database's schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A conflict resolved to abort; the report lists the conflicts up to the abort.
    #[error("apply aborted by a {} conflict; nothing was changed", report.conflicts.last().map(|c| c.kind.as_str()).unwrap_or("?"))]
    Aborted {
        /// The conflicts seen, the last one being the one that aborted.
        report: ApplyReport,
    },
    /// SQLite failed (I/O, corruption, a busy database).
    #[error("SQLite failed while applying: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The changeset could not be read from its file; nothing was changed.
    #[error("could not read the changeset: {0}")]
    Io(std::io::Error),
    /// A conflict callback panicked; the apply was rolled back.
    #[error("internal error: a conflict handler panicked; nothing was changed")]
    Panicked,
}

/// Changesets with at least this many changes are sorted by key before they are applied.
const SORT_ABOVE: u64 = 256;

/// Applies `changeset` to the `main` database of `conn` under `options`.
///
/// The changeset is validated and checked against the database's schema first (unknown
/// tables, column counts and primary keys must match), because SQLite silently skips tables it
/// cannot apply to. Then SQLite applies it in a savepoint; the report counts what was written
/// and lists every conflict.
pub fn apply(
    conn: &Connection,
    changeset: &Changeset,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    apply_cached(conn, changeset, options, None)
}

/// [`apply`], reading table shapes through a [`ShapeCache`] kept for this database.
pub fn apply_cached(
    conn: &Connection,
    changeset: &Changeset,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
) -> Result<ApplyReport, ApplyError> {
    apply_source(conn, Source::Bytes(changeset.as_bytes()), options, shapes)
}

/// [`apply_cached`] for changeset bytes in memory or in a file ([`Source`]). A file is
/// validated and applied in pieces (`decode::validate_reader`, SQLite's streaming apply), so
/// a changeset spooled to disk is never read into memory whole.
pub fn apply_source(
    conn: &Connection,
    source: Source<'_>,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
) -> Result<ApplyReport, ApplyError> {
    if source.is_empty() {
        return Ok(ApplyReport::default());
    }
    let summary = match source.as_bytes() {
        Some(bytes) => crate::engine::decode::validate(bytes)?,
        None => crate::engine::decode::validate_reader(
            source.reader(),
            crate::engine::decode::STREAM_WINDOW,
        )
        .map_err(ApplyError::Io)??,
    };
    schema::check_changeset_fits_cached(conn, &summary, shapes)?;
    let newest_columns = resolve_newest_columns(conn, &summary, &options.policies, shapes)?;
    // Outside a transaction, SQLite's own savepoint commits when released, even after a
    // rollback to it — which rewrites the file header of an "unchanged" database. An explicit
    // transaction makes an abort leave the file exactly as it was.
    let tx = if conn.is_autocommit() && !options.no_savepoint {
        Some(Tx::begin(conn)?)
    } else {
        None
    };
    // Large changesets in memory are applied in key order (see `decode::sorted_by_key`): same
    // result, and SQLite's B-trees grow at their ends instead of splitting pages everywhere.
    // A changeset in a file is streamed in its own order: sorting would need it in memory.
    let sorted;
    let input = match source.as_bytes() {
        Some(bytes) if summary.changes() >= SORT_ABOVE => {
            sorted = crate::engine::decode::sorted_by_key(bytes)?;
            Input::Bytes(&sorted)
        }
        Some(bytes) => Input::Bytes(bytes),
        None => Input::Source(source),
    };
    // Inside our own transaction SQLite's savepoint is redundant — an abort or error drops
    // `tx`, which rolls everything back — and costs a statement journal of every page the
    // apply touches, so it is skipped.
    let report = apply_checked(
        conn,
        input,
        summary.changes(),
        options,
        &newest_columns,
        tx.is_some(),
    )?;
    if let Some(tx) = tx {
        tx.commit()?;
    }
    Ok(report)
}

/// What [`apply_checked`] hands SQLite.
enum Input<'a> {
    Bytes(&'a [u8]),
    Source(Source<'a>),
}

/// Column index of each table's `NewestWins` column.
fn resolve_newest_columns(
    conn: &Connection,
    summary: &crate::engine::decode::Summary,
    policies: &PolicySet,
    shapes: Option<&ShapeCache>,
) -> Result<BTreeMap<String, usize>, SchemaError> {
    let mut out = BTreeMap::new();
    for table in summary.tables.keys() {
        if !matches!(policies.for_table(table), Policy::NewestWins { .. }) {
            continue;
        }
        let shape = match shapes {
            Some(c) => c.shape(conn, table)?,
            None => schema::table_shape(conn, table)?,
        }
        .ok_or_else(|| SchemaError::UnknownTable {
            table: table.clone(),
        })?;
        if let (_, Some(index)) = policies.resolved_for(table, &shape)? {
            out.insert(table.clone(), index);
        }
    }
    Ok(out)
}

fn apply_checked(
    conn: &Connection,
    input: Input<'_>,
    changes: u64,
    options: &ApplyOptions,
    newest_columns: &BTreeMap<String, usize>,
    in_own_transaction: bool,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport {
        changes,
        applied: changes,
        conflicts: Vec::new(),
    };
    let mut handler = |kind: ConflictKind, item: &ConflictItem| {
        let conflict = describe(kind, item, options, newest_columns);
        if conflict.resolution == Resolution::Omit && kind != ConflictKind::ForeignKey {
            report.applied = report.applied.saturating_sub(1);
        }
        let resolution = conflict.resolution;
        report.conflicts.push(conflict);
        resolution
    };
    let flags = ApplyFlags {
        no_savepoint: options.no_savepoint || in_own_transaction,
        fk_no_action: options.fk_no_action,
        ignore_noop: options.ignore_noop,
        invert: options.invert,
    };
    let result = match input {
        Input::Bytes(bytes) => ffi::apply_v2(conn, bytes, flags, None, &mut handler),
        Input::Source(source) => {
            ffi::apply_v2_strm(conn, &mut source.reader(), flags, None, &mut handler)
        }
    };
    if result.is_err() {
        report.applied = 0; // rolled back
    }
    match result {
        Ok(()) => Ok(report),
        Err(RawApplyError::Aborted) => Err(ApplyError::Aborted { report }),
        // SQLite reports an aborted FOREIGN_KEY conflict as SQLITE_CONSTRAINT, not
        // SQLITE_ABORT; it is still our handler's abort, with a report to return.
        Err(RawApplyError::Sqlite(_))
            if report.conflicts.last().is_some_and(|c| {
                c.kind == ConflictKind::ForeignKey && c.resolution == Resolution::Abort
            }) =>
        {
            Err(ApplyError::Aborted { report })
        }
        Err(RawApplyError::Panicked) => Err(ApplyError::Panicked),
        Err(RawApplyError::Sqlite(e)) => Err(ApplyError::Sqlite(e)),
    }
}

fn describe(
    kind: ConflictKind,
    item: &ConflictItem,
    options: &ApplyOptions,
    newest_columns: &BTreeMap<String, usize>,
) -> Conflict {
    if kind == ConflictKind::ForeignKey {
        return Conflict {
            kind,
            table: String::new(),
            op: None,
            pk: Vec::new(),
            resolution: Resolution::Abort,
            current: None,
            fk_violations: item.fk_violations(),
        };
    }
    let head = item.op();
    let table = head.as_ref().map(|h| h.table.clone()).unwrap_or_default();
    let op = head.as_ref().and_then(|h| h.op);
    let columns = head.as_ref().map(|h| h.columns).unwrap_or(0);
    // With INVERT, SQLite presents the change already inverted, so `op` is the effective one.
    let pk_flags = item.pk();
    let pk = pk_flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f != 0)
        .map(|(i, _)| {
            let v = if op == Some(Op::Insert) {
                item.new_value(i)
            } else {
                item.old_value(i)
            };
            v.unwrap_or(Value::Null)
        })
        .collect();
    let current = matches!(kind, ConflictKind::Data | ConflictKind::Conflict).then(|| {
        (0..columns)
            .map(|i| item.current_value(i).unwrap_or(Value::Null))
            .collect()
    });
    let policy = options.policies.for_table(&table);
    let resolution = policy.resolve(kind, item, newest_columns.get(&table).copied());
    Conflict {
        kind,
        table,
        op,
        pk,
        resolution,
        current,
        fk_violations: None,
    }
}

/// Applies `changeset` like [`apply`] with a session attached to every table of `main`
/// (internal tables excluded) and returns the session's changeset: the **effect** of the
/// apply — what actually changed, after conflict resolution and foreign-key actions.
///
/// The effect is what the server logs, and what a client stores in place of a pending
/// changeset re-applied over a newer base (so that its inverse stays exact).
pub fn apply_captured(
    conn: &Connection,
    changeset: &Changeset,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
) -> Result<(ApplyReport, Changeset), ApplyError> {
    let mut effect = Vec::new();
    let report = apply_captured_into(
        conn,
        Source::Bytes(changeset.as_bytes()),
        options,
        shapes,
        &mut effect,
    )?;
    Ok((report, Changeset::from_bytes(effect)))
}

/// [`apply_captured`] for any [`Source`], writing the effect to `effect` as the session
/// streams it out (a [`crate::engine::spool::Spool`] keeps a large one out of memory). Nothing is
/// written to `effect` when the apply fails. Call it inside a transaction when `effect` can
/// fail (a full disk): the apply is committed with the caller's transaction, which an error
/// while writing the effect must roll back.
pub fn apply_captured_into(
    conn: &Connection,
    source: Source<'_>,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
    effect: &mut dyn std::io::Write,
) -> Result<ApplyReport, ApplyError> {
    let mut session = rusqlite::session::Session::new(conn)?;
    session.table_filter(Some(|t: &str| !schema::is_internal_table(t)));
    session.attach::<&str>(None)?;
    let report = apply_source(conn, source, options, shapes)?;
    if !session.is_empty() {
        session.changeset_strm(effect)?;
    }
    Ok(report)
}
