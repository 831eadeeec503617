//! The redo: a pending changeset re-applied over a newer base may meet conflicts, so its effect
//! is no longer its stored bytes. It is re-applied under a session and the captured effect
//! stored in its place — otherwise its inverse would no longer restore the synced state on the
//! next rebase, and devices would drift apart.

use super::ClientError;
use super::conflicts::{Dropped, LocalConflictKind, record_conflict};
use super::report::Touched;
use crate::engine::apply::{ApplyError, ApplyOptions, apply_captured};
use crate::engine::changeset::Changeset;
use crate::engine::conflict::ConflictKind;
use crate::engine::decode::Op;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::policy::{Policy, PolicySet};
use rusqlite::Connection;

/// Re-applies a group of pending entries as one changeset under a session, and stores the
/// captured effect in place of the group (on its last entry; the others are removed). If the
/// group leaves foreign-key violations, entries are re-applied one by one and those that
/// still violate are dropped and recorded. Returns the number of local conflicts recorded.
pub(crate) fn redo_group(
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
        piece_bytes: None,
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
