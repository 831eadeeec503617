//! The rejected queue on the façade: local transactions the server (or a rebase) could not
//! keep, each with its changeset, reason and the row that blocked it — to list, show, redo as a
//! new write over the current state, or discard ([`sync_core::client::rejected`]).

use crate::client::SyncClient;
use crate::error::Result;
use sync_core::client::rejected;

pub use sync_core::client::rejected::{Redone, Rejected, RejectedBy, RejectedReason};

impl SyncClient {
    /// Every rejected transaction, oldest first (also in [`crate::Status::rejected`]).
    pub fn rejected(&self) -> Result<Vec<Rejected>> {
        self.read(|c| Ok(rejected::list(c)?))
    }

    /// One rejected transaction, with its changeset; `None` when there is no such id.
    pub fn rejected_transaction(&self, id: i64) -> Result<Option<Rejected>> {
        self.read(|c| Ok(rejected::get(c, id)?))
    }

    /// Re-applies a rejected transaction as a new local write over the current state (pushed
    /// with the next sync) and removes it from the queue. Conflicts with the current state are
    /// resolved in the redone change's favour where SQLite allows, and returned. If it would
    /// still leave foreign-key violations, nothing changes and it stays queued
    /// ([`crate::ErrorKind::Rejected`]); an unknown id is [`crate::ErrorKind::NotFound`].
    pub fn redo_rejected(&self, id: i64) -> Result<Redone> {
        let redone = self
            .inner
            .writer
            .run(move |conn| rejected::redo(conn, id))??;
        if redone.outbox_seq.is_some() {
            self.notify_local_write();
        }
        Ok(redone)
    }

    /// Forgets a rejected transaction for good; false when there is no such id.
    pub fn discard_rejected(&self, id: i64) -> Result<bool> {
        Ok(self
            .inner
            .writer
            .run(move |conn| rejected::discard(conn, id))??)
    }
}
