//! The redo: a pending transaction re-applied over a newer base may meet conflicts, so its
//! effect is no longer its stored bytes. It is re-applied under a session and the captured
//! effect stored in its place — otherwise its inverse would no longer restore the synced state
//! on the next rebase, and devices would drift apart. Each transaction is redone on its own, so
//! it stays its own outbox entry; one that would leave foreign-key violations goes to the
//! rejected queue whole.

use super::ClientError;
use super::conflicts::{Dropped, LocalConflictKind, record_conflict};
use super::rejected::{self, RejectedBy, RejectedReason, Rejection};
use super::report::Touched;
use crate::engine::apply::{ApplyError, ApplyOptions, apply_captured_into};
use crate::engine::conflict::ConflictKind;
use crate::engine::decode::Op;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::spool::{self, Source, Spool, Spooled};
use crate::protocol::conflicts::Conflict;
use rusqlite::Connection;
use std::path::Path;

/// What redoing pending transactions did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redid {
    /// Row-level local conflicts recorded (a change dropped inside a kept transaction).
    pub conflicts: usize,
    /// Transactions moved to the rejected queue.
    pub rejected: usize,
}

/// Re-applies pending transactions one by one, in order, each under its own session, and
/// stores each one's captured effect in its place (possibly empty: the entry stays, to be
/// settled by the server like any other). A transaction that leaves foreign-key violations is
/// moved to the rejected queue whole.
pub(crate) fn redo_each(
    conn: &Connection,
    entries: &[OutboxEntry],
    scratch: Option<&Path>,
    now_ms: i64,
    touched: &mut Touched,
) -> Result<Redid, ClientError> {
    let mut done = Redid::default();
    for e in entries {
        let copy = outbox::spool_large(conn, e, scratch).map_err(ClientError::Io)?;
        let source = match &copy {
            Some(file) => file.source(),
            None => Source::Bytes(e.changeset.as_bytes()),
        };
        match redo_one(conn, source, scratch, now_ms) {
            Ok((effect, conflicts)) => {
                touched
                    .add_source(effect.source())
                    .map_err(ClientError::Io)?;
                outbox::replace_source(conn, e.seq, effect.source())?;
                done.conflicts += conflicts;
            }
            Err(RedoError::ForeignKey(conflicts)) => {
                rejected::move_to_queue(
                    conn,
                    e,
                    &Rejection {
                        reason: RejectedReason::ForeignKey,
                        by: RejectedBy::Rebase,
                        detail: "re-applying this transaction over the server's newer state \
                                 left foreign-key violations (a row it refers to was deleted \
                                 on another device)"
                            .into(),
                        batch_id: None,
                        log_seq: None,
                        conflicts: &conflicts,
                    },
                    now_ms,
                )?;
                done.rejected += 1;
            }
            Err(RedoError::Client(e)) => return Err(e),
        }
    }
    Ok(done)
}

enum RedoError {
    ForeignKey(Vec<Conflict>),
    Client(ClientError),
}

impl<E: Into<ClientError>> From<E> for RedoError {
    fn from(e: E) -> Self {
        RedoError::Client(e.into())
    }
}

/// Re-applies one transaction: local changes win over remote ones where SQLite allows
/// (DATA, CONFLICT → replace) so they stay visible until the server arbitrates; an update of a
/// row deleted remotely and a constraint violation are omitted and recorded.
fn redo_one(
    conn: &Connection,
    changeset: Source<'_>,
    scratch: Option<&Path>,
    now_ms: i64,
) -> Result<(Spooled, usize), RedoError> {
    let options = ApplyOptions {
        policies: PolicySet::uniform(Policy::Replace),
        fk_no_action: true,
        ignore_noop: true,
        invert: false,
        no_savepoint: false,
        piece_bytes: None,
    };
    if changeset.is_empty() {
        return Ok((Spooled::from_bytes(Vec::new()), 0));
    }
    let mut effect = match scratch {
        Some(dir) => Spool::new(dir, spool::DEFAULT_THRESHOLD),
        None => Spool::in_memory(),
    };
    let report = match apply_captured_into(conn, changeset, &options, None, &mut effect) {
        Ok(r) => r,
        Err(ApplyError::Aborted { report })
            if report
                .conflicts
                .last()
                .is_some_and(|c| c.kind == ConflictKind::ForeignKey) =>
        {
            return Err(RedoError::ForeignKey(
                report.conflicts.iter().map(Conflict::from).collect(),
            ));
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
            },
        )?;
        recorded += 1;
    }
    Ok((effect.finish().map_err(ClientError::Io)?, recorded))
}
