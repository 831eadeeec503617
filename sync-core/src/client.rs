//! The client's side of the protocol over its writer connection, with no I/O beyond SQLite:
//! batching the outbox for a push, settling a push answer, integrating pulled log entries
//! (undo pending → apply remote → redo pending, in one transaction), and bootstrapping from a
//! snapshot. The client library adds the writer thread and HTTP around these functions; the
//! in-process convergence tests drive them directly against [`crate::server`].
//!
//! Local state = server state at the cursor + the pending changesets of the outbox. Every
//! function here keeps that equation true, which is what makes the inverse of the pending
//! changesets an exact undo. The subtle part is the redo: a pending changeset re-applied over a
//! newer base may meet conflicts, so its effect is no longer its stored bytes; the effect is
//! captured with a session and stored in its place.
//!
//! Internal tables (in the main database, never synced):
//!
//! | table | holds |
//! |---|---|
//! | `_sync_outbox` | pending changesets ([`crate::outbox`]) |
//! | `_sync_client` | `cursor`, `schema_version` |
//! | `_sync_inflight` | the batch being pushed: id, last outbox seq in it, the server's answer |
//! | `_sync_local_conflicts` | pending changes that could not be kept, with their changesets |
//!
//! Calls must be serialised per database (one sync at a time); local writes may interleave.

use crate::apply::{
    ApplyError, ApplyOptions, Conflict, ConflictKind, Policy, PolicySet, apply, apply_captured,
};
use crate::changeset::{Changeset, ChangesetError};
use crate::decode::Op;
use crate::outbox::{self, OutboxEntry};
use crate::protocol::info::SNAPSHOT_META_TABLE;
use crate::protocol::log::LogEntry;
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus};
use crate::schema::{self, SchemaError};
use crate::tx::Tx;
use crate::value::Value;
use rusqlite::session::Session;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Errors of the client-side steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Local state no longer equals server state + pending: an undo or a pulled entry did not
    /// apply cleanly. This is a bug or an outside write; bootstrap from a snapshot to recover.
    #[error("local database diverged from the server during {step}: {} conflict(s), first: {}", conflicts.len(), conflicts.first().map(|c| format!("{} on {} {:?}", c.kind, c.table, c.pk)).unwrap_or_default())]
    Diverged {
        /// `undo` or `remote`.
        step: &'static str,
        /// The conflicts found.
        conflicts: Vec<Conflict>,
    },
    /// Pulled entries do not continue from the cursor.
    #[error("pulled log entries start at seq {got} but the cursor is {cursor}")]
    Gap {
        /// The local cursor.
        cursor: i64,
        /// The first seq received.
        got: i64,
    },
    /// A pulled log entry is not something the server can have logged: its effect does not
    /// decode, or it writes one of the library's internal tables (`_sync_*`, `sqlite_*`, in
    /// any letter case). Nothing of it was applied; the server's log is damaged or hostile.
    #[error("pulled log entry {seq} is corrupt and was not applied: {what}")]
    CorruptEntry {
        /// The entry's seq.
        seq: i64,
        /// What is wrong with it.
        what: String,
    },
    /// A push answer for a batch that is not in flight.
    #[error("the push answer is for batch {batch_id}, which is not in flight")]
    UnknownBatch {
        /// The answered batch.
        batch_id: String,
    },
    /// A bootstrap was attempted while a pushed batch's fate is unknown; push it again first.
    #[error("batch {batch_id} was sent but not answered; push it again before bootstrapping")]
    InflightUnresolved {
        /// The batch.
        batch_id: String,
    },
    /// The snapshot file is not usable.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// The local schema does not match the snapshot's or a changeset's.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Changeset operation failed.
    #[error(transparent)]
    Changeset(#[from] ChangesetError),
    /// An apply failed in SQLite.
    #[error(transparent)]
    Apply(ApplyError),
    /// SQLite failed.
    #[error("local database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl From<ApplyError> for ClientError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Schema(s) => ClientError::Schema(s),
            ApplyError::Sqlite(s) => ClientError::Sqlite(s),
            other => ClientError::Apply(other),
        }
    }
}

