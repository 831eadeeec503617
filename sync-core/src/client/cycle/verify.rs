//! The cycle's checks that the local synced state is the server's: the position a pull claims
//! (lineage and chain value at the cursor), a history the server says changed, the content
//! checksum compared after a pull — or, with nothing to pull, recomputed when a full check is
//! due — and the repair when any of them fails: a snapshot, pending transactions kept.

use super::{Cycle, CycleError, Phase};
use crate::client::ClientError;
use crate::client::state;
use crate::engine::checksum::{self, Checksum};
use crate::engine::tx::Tx;
use crate::protocol::error::ErrorCode;
use crate::protocol::lineage::Position;
use rusqlite::Connection;

impl Cycle {
    /// The position the next pull claims: after the pages pulled but not yet integrated, or
    /// the cursor's.
    pub(super) fn claimed(&self, conn: &Connection) -> Result<Option<Position>, CycleError> {
        if !self.entries.is_empty() {
            return Ok(self.tip.map(|t| t.position()));
        }
        Ok(state::synced(conn)?.position)
    }

    /// Where the cycle goes instead of pulling, if anywhere: the position was forgotten (the
    /// server's history changed), so a snapshot comes first — or, with no bootstrap left in
    /// this sync, the sync ends (a pull now would land in the wrong history).
    pub(super) fn rebase_first(&mut self, conn: &Connection) -> Result<Option<Phase>, CycleError> {
        if !self.entries.is_empty() || !state::rebase_due(conn)? {
            return Ok(None);
        }
        if self.bootstraps >= self.config.max_bootstraps {
            return Ok(Some(Phase::Done));
        }
        self.bootstraps += 1;
        self.snapshot_reason = "lineage";
        Ok(Some(Phase::Bootstrap))
    }

    /// Why the snapshot the cycle asks for ([`super::Step::Snapshot`]) is wanted, for the
    /// server's metrics: `cursor` (out of the log), `lineage`, `chain` (the server's history
    /// changed), `checksum` or `diverged` (a repair).
    pub fn snapshot_reason(&self) -> &'static str {
        self.snapshot_reason
    }

    /// The server says the cursor is in another history: forget the position (and the answer
    /// of a batch in flight, which belongs to the old history), then bootstrap.
    pub(super) fn history_changed(
        &mut self,
        conn: &Connection,
        code: ErrorCode,
    ) -> Result<(), CycleError> {
        state::forget_position(conn)?;
        self.abandon_upgrade();
        self.entries.clear();
        self.entry_bytes = 0;
        self.large.clear();
        self.fetching = None;
        self.uploading = None;
        self.tip = None;
        self.bootstraps += 1;
        self.snapshot_reason = if code == ErrorCode::LineageMismatch {
            "lineage"
        } else {
            "chain"
        };
        self.report.divergences.push(format!(
            "the server's history changed ({code}): bootstrapping"
        ));
        self.phase = Phase::Bootstrap;
        Ok(())
    }

    /// Integrating found the synced state is not the server's: count the repair, report it,
    /// bootstrap.
    pub(super) fn repair(&mut self, conn: &Connection, e: ClientError) -> Result<(), CycleError> {
        self.snapshot_reason = match e {
            ClientError::ChecksumMismatch { .. } => "checksum",
            _ => "diverged",
        };
        state::count_repair(conn)?;
        self.checked = true;
        self.bootstraps += 1;
        self.report.repaired = true;
        self.report.divergences.push(e.to_string());
        self.phase = Phase::Bootstrap;
        Ok(())
    }

    /// Nothing was pulled: if a full check is due, recompute the synced state's checksum and
    /// compare it with the server's at the cursor; then the round ends.
    pub(super) fn verify_idle(&mut self, conn: &Connection) -> Result<(), CycleError> {
        self.phase = Phase::EndOfRound;
        // A copy that does not know its position yet (made before positions existed, or moved
        // by a bare integrate) learns it from a page at its cursor.
        if let Some(tip) = self.tip
            && tip.seq == state::cursor(conn)?
            && state::synced(conn)?.position.is_none()
            && !state::rebase_due(conn)?
        {
            let sum = state::synced(conn)?.sum;
            state::set_synced(conn, &tip, sum)?;
        }
        // Nothing more to pull, and the server's head is below the seq it answered our batch
        // with: its log lost that tail. The batch counts as unanswered and is pushed again.
        if let Some(head) = self.head_seq
            && state::inflight(conn)?
                .and_then(|f| f.acked_seq)
                .is_some_and(|a| a > head)
        {
            state::forget_answer(conn)?;
            self.report.divergences.push(format!(
                "the server's log lost the entry of our batch (head {head}): pushing it again"
            ));
        }
        if !self.config.full_check || self.checked {
            return Ok(());
        }
        let expected = match self.tip.and_then(|t| t.sum) {
            Some(sum)
                if self
                    .tip
                    .is_some_and(|t| t.seq == state::cursor(conn).unwrap_or(-1)) =>
            {
                sum
            }
            _ => return Ok(()),
        };
        self.checked = true;
        let found = synced_sum(conn, self.config.scratch_dir.as_deref())?;
        if found == expected {
            state::set_sum(conn, Some(found))?;
            return Ok(());
        }
        let seq = state::cursor(conn)?;
        if self.bootstraps >= self.config.max_bootstraps {
            return Err(ClientError::ChecksumMismatch {
                seq,
                expected,
                found,
            }
            .into());
        }
        self.repair(
            conn,
            ClientError::ChecksumMismatch {
                seq,
                expected,
                found,
            },
        )
    }
}

/// The checksum of the synced state — the app tables with every pending transaction undone —
/// recomputed from the tables, inside a transaction that is rolled back: nothing changes.
pub fn synced_sum(
    conn: &Connection,
    scratch: Option<&std::path::Path>,
) -> Result<Checksum, ClientError> {
    let tx = Tx::begin(conn)?;
    let pending = crate::engine::outbox::entries(conn)?;
    let mut touched = crate::client::report::Touched::default();
    crate::client::integrate::undo_all(conn, &pending, scratch, &mut touched)?;
    let sum = checksum::table_sum(conn)?;
    drop(tx); // rolled back
    Ok(sum)
}
