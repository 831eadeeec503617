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
    /// A changeset in a file is applied in pieces of about this many bytes; `None` means
    /// [`PIECE`]. (Smaller pieces only cost more calls; tests use them to cut small inputs.)
    pub piece_bytes: Option<usize>,
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

/// [`apply_cached`] for changeset bytes in memory or in a file ([`Source`]). A changeset in a
/// file is validated and then applied in pieces of about [`PIECE`] bytes
/// (`decode::validate_pieces`), so one spooled to disk is never in memory whole: SQLite's own
/// streaming apply keeps every change it has read until it ends.
///
/// Applied in pieces, the result is that of one apply with two differences that only a
/// changeset crafted for them can see: a CONSTRAINT conflict is retried only after the rest of
/// its own piece (not of the whole changeset), and foreign keys are checked once, after the
/// last piece, with `PRAGMA foreign_key_check` (reported as one FOREIGN_KEY conflict with the
/// number of violating rows, like SQLite's check).
pub fn apply_source(
    conn: &Connection,
    source: Source<'_>,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
) -> Result<ApplyReport, ApplyError> {
    apply_inner(conn, source, options, shapes, None)
}

/// Changesets in a file are applied in pieces of about this many bytes (a piece grows past it
/// only to hold one larger change). SQLite holds a piece, its key-sorted copy and the session
/// recording its effect in memory at once.
pub const PIECE: usize = 4 << 20;

fn apply_inner(
    conn: &Connection,
    source: Source<'_>,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
    mut effect: Option<&mut dyn std::io::Write>,
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
    let mut report = ApplyReport {
        changes: summary.changes(),
        applied: summary.changes(),
        conflicts: Vec::new(),
    };
    let run = Run {
        conn,
        options,
        newest_columns: &newest_columns,
        // Inside our own transaction SQLite's savepoint is redundant — an abort or error
        // drops `tx`, which rolls everything back — and costs a statement journal of every
        // page the apply touches, so it is skipped.
        in_own_transaction: tx.is_some(),
    };
    let result = match source.as_bytes() {
        Some(bytes) => {
            // Large changesets are applied in key order (see `decode::sorted_by_key`): same
            // result, and SQLite's B-trees grow at their ends instead of splitting pages
            // everywhere.
            let sorted;
            let bytes = if summary.changes() >= SORT_ABOVE {
                sorted = crate::engine::decode::sorted_by_key(bytes)?;
                &sorted[..]
            } else {
                bytes
            };
            run.piece(bytes, &mut report, None, reborrow(&mut effect))
        }
        None => run.pieces(source, &mut report, effect),
    };
    if result.is_err() {
        report.applied = 0; // rolled back
    }
    match result {
        Ok(()) => {}
        Err(Stop::Aborted) => return Err(ApplyError::Aborted { report }),
        Err(Stop::Failed(e)) => return Err(e),
    }
    if let Some(tx) = tx {
        tx.commit()?;
    }
    Ok(report)
}

/// Why a [`Run`] stopped early.
enum Stop {
    /// A conflict resolved to abort (the report says which).
    Aborted,
    Failed(ApplyError),
}

impl<E: Into<ApplyError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

impl From<std::io::Error> for ApplyError {
    fn from(e: std::io::Error) -> Self {
        ApplyError::Io(e)
    }
}

/// One apply, checked and about to run: the connection, the options and what they resolve to.
struct Run<'a> {
    conn: &'a Connection,
    options: &'a ApplyOptions,
    newest_columns: &'a BTreeMap<String, usize>,
    in_own_transaction: bool,
}

/// The savepoint that holds the pieces of one apply together.
const PIECES_SAVEPOINT: &str = "_sync_apply";