/// Creates the outbox and the client's tables if missing. Idempotent.
pub fn install(conn: &Connection) -> rusqlite::Result<()> {
    outbox::install(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_client (
             key   TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_inflight (
             id           INTEGER PRIMARY KEY CHECK (id = 1),
             batch_id     TEXT    NOT NULL,
             through_seq  INTEGER NOT NULL,
             acked_seq    INTEGER,
             acked_status TEXT
         );
         CREATE TABLE IF NOT EXISTS _sync_local_conflicts (
             id         INTEGER PRIMARY KEY AUTOINCREMENT,
             at_ms      INTEGER NOT NULL,
             kind       TEXT    NOT NULL,
             table_name TEXT    NOT NULL,
             op         TEXT,
             pk         TEXT    NOT NULL,
             detail     TEXT    NOT NULL,
             changeset  BLOB
         );
         INSERT OR IGNORE INTO _sync_client(key, value) VALUES ('cursor', 0), ('schema_version', 0);",
    )
}

fn get_state(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM _sync_client WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

fn set_state(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_client(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// The last log seq integrated into the local database.
pub fn cursor(conn: &Connection) -> rusqlite::Result<i64> {
    get_state(conn, "cursor")
}

/// The schema version the local database was bootstrapped at.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    Ok(u32::try_from(get_state(conn, "schema_version")?).unwrap_or(0))
}

/// Records the schema version (after `init`).
pub fn set_schema_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    set_state(conn, "schema_version", i64::from(version))
}

/// The batch being pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflight {
    /// Its idempotency key.
    pub batch_id: String,
    /// Outbox entries with `seq <= through_seq` are in it.
    pub through_seq: i64,
    /// The seq the server answered with, once answered.
    pub acked_seq: Option<i64>,
    /// The status the server answered, once answered.
    pub acked_status: Option<PushStatus>,
}

/// The batch in flight, if any.
pub fn inflight(conn: &Connection) -> rusqlite::Result<Option<Inflight>> {
    conn.prepare_cached(
        "SELECT batch_id, through_seq, acked_seq, acked_status FROM _sync_inflight WHERE id = 1",
    )?
    .query_row([], |r| {
        Ok(Inflight {
            batch_id: r.get(0)?,
            through_seq: r.get(1)?,
            acked_seq: r.get(2)?,
            acked_status: r
                .get::<_, Option<String>>(3)?
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
        })
    })
    .optional()
}

fn clear_inflight(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM _sync_inflight", [])?;
    Ok(())
}

/// A batch ready to send.
#[derive(Debug, Clone)]
pub struct PushBatch {
    /// Headers to send.
    pub headers: PushHeaders,
    /// The body: the pending changesets of the batch, concatenated.
    pub changeset: Changeset,
    /// Last outbox seq in the batch.
    pub through_seq: i64,
    /// Number of outbox entries in the batch.
    pub entries: usize,
}

/// Prepares the batch to push: the batch already in flight (same id, so a retry is
/// idempotent), or a new one made of the oldest outbox entries up to about `max_bytes` (at
/// least one entry) with the id `new_batch_id()` returns — which must never repeat for this
/// device. Returns `None` when there is nothing to push, or when the batch in flight was
/// answered and only a pull can settle it.
pub fn prepare_push(
    conn: &Connection,
    max_bytes: usize,
    new_batch_id: impl FnOnce() -> String,
) -> Result<Option<PushBatch>, ClientError> {
    let tx = Tx::begin(conn)?;
    let cursor = cursor(conn)?;
    let schema_version = schema_version(conn)?;
    if let Some(f) = inflight(conn)? {
        if f.acked_seq.is_some() {
            return Ok(None);
        }
        let entries = entries_through(conn, f.through_seq)?;
        let changeset = Changeset::concat_all(entries.iter().map(|e| &e.changeset))?;
        if !changeset.is_empty() {
            let batch = PushBatch {
                headers: PushHeaders {
                    batch_id: f.batch_id,
                    cursor,
                    schema_version,
                },
                changeset,
                through_seq: f.through_seq,
                entries: entries.len(),
            };
            tx.commit()?;
            return Ok(Some(batch));
        }
        // The batch's entries cancelled out or were dropped by a rebase: nothing of it can
        // be pushed again, so it may be forgotten (if the server did process it, its entry
        // arrives in a pull like any remote change).
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
    }
    let mut new_batch_id = Some(new_batch_id);
    loop {
        let mut taken: Vec<OutboxEntry> = Vec::new();
        let mut bytes = 0usize;
        for entry in outbox::entries_after(conn, i64::MIN, 4096)? {
            if !taken.is_empty() && bytes + entry.changeset.len() > max_bytes {
                break;
            }
            bytes += entry.changeset.len();
            taken.push(entry);
        }
        let Some(last) = taken.last() else {
            tx.commit()?;
            return Ok(None);
        };
        let through_seq = last.seq;
        let changeset = Changeset::concat_all(taken.iter().map(|e| &e.changeset))?;
        if changeset.is_empty() {
            // These entries undo each other (insert then delete): local state already shows
            // nothing of them, so they are done.
            outbox::remove_through(conn, through_seq)?;
            continue;
        }
        let batch_id = (new_batch_id.take().expect("one new batch per call"))();
        conn.execute(
            "INSERT INTO _sync_inflight(id, batch_id, through_seq) VALUES (1, ?1, ?2)",
            params![batch_id, through_seq],
        )?;
        tx.commit()?;
        return Ok(Some(PushBatch {
            headers: PushHeaders {
                batch_id,
                cursor,
                schema_version,
            },
            changeset,
            through_seq,
            entries: taken.len(),
        }));
    }
}

fn entries_through(conn: &Connection, through: i64) -> rusqlite::Result<Vec<OutboxEntry>> {
    Ok(outbox::entries(conn)?
        .into_iter()
        .take_while(|e| e.seq <= through)
        .collect())
}

/// What a push answer settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Applied cleanly with nothing interleaved: the batch's entries are gone from the outbox
    /// and the cursor moved to its seq. No rebase was needed.
    Settled {
        /// The new cursor.
        seq: i64,
    },
    /// The server processed the batch at `seq`; the next pull settles it (rebase).
    AwaitPull {
        /// The batch's log seq.
        seq: i64,
    },
}

