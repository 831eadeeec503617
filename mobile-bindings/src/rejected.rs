//! The rejected queue over the FFI: list, show, redo, discard.

use crate::call::guard;
use crate::database::SyncDatabase;
use crate::error::SyncError;
use crate::types::{BlockingRow, ChangeInfo, RejectedInfo};
use crate::value::SqlValue;

impl From<&sync_client::Rejected> for RejectedInfo {
    fn from(r: &sync_client::Rejected) -> Self {
        RejectedInfo {
            id: r.id,
            reason: r.reason.as_str().to_string(),
            by: r.by.as_str().to_string(),
            detail: r.detail.clone(),
            created_ms: r.created_ms,
            rejected_ms: r.rejected_ms,
            changes: r.changes as i64,
            blocking: r.conflicts.last().map(|c| BlockingRow {
                kind: c.kind.as_str().to_string(),
                table: c.table.clone(),
                pk: c.pk.clone(),
                current: c.current.clone(),
            }),
        }
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// Every rejected transaction, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedInfo>, SyncError> {
        guard(|| Ok(self.client()?.rejected()?.iter().map(Into::into).collect()))
    }

    /// The changes of one rejected transaction; `None` when there is no such id.
    pub fn rejected_changes(&self, id: i64) -> Result<Option<Vec<ChangeInfo>>, SyncError> {
        guard(|| {
            let Some(r) = self.client()?.rejected_transaction(id)? else {
                return Ok(None);
            };
            let changes = r
                .changeset
                .changes()
                .map(|c| {
                    let c = c.map_err(|e| SyncError::Internal {
                        reason: e.to_string(),
                    })?;
                    Ok(ChangeInfo {
                        table: c.table.clone(),
                        op: c.op.as_str().to_string(),
                        pk: c.pk_values(),
                        new: c
                            .new
                            .map(|row| row.into_iter().map(|v| v.map(SqlValue::from)).collect()),
                    })
                })
                .collect::<Result<Vec<_>, SyncError>>()?;
            Ok(Some(changes))
        })
    }

    /// Re-applies a rejected transaction as a new local write over the current state (pushed
    /// with the next sync) and removes it from the queue; returns how many conflicts with the
    /// current state were resolved in its favour or omitted. `Rejected` when it would still be
    /// rejected (it stays queued), `NotFound` for an unknown id.
    pub fn redo_rejected(&self, id: i64) -> Result<i64, SyncError> {
        guard(|| Ok(self.client()?.redo_rejected(id)?.conflicts.len() as i64))
    }

    /// Forgets a rejected transaction for good; false when there is no such id.
    pub fn discard_rejected(&self, id: i64) -> Result<bool, SyncError> {
        guard(|| Ok(self.client()?.discard_rejected(id)?))
    }
}