impl Run<'_> {
    /// Applies a file's changes piece by piece, each under its own session when `effect` is
    /// wanted (a session keeps the old values of every row it saw), all in one savepoint, and
    /// checks foreign keys after the last piece.
    fn pieces(
        &self,
        source: Source<'_>,
        report: &mut ApplyReport,
        mut effect: Option<&mut dyn std::io::Write>,
    ) -> Result<(), Stop> {
        let savepoint = !self.in_own_transaction && !self.options.no_savepoint;
        if savepoint {
            self.conn
                .execute_batch(&format!("SAVEPOINT {PIECES_SAVEPOINT}"))?;
        }
        let mut fk_pending = false;
        let result = (|| {
            let walked = crate::engine::decode::validate_pieces(
                source.reader(),
                self.options.piece_bytes.unwrap_or(PIECE),
                |piece| -> Result<(), Stop> {
                    let sorted = crate::engine::decode::sorted_by_key(piece)?;
                    self.piece(
                        &sorted,
                        report,
                        Some(&mut fk_pending),
                        reborrow(&mut effect),
                    )
                },
            )?;
            // Validated before; a file that changed since is an I/O fault.
            walked.map_err(|e| {
                ApplyError::Io(std::io::Error::other(format!("the changeset changed: {e}")))
            })?;
            if fk_pending {
                let violations = foreign_key_violations(self.conn)?;
                if violations > 0 {
                    report
                        .conflicts
                        .push(foreign_key_conflict(Some(violations)));
                    return Err(Stop::Aborted);
                }
            }
            Ok(())
        })();
        if savepoint {
            let end = if result.is_ok() {
                format!("RELEASE {PIECES_SAVEPOINT}")
            } else {
                format!("ROLLBACK TO {PIECES_SAVEPOINT}; RELEASE {PIECES_SAVEPOINT}")
            };
            self.conn.execute_batch(&end)?;
        }
        result
    }

    /// One call into SQLite. With `fk_pending`, a foreign-key violation left at the end of
    /// this piece is not judged here (a later piece may resolve it): it is noted for the
    /// caller's check instead.
    fn piece(
        &self,
        bytes: &[u8],
        report: &mut ApplyReport,
        mut fk_pending: Option<&mut bool>,
        effect: Option<&mut dyn std::io::Write>,
    ) -> Result<(), Stop> {
        let session = match effect {
            Some(_) => {
                let mut session = crate::engine::ffi::session::Session::new(self.conn)?;
                session.table_filter(Some(|t: &str| !schema::is_internal_table(t)));
                session.attach(None)?;
                Some(session)
            }
            None => None,
        };
        let (options, newest_columns) = (self.options, self.newest_columns);
        let mut handler = |kind: ConflictKind, item: &ConflictItem| {
            if kind == ConflictKind::ForeignKey
                && let Some(pending) = fk_pending.as_deref_mut()
            {
                *pending = true;
                return Resolution::Omit;
            }
            let conflict = describe(kind, item, options, newest_columns);
            if conflict.resolution == Resolution::Omit && kind != ConflictKind::ForeignKey {
                report.applied = report.applied.saturating_sub(1);
            }
            let resolution = conflict.resolution;
            report.conflicts.push(conflict);
            resolution
        };
        let flags = ApplyFlags {
            no_savepoint: self.options.no_savepoint || self.in_own_transaction,
            fk_no_action: self.options.fk_no_action,
            ignore_noop: self.options.ignore_noop,
            invert: self.options.invert,
        };
        match ffi::apply_v2(self.conn, bytes, flags, None, &mut handler) {
            Ok(()) => {}
            Err(RawApplyError::Aborted) => return Err(Stop::Aborted),
            // SQLite reports an aborted FOREIGN_KEY conflict as SQLITE_CONSTRAINT, not
            // SQLITE_ABORT; it is still our handler's abort, with a report to return.
            Err(RawApplyError::Sqlite(_))
                if report.conflicts.last().is_some_and(|c| {
                    c.kind == ConflictKind::ForeignKey && c.resolution == Resolution::Abort
                }) =>
            {
                return Err(Stop::Aborted);
            }
            Err(RawApplyError::Panicked) => return Err(Stop::Failed(ApplyError::Panicked)),
            Err(RawApplyError::Sqlite(e)) => return Err(Stop::Failed(ApplyError::Sqlite(e))),
        }
        if let (Some(mut session), Some(out)) = (session, effect)
            && !session.is_empty()
        {
            session.changeset_strm(out)?;
        }
        Ok(())
    }
}

/// A shorter-lived handle on the effect writer, for one piece.
fn reborrow<'s>(
    effect: &'s mut Option<&mut dyn std::io::Write>,
) -> Option<&'s mut dyn std::io::Write> {
    match effect {
        Some(w) => Some(&mut **w),
        None => None,
    }
}

/// Rows of `main` whose foreign keys point nowhere.
fn foreign_key_violations(conn: &Connection) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare("PRAGMA main.foreign_key_check")?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while rows.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The FOREIGN_KEY conflict: it concerns the whole apply, and always aborts it.
fn foreign_key_conflict(violations: Option<i64>) -> Conflict {
    Conflict {
        kind: ConflictKind::ForeignKey,
        table: String::new(),
        op: None,
        pk: Vec::new(),
        resolution: Resolution::Abort,
        current: None,
        fk_violations: violations,
    }
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

fn describe(
    kind: ConflictKind,
    item: &ConflictItem,
    options: &ApplyOptions,
    newest_columns: &BTreeMap<String, usize>,
) -> Conflict {
    if kind == ConflictKind::ForeignKey {
        return foreign_key_conflict(item.fk_violations());
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
/// streams it out (a [`crate::engine::spool::Spool`] keeps a large one out of memory). A
/// changeset in a file is applied in pieces (see [`apply_source`]), each recorded by its own
/// session: the effect is then the pieces' effects one after the other — still one valid
/// changeset, in which a table may appear more than once. When the apply fails, whatever was
/// written to `effect` is meaningless. The effect is written before the apply commits, so an
/// error writing it (a full disk) rolls the apply back.
pub fn apply_captured_into(
    conn: &Connection,
    source: Source<'_>,
    options: &ApplyOptions,
    shapes: Option<&ShapeCache>,
    effect: &mut dyn std::io::Write,
) -> Result<ApplyReport, ApplyError> {
    apply_inner(conn, source, options, shapes, Some(effect))
}