/// Records the server's answer to the batch in flight (a 200 answer, or a `push_rejected`
/// answer read with [`PushResponse::from_rejection`]).
pub fn on_push_response(
    conn: &Connection,
    response: &PushResponse,
) -> Result<PushOutcome, ClientError> {
    let tx = Tx::begin(conn)?;
    let Some(f) = inflight(conn)?.filter(|f| f.batch_id == response.batch_id) else {
        return Err(ClientError::UnknownBatch {
            batch_id: response.batch_id.clone(),
        });
    };
    let cursor = cursor(conn)?;
    let outcome = if response.status == PushStatus::Applied
        && response.clean
        && !response.duplicate
        && response.seq == cursor + 1
    {
        // Server at seq = server at cursor + exactly this batch, which is what the local
        // database already shows: drop the entries, move the cursor, skip undo/redo.
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
        set_state(conn, "cursor", response.seq)?;
        PushOutcome::Settled { seq: response.seq }
    } else {
        let status = serde_json::to_value(response.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        conn.execute(
            "UPDATE _sync_inflight SET acked_seq = ?1, acked_status = ?2 WHERE id = 1",
            params![response.seq, status],
        )?;
        PushOutcome::AwaitPull { seq: response.seq }
    };
    tx.commit()?;
    Ok(outcome)
}

/// Why a pending change was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalConflictKind {
    /// An UPDATE of a row another device deleted.
    RowDeletedRemotely,
    /// Re-applying violated a UNIQUE/CHECK/NOT NULL constraint.
    Constraint,
    /// Re-applying left foreign-key violations (a parent was deleted remotely); the whole
    /// pending changeset was dropped.
    ForeignKey,
    /// The server rejected the batch (policy or foreign keys); its changes were dropped.
    BatchRejected,
}

impl LocalConflictKind {
    fn as_str(self) -> &'static str {
        match self {
            LocalConflictKind::RowDeletedRemotely => "row_deleted_remotely",
            LocalConflictKind::Constraint => "constraint",
            LocalConflictKind::ForeignKey => "foreign_key",
            LocalConflictKind::BatchRejected => "batch_rejected",
        }
    }
}

