//! Integrating pulled log entries, in one local transaction: undo the pending transactions
//! (the inverse of their concatenation), apply the pulled effects, settle this device's own
//! batch if it is among them (applied transactions leave the outbox, rejected ones move to the
//! rejected queue), redo the remaining pending transactions one by one, move the cursor.

use super::ClientError;
use super::push::settle_batch;
use super::redo::redo_each;
use super::report::{IntegrateReport, Touched};
use super::state::{clear_inflight, cursor, inflight};
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
/// concatenation), apply the entries' effects (concatenated), settle our own batch if it is
/// among them, redo the remaining pending transactions one by one under a session and store
/// their captured effects, move the cursor. Entries at or below the cursor are skipped; a gap
/// is an error. Foreign-key actions are off throughout: every effect already carries its
/// cascaded rows.
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
            .filter(|e| e.status != PushStatus::Rejected)
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
        if let (Some(own), Some(f)) = (own, &inflight) {
            report.new_rejected += settle_batch(conn, f, Some(&own.rejected), own.seq, now_ms)?;
        }
        let remaining: Vec<OutboxEntry> = outbox::entries(conn)?;
        let redid = redo_each(conn, &remaining, now_ms, &mut touched)?;
        report.new_conflicts += redid.conflicts;
        report.new_rejected += redid.rejected;
    }
    super::state::set_state(conn, "cursor", last_seq)?;
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
        return Err(corrupt(
            "a wholly rejected batch with a non-empty effect".into(),
        ));
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
