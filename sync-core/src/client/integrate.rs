//! Integrating pulled log entries, in one local transaction: undo the pending changesets (the
//! inverse of their concatenation), apply the pulled effects, drop this device's own batch if
//! it is among them, redo the remaining pending changesets, move the cursor.

use super::ClientError;
use super::conflicts::{Dropped, LocalConflictKind, record_conflict};
use super::redo::redo_group;
use super::report::{IntegrateReport, Touched};
use super::state::{clear_inflight, cursor, inflight, set_state};
use crate::engine::apply::{ApplyError, ApplyOptions, apply};
use crate::engine::changeset::Changeset;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::schema;
use crate::engine::tx::Tx;
use crate::protocol::pull::LogEntry;
use crate::protocol::push::PushStatus;
use rusqlite::Connection;

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
        piece_bytes: None,
    }
}

pub(crate) fn apply_exact(
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