/// A pending change that could not be kept, as recorded for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalConflict {
    /// Record id.
    pub id: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Why.
    pub kind: LocalConflictKind,
    /// Table (empty when a whole changeset was dropped).
    pub table: String,
    /// The dropped change's operation, when known.
    pub op: Option<Op>,
    /// Key of the row, when known.
    pub pk: Vec<Value>,
    /// Explanation.
    pub detail: String,
    /// The dropped changes, for a whole dropped changeset (so nothing vanishes silently).
    #[serde(skip)]
    pub changeset: Option<Changeset>,
}

/// A local conflict about to be recorded.
struct Dropped<'a> {
    kind: LocalConflictKind,
    table: &'a str,
    op: Option<Op>,
    pk: &'a [Value],
    detail: &'a str,
    changeset: Option<&'a Changeset>,
}

impl<'a> Dropped<'a> {
    /// A whole changeset dropped (the table and key are in the changeset).
    fn changeset(kind: LocalConflictKind, detail: &'a str, changeset: &'a Changeset) -> Self {
        Dropped {
            kind,
            table: "",
            op: None,
            pk: &[],
            detail,
            changeset: Some(changeset),
        }
    }
}

fn record_conflict(conn: &Connection, now_ms: i64, d: Dropped<'_>) -> rusqlite::Result<()> {
    let Dropped {
        kind,
        table,
        op,
        pk,
        detail,
        changeset,
    } = d;
    let pk = serde_json::to_string(pk).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO _sync_local_conflicts(at_ms, kind, table_name, op, pk, detail, changeset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        now_ms,
        kind.as_str(),
        table,
        op.map(Op::as_str),
        pk,
        detail,
        changeset.filter(|c| !c.is_empty()).map(Changeset::as_bytes)
    ])?;
    Ok(())
}

/// Forgets the local conflicts with `id <= through_id` (the app has shown or handled them),
/// changesets included; later ones stay. Returns how many were removed. Ids are never reused.
pub fn clear_local_conflicts(conn: &Connection, through_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM _sync_local_conflicts WHERE id <= ?1")?
        .execute([through_id])
}

/// Local conflicts with `id > after`, oldest first.
pub fn local_conflicts(conn: &Connection, after: i64) -> rusqlite::Result<Vec<LocalConflict>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, table_name, op, pk, detail, changeset
         FROM _sync_local_conflicts WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([after], |r| {
        let kind: String = r.get(2)?;
        let op: Option<String> = r.get(4)?;
        let pk: String = r.get(5)?;
        Ok(LocalConflict {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            kind: serde_json::from_value(serde_json::Value::String(kind))
                .unwrap_or(LocalConflictKind::Constraint),
            table: r.get(3)?,
            op: op.and_then(|o| serde_json::from_value(serde_json::Value::String(o)).ok()),
            pk: serde_json::from_str(&pk).unwrap_or_default(),
            detail: r.get(6)?,
            changeset: r.get::<_, Option<Vec<u8>>>(7)?.map(Changeset::from_bytes),
        })
    })?;
    rows.collect()
}

/// A row whose contents may have changed (for indexers): table and primary-key values.
pub type TouchedRow = (String, Vec<Value>);

/// What [`integrate`] or [`bootstrap`] did.
#[derive(Debug, Clone, Default)]
pub struct IntegrateReport {
    /// Log entries integrated.
    pub entries: usize,
    /// The cursor afterwards.
    pub cursor: i64,
    /// The fate of our own batch, if its entry was among them.
    pub own_batch: Option<PushStatus>,
    /// Whether pending changes were undone and re-applied.
    pub rebased: bool,
    /// Pending changes recorded as local conflicts by this call.
    pub new_conflicts: usize,
    /// Rows that may have changed, deduplicated.
    pub touched: Vec<TouchedRow>,
}

