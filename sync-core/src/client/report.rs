//! What integrating or bootstrapping did, for the caller's report and for indexers: counts and
//! the rows that may have changed.

use crate::engine::changeset::Changeset;
use crate::engine::value::Value;
use crate::protocol::push::PushStatus;
use std::collections::HashSet;

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
    /// Changes dropped inside kept pending transactions, recorded as local conflicts.
    pub new_conflicts: usize,
    /// Pending transactions moved to the rejected queue (by the server, or by the rebase).
    pub new_rejected: usize,
    /// Rows that may have changed, deduplicated.
    pub touched: Vec<TouchedRow>,
}

/// Rows touched by a set of changesets, deduplicated.
#[derive(Default)]
pub(crate) struct Touched {
    seen: HashSet<String>,
    rows: Vec<TouchedRow>,
}

impl Touched {
    pub(crate) fn add(&mut self, changeset: &Changeset) {
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

    pub(crate) fn into_rows(self) -> Vec<TouchedRow> {
        self.rows
    }
}
