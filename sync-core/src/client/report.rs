//! What integrating or bootstrapping did, for the caller's report and for indexers: counts and
//! the rows that may have changed.

use crate::engine::changeset::Changeset;
use crate::engine::decode;
use crate::engine::spool::Source;
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
    /// Rows that may have changed, deduplicated (none listed when more than
    /// [`MAX_TOUCHED_ROWS`] did: see `touched_tables`).
    pub touched: Vec<TouchedRow>,
    /// Tables with rows that may have changed.
    pub touched_tables: Vec<String>,
}

/// Rows kept in a report at most; past it only the tables are (a bulk import touches
/// millions of rows, and a caller refreshing views wants tables then).
pub const MAX_TOUCHED_ROWS: usize = 10_000;

/// Rows touched by a set of changesets, deduplicated, up to [`MAX_TOUCHED_ROWS`]; every
/// touched table in any case.
#[derive(Default)]
pub(crate) struct Touched {
    seen: HashSet<String>,
    rows: Vec<TouchedRow>,
    tables: std::collections::BTreeSet<String>,
    truncated: bool,
}

impl Touched {
    pub(crate) fn add(&mut self, changeset: &Changeset) {
        for change in changeset.changes().flatten() {
            self.add_change(change);
        }
    }

    /// [`Touched::add`] for a changeset in memory or in a file, read in pieces.
    pub(crate) fn add_source(&mut self, source: Source<'_>) -> std::io::Result<()> {
        match source.as_bytes() {
            Some(bytes) => {
                for change in decode::changes(bytes).flatten() {
                    self.add_change(change);
                }
            }
            None => {
                let _ = decode::validate_pieces(source.reader(), decode::STREAM_WINDOW, |p| {
                    for change in decode::changes(p).flatten() {
                        self.add_change(change);
                    }
                    Ok::<_, std::io::Error>(())
                })?;
            }
        }
        Ok(())
    }

    fn add_change(&mut self, change: decode::Change) {
        if !self.tables.contains(&change.table) {
            self.tables.insert(change.table.clone());
        }
        if self.truncated {
            return;
        }
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
            if self.rows.len() == MAX_TOUCHED_ROWS {
                self.truncated = true;
                self.rows.clear();
                self.seen.clear();
                return;
            }
            self.rows.push((change.table, pk));
        }
    }

    /// The rows (empty when there were more than [`MAX_TOUCHED_ROWS`]) and the tables.
    pub(crate) fn into_parts(self) -> (Vec<TouchedRow>, Vec<String>) {
        (self.rows, self.tables.into_iter().collect())
    }
}