/// Integrates pulled log entries in one transaction: undo pending (inverse of their
/// concatenation), apply the entries' effects (concatenated), drop our own batch if it is
/// among them, redo the remaining pending changes under a session and store their captured
/// effects, move the cursor. Entries at or below the cursor are skipped; a gap is an error.
/// Foreign-key actions are off throughout: every effect already carries its cascaded rows.
pub fn integrate(
    conn: &Connection,
    entries: &[LogEntry],
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    let tx = Tx::begin(conn)?;
    let cursor = cursor(conn)?;
    let entries: Vec<&LogEntry> = entries.iter().filter(|e| e.seq > cursor).collect();
    let Some(last) = entries.last() else {
        tx.commit()?;
        return Ok(IntegrateReport {
            cursor,
            ..IntegrateReport::default()
        });
    };
    for (i, e) in entries.iter().enumerate() {
        if e.seq != cursor + 1 + i as i64 {
            return Err(ClientError::Gap { cursor, got: e.seq });
        }
        check_pulled(e)?;
    }
    let last_seq = last.seq;
    let inflight = inflight(conn)?;
    let own = inflight
        .as_ref()
        .and_then(|f| entries.iter().find(|e| e.batch_id == f.batch_id));
    let remote = Changeset::concat_all(
        entries
            .iter()
            .filter(|e| e.status == PushStatus::Applied)
            .map(|e| &e.effect),
    )?;
    let mut report = IntegrateReport {
        entries: entries.len(),
        cursor: last_seq,
        own_batch: own.map(|e| e.status),
        ..IntegrateReport::default()
    };
    let mut touched = Touched::default();
    touched.add(&remote);

    let pending = outbox::entries(conn)?;
    if pending.is_empty() {
        apply_exact(conn, &remote, "remote")?;
        if own.is_some() {
            clear_inflight(conn)?;
        }
    } else {
        report.rebased = true;
        let undo = undo_all(conn, &pending)?;
        touched.add(&undo);
        apply_exact(conn, &remote, "remote")?;
        let mut through = inflight.as_ref().map(|f| f.through_seq);
        if let (Some(own), Some(f)) = (own, &inflight) {
            let dropped: Vec<&OutboxEntry> =
                pending.iter().filter(|e| e.seq <= f.through_seq).collect();
            if own.status == PushStatus::Rejected {
                let cs = Changeset::concat_all(dropped.iter().map(|e| &e.changeset))?;
                record_conflict(
                    conn,
                    now_ms,
                    Dropped::changeset(
                        LocalConflictKind::BatchRejected,
                        &format!(
                            "the server rejected batch {} (log seq {}); its changes were dropped",
                            f.batch_id, own.seq
                        ),
                        &cs,
                    ),
                )?;
                report.new_conflicts += 1;
            }
            outbox::remove_through(conn, f.through_seq)?;
            clear_inflight(conn)?;
            through = None;
        }
        let remaining = outbox::entries(conn)?;
        let (in_flight, later): (Vec<OutboxEntry>, Vec<OutboxEntry>) = remaining
            .into_iter()
            .partition(|e| through.is_some_and(|t| e.seq <= t));
        for group in [in_flight, later] {
            report.new_conflicts += redo_group(conn, &group, now_ms, &mut touched)?;
        }
    }
    set_state(conn, "cursor", last_seq)?;
    tx.commit()?;
    report.touched = touched.into_rows();
    Ok(report)
}

/// Refuses a pulled entry whose effect does not decode or writes an internal table: the
/// server never logs such an effect (its apply refuses them), so one arriving means a damaged
/// or hostile log, and applying it could rewrite this device's outbox or cursor.
fn check_pulled(entry: &LogEntry) -> Result<(), ClientError> {
    if entry.effect.is_empty() {
        return Ok(());
    }
    let corrupt = |what: String| ClientError::CorruptEntry {
        seq: entry.seq,
        what,
    };
    let summary = entry
        .effect
        .validate()
        .map_err(|e| corrupt(e.to_string()))?;
    if entry.status == PushStatus::Rejected {
        return Err(corrupt("a rejected batch with a non-empty effect".into()));
    }
    match summary.tables.keys().find(|t| schema::is_internal_table(t)) {
        Some(table) => Err(corrupt(format!(
            "it writes {table:?}, a table internal to session-sync or SQLite"
        ))),
        None => Ok(()),
    }
}

/// Options for applying changes that must apply exactly (undo, remote effects).
fn exact_options() -> ApplyOptions {
    ApplyOptions {
        policies: PolicySet::uniform(Policy::Abort),
        fk_no_action: true,
        ignore_noop: false,
        invert: false,
        no_savepoint: false,
    }
}

fn apply_exact(
    conn: &Connection,
    changeset: &Changeset,
    step: &'static str,
) -> Result<(), ClientError> {
    if changeset.is_empty() {
        return Ok(());
    }
    match apply(conn, changeset, &exact_options()) {
        Ok(_) => Ok(()),
        Err(ApplyError::Aborted { report }) => Err(ClientError::Diverged {
            step,
            conflicts: report.conflicts,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Applies the inverse of all pending changesets; returns that inverse.
fn undo_all(conn: &Connection, pending: &[OutboxEntry]) -> Result<Changeset, ClientError> {
    let undo = Changeset::concat_all(pending.iter().map(|e| &e.changeset))?.invert()?;
    apply_exact(conn, &undo, "undo")?;
    Ok(undo)
}

/// Re-applies a group of pending entries as one changeset under a session, and stores the
/// captured effect in place of the group (on its last entry; the others are removed). If the
/// group leaves foreign-key violations, entries are re-applied one by one and those that
/// still violate are dropped and recorded. Returns the number of local conflicts recorded.
fn redo_group(
    conn: &Connection,
    group: &[OutboxEntry],
    now_ms: i64,
    touched: &mut Touched,
) -> Result<usize, ClientError> {
    let Some(last) = group.last() else {
        return Ok(0);
    };
    let combined = Changeset::concat_all(group.iter().map(|e| &e.changeset))?;
    match redo_one(conn, &combined, now_ms) {
        Ok((effect, conflicts)) => {
            touched.add(&effect);
            for e in &group[..group.len() - 1] {
                outbox::replace(conn, e.seq, &Changeset::default())?;
            }
            outbox::replace(conn, last.seq, &effect)?;
            Ok(conflicts)
        }
        Err(RedoError::ForeignKey) if group.len() > 1 => {
            let mut conflicts = 0;
            for e in group {
                conflicts += redo_group(conn, std::slice::from_ref(e), now_ms, touched)?;
            }
            Ok(conflicts)
        }
        Err(RedoError::ForeignKey) => {
            record_conflict(
                conn,
                now_ms,
                Dropped::changeset(
                    LocalConflictKind::ForeignKey,
                    "re-applying this change over the server's newer state left foreign-key violations (a parent row was deleted remotely); it was dropped",
                    &combined,
                ),
            )?;
            outbox::replace(conn, last.seq, &Changeset::default())?;
            Ok(1)
        }
        Err(RedoError::Client(e)) => Err(e),
    }
}

enum RedoError {
    ForeignKey,
    Client(ClientError),
}

impl<E: Into<ClientError>> From<E> for RedoError {
    fn from(e: E) -> Self {
        RedoError::Client(e.into())
    }
}

/// Re-applies one changeset: local changes win over remote ones where SQLite allows
/// (DATA, CONFLICT → replace) so they stay visible until the server arbitrates; an update of a
/// row deleted remotely and a constraint violation are omitted and recorded.
fn redo_one(
    conn: &Connection,
    changeset: &Changeset,
    now_ms: i64,
) -> Result<(Changeset, usize), RedoError> {
    let options = ApplyOptions {
        policies: PolicySet::uniform(Policy::Replace),
        fk_no_action: true,
        ignore_noop: true,
        invert: false,
        no_savepoint: false,
    };
    let (report, effect) = match apply_captured(conn, changeset, &options, None) {
        Ok(r) => r,
        Err(ApplyError::Aborted { report })
            if report
                .conflicts
                .last()
                .is_some_and(|c| c.kind == ConflictKind::ForeignKey) =>
        {
            return Err(RedoError::ForeignKey);
        }
        Err(e) => return Err(e.into()),
    };
    let mut recorded = 0;
    for c in &report.conflicts {
        let (kind, detail) = match c.kind {
            ConflictKind::NotFound if c.op == Some(Op::Update) => (
                LocalConflictKind::RowDeletedRemotely,
                "this row was deleted on another device; the local update was dropped",
            ),
            ConflictKind::Constraint => (
                LocalConflictKind::Constraint,
                "re-applying this change over the server's newer state violated a constraint; it was dropped",
            ),
            _ => continue,
        };
        record_conflict(
            conn,
            now_ms,
            Dropped {
                kind,
                table: &c.table,
                op: c.op,
                pk: &c.pk,
                detail,
                changeset: None,
            },
        )?;
        recorded += 1;
    }
    Ok((effect, recorded))
}

/// Rows touched by a set of changesets, deduplicated.
#[derive(Default)]
struct Touched {
    seen: HashSet<String>,
    rows: Vec<TouchedRow>,
}

impl Touched {
    fn add(&mut self, changeset: &Changeset) {
        for change in changeset.changes().flatten() {
            let pk = change.pk_values();
            let key = format!(
                "{}\u{0}{}",
                change.table,
                pk.iter()
                    .map(Value::to_sql_literal)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if self.seen.insert(key) {
                self.rows.push((change.table, pk));
            }
        }
    }

    fn into_rows(self) -> Vec<TouchedRow> {
        self.rows
    }
}

/// Reads a snapshot file's seq and schema version (from its `_sync_snapshot` table).
pub fn snapshot_meta(path: &Path) -> Result<(i64, u32), ClientError> {
    let snap = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let get = |key: &str| -> Result<i64, ClientError> {
        snap.query_row(
            "SELECT value FROM _sync_snapshot WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .map_err(|e| ClientError::InvalidSnapshot(format!("no {key} recorded: {e}")))
    };
    let seq = get("seq")?;
    let version = u32::try_from(get("schema_version")?)
        .map_err(|_| ClientError::InvalidSnapshot("schema_version out of range".into()))?;
    check_snapshot_schema(&snap)?;
    Ok((seq, version))
}

/// A snapshot becomes (or replaces the rows of) the local database, so it may hold app tables
/// only: a `_sync_*` table other than its marker would arrive as this device's own internal
/// state (an outbox row pushed as ours, a forged cursor), and a trigger that names one would
/// write it during later applies. Names are judged as SQLite judges them (any letter case).
fn check_snapshot_schema(snap: &Connection) -> Result<(), ClientError> {
    let mut stmt = snap
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema")
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let objects = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    for (kind, name, sql) in objects {
        if kind == "table"
            && schema::is_library_table(&name)
            && !schema::same_name(&name, SNAPSHOT_META_TABLE)
        {
            return Err(ClientError::InvalidSnapshot(format!(
                "it holds table {name:?}, which is internal to session-sync"
            )));
        }
        if kind == "trigger" && sql.to_ascii_lowercase().contains(schema::INTERNAL_PREFIX) {
            return Err(ClientError::InvalidSnapshot(format!(
                "its trigger {name:?} refers to a table internal to session-sync"
            )));
        }
    }
    Ok(())
}

/// Makes a new local database at `dest` from a snapshot file: copies it, removes the
/// snapshot's marker table, installs the client tables and sets cursor and schema version.
pub fn init_from_snapshot(snapshot: &Path, dest: &Path) -> Result<Connection, ClientError> {
    let (seq, version) = snapshot_meta(snapshot)?;
    if dest.exists() {
        return Err(ClientError::InvalidSnapshot(format!(
            "{} already exists",
            dest.display()
        )));
    }
    std::fs::copy(snapshot, dest).map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let conn = Connection::open(dest)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; DROP TABLE _sync_snapshot;")?;
    install(&conn)?;
    set_state(&conn, "cursor", seq)?;
    set_schema_version(&conn, version)?;
    Ok(conn)
}

/// Re-bases the local database on a snapshot: in one transaction, make every app table equal
/// to the snapshot's, set the cursor to the snapshot's seq, redo pending.
/// Pending local changes survive. A batch in flight must have been answered (its fate known)
/// or this fails with [`ClientError::InflightUnresolved`].
pub fn bootstrap(
    conn: &Connection,
    snapshot: &Path,
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    let (seq, version) = snapshot_meta(snapshot)?;
    if version != schema_version(conn)? {
        return Err(ClientError::InvalidSnapshot(format!(
            "the snapshot is at schema version {version}, the local database at {}",
            schema_version(conn)?
        )));
    }
    conn.execute(
        "ATTACH DATABASE ?1 AS _sync_snap",
        [snapshot.to_string_lossy()],
    )?;
    let result = bootstrap_attached(conn, seq, now_ms);
    let detach = conn.execute_batch("DETACH DATABASE _sync_snap");
    let report = result?;
    detach?;
    Ok(report)
}

fn bootstrap_attached(
    conn: &Connection,
    seq: i64,
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    let tables = schema::user_tables(conn)?;
    let snap_tables = schema::user_tables_in(conn, "_sync_snap")?;
    for t in snap_tables.iter().chain(&tables) {
        if !(tables.contains(t) && snap_tables.contains(t))
            || schema::table_shape(conn, t)? != schema::table_shape_in(conn, "_sync_snap", t)?
        {
            return Err(ClientError::InvalidSnapshot(format!(
                "table {t:?} differs between the snapshot and the local database"
            )));
        }
    }
    let tx = Tx::begin(conn)?;
    let mut report = IntegrateReport {
        cursor: seq,
        rebased: true,
        ..IntegrateReport::default()
    };
    let mut touched = Touched::default();
    let mut inflight = inflight(conn)?;
    if let Some(f) = &inflight {
        let Some(acked) = f.acked_seq else {
            return Err(ClientError::InflightUnresolved {
                batch_id: f.batch_id.clone(),
            });
        };
        if acked <= seq {
            // The snapshot contains the batch's effect (or its rejection): settle it now.
            let pending = outbox::entries(conn)?;
            let dropped = Changeset::concat_all(
                pending
                    .iter()
                    .filter(|e| e.seq <= f.through_seq)
                    .map(|e| &e.changeset),
            )?;
            report.own_batch = f.acked_status;
            if f.acked_status == Some(PushStatus::Rejected) {
                record_conflict(
                    conn,
                    now_ms,
                    Dropped::changeset(
                        LocalConflictKind::BatchRejected,
                        &format!(
                            "the server rejected batch {} (log seq {acked}); its changes were dropped",
                            f.batch_id
                        ),
                        &dropped,
                    ),
                )?;
                report.new_conflicts += 1;
            }
        }
    }
    if let Some(f) = inflight.take_if(|f| f.acked_seq.is_some_and(|a| a <= seq)) {
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
    }
    // Make main equal to the snapshot: the session's diff records what turns the snapshot
    // into main (server state + pending effects); its inverse turns main into the snapshot.
    // No undo is needed first: the diff takes main from whatever it holds.
    let mut bytes = Vec::new();
    {
        let mut session = Session::new(conn)?;
        for t in &tables {
            session.attach(Some(t.as_str()))?;
            session.diff::<&str, &str>("_sync_snap", t)?;
        }
        session.changeset_strm(&mut bytes)?;
    }
    let to_snapshot = Changeset::from_bytes(bytes).invert()?;
    touched.add(&to_snapshot);
    apply_exact(conn, &to_snapshot, "bootstrap")?;
    let through = inflight.as_ref().map(|f| f.through_seq);
    let (in_flight, later): (Vec<OutboxEntry>, Vec<OutboxEntry>) = outbox::entries(conn)?
        .into_iter()
        .partition(|e| through.is_some_and(|t| e.seq <= t));
    for group in [in_flight, later] {
        report.new_conflicts += redo_group(conn, &group, now_ms, &mut touched)?;
    }
    set_state(conn, "cursor", seq)?;
    tx.commit()?;
    report.touched = touched.into_rows();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot file as the server makes it, plus `extra` SQL.
    fn snapshot_with(dir: &Path, extra: &str) -> std::path::PathBuf {
        let path = dir.join(format!("snap-{}.db", extra.len()));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT);
             CREATE TABLE _sync_snapshot(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO _sync_snapshot VALUES ('seq', 0), ('schema_version', 1);
             {extra}"
        ))
        .unwrap();
        path
    }

    #[test]
    fn snapshots_holding_internal_tables_or_triggers_on_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ok = snapshot_with(dir.path(), "");
        assert_eq!(snapshot_meta(&ok).unwrap(), (0, 1));
        for extra in [
            "CREATE TABLE _SYNC_OUTBOX(seq INTEGER PRIMARY KEY, changeset BLOB, created_ms INTEGER);",
            "CREATE TABLE _sync_client(key TEXT PRIMARY KEY, value INTEGER);",
            "CREATE TABLE t2(id INTEGER PRIMARY KEY); CREATE TRIGGER tr AFTER INSERT ON notes \
             BEGIN INSERT INTO _Sync_Outbox_x VALUES (1); END;",
        ] {
            let snap = snapshot_with(dir.path(), extra);
            let dest = dir.path().join("local.db");
            let err = init_from_snapshot(&snap, &dest).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidSnapshot(_)),
                "{extra}: {err}"
            );
            assert!(!dest.exists(), "{extra}");
        }
    }
}
