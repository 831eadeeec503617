//! Rowid allocation: random 63-bit ids, or ranges leased from the server.
//!
//! Ranges are persisted in `_sync_rowid_ranges` (an internal table, never synced). The
//! allocator hands ids out from memory — the `sync_id()` SQL function runs inside a statement
//! and must not write — and [`Rowids::persist`] records the new positions inside the same
//! write transaction, so a committed row and the position past its id commit together. Ids
//! handed out in a transaction that rolls back are simply skipped: memory is always at or
//! past what is on disk, never behind it.

use crate::config::RowidStrategy;
use crate::error::{Error, ErrorKind, Result};
use rand::RngExt;
use rusqlite::{Connection, params};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: i64,
    next: i64,
    end: i64,
}

#[derive(Debug, Default)]
struct State {
    ranges: Vec<Range>,
    /// Ranges whose `next` moved since the last persist.
    dirty: bool,
}

/// The allocator for one database.
#[derive(Debug)]
pub(crate) struct Rowids {
    strategy: RowidStrategy,
    state: Mutex<State>,
    /// Set when `next` found no id left; read by the write path to name the failure.
    exhausted: AtomicBool,
}

/// Marker error returned by `sync_id()` when no leased id is left.
#[derive(Debug, thiserror::Error)]
#[error("no leased rowids are left: sync with the server to lease a new range")]
pub(crate) struct Exhausted;

impl Rowids {
    /// Loads the persisted ranges (creating the table if needed).
    pub(crate) fn load(conn: &Connection, strategy: RowidStrategy) -> Result<Arc<Rowids>> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _sync_rowid_ranges (
                 start INTEGER PRIMARY KEY,
                 next  INTEGER NOT NULL,
                 end   INTEGER NOT NULL
             );",
        )?;
        let ranges = conn
            .prepare(
                "SELECT start, next, end FROM _sync_rowid_ranges WHERE next < end ORDER BY start",
            )?
            .query_map([], |r| {
                Ok(Range {
                    start: r.get(0)?,
                    next: r.get(1)?,
                    end: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Rowids {
            strategy,
            state: Mutex::new(State {
                ranges,
                dirty: false,
            }),
            exhausted: AtomicBool::new(false),
        }))
    }

    /// The next id, from memory.
    pub(crate) fn next(&self) -> Result<i64, Exhausted> {
        match self.strategy {
            RowidStrategy::Random => Ok(random_id()),
            RowidStrategy::Ranges { .. } => {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let Some(range) = state.ranges.iter_mut().find(|r| r.next < r.end) else {
                    self.exhausted.store(true, Ordering::Relaxed);
                    return Err(Exhausted);
                };
                let id = range.next;
                range.next += 1;
                state.dirty = true;
                Ok(id)
            }
        }
    }

    /// Whether `next` ran out since the last call (and clears the flag).
    pub(crate) fn take_exhausted(&self) -> bool {
        self.exhausted.swap(false, Ordering::Relaxed)
    }

    /// Ids left in leased ranges (`None` for the random strategy).
    pub(crate) fn remaining(&self) -> Option<i64> {
        match self.strategy {
            RowidStrategy::Random => None,
            RowidStrategy::Ranges { .. } => {
                let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                Some(state.ranges.iter().map(|r| r.end - r.next).sum())
            }
        }
    }

    /// True when a new lease should be requested.
    pub(crate) fn wants_lease(&self) -> Option<i64> {
        match self.strategy {
            RowidStrategy::Ranges {
                lease_size,
                refill_below,
            } if self.remaining().unwrap_or(0) < refill_below => Some(lease_size),
            _ => None,
        }
    }

    /// Writes moved positions; call inside the write transaction that used the ids.
    pub(crate) fn persist(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.dirty {
            return Ok(());
        }
        let mut stmt =
            conn.prepare_cached("UPDATE _sync_rowid_ranges SET next = ?2 WHERE start = ?1")?;
        for r in &state.ranges {
            stmt.execute(params![r.start, r.next])?;
        }
        state.ranges.retain(|r| r.next < r.end);
        state.dirty = false;
        Ok(())
    }

    /// Records a new lease (in its own transaction).
    pub(crate) fn add_lease(&self, conn: &Connection, start: i64, end: i64) -> Result<()> {
        if start >= end {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("empty lease {start}..{end}"),
            ));
        }
        conn.execute(
            "INSERT OR IGNORE INTO _sync_rowid_ranges(start, next, end) VALUES (?1, ?1, ?2)",
            params![start, end],
        )?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.ranges.iter().any(|r| r.start == start) {
            state.ranges.push(Range {
                start,
                next: start,
                end,
            });
            state.ranges.sort_by_key(|r| r.start);
        }
        Ok(())
    }

    /// Registers `sync_id()` on the writer connection.
    pub(crate) fn register_function(self: &Arc<Self>, conn: &Connection) -> rusqlite::Result<()> {
        let me = Arc::clone(self);
        conn.create_scalar_function(
            "sync_id",
            0,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8,
            move |_ctx| {
                me.next()
                    .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
            },
        )
    }
}

/// A uniformly random id in 1..=i64::MAX.
pub(crate) fn random_id() -> i64 {
    loop {
        let id = (rand::rng().random::<u64>() >> 1) as i64;
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_positive() {
        for _ in 0..10_000 {
            assert!(random_id() > 0);
        }
    }

    #[test]
    fn ranges_hand_out_in_order_then_exhaust_and_persist() {
        let conn = Connection::open_in_memory().unwrap();
        let r = Rowids::load(
            &conn,
            RowidStrategy::Ranges {
                lease_size: 3,
                refill_below: 2,
            },
        )
        .unwrap();
        assert!(r.next().is_err());
        assert_eq!(r.wants_lease(), Some(3));
        r.add_lease(&conn, 10, 13).unwrap();
        assert_eq!(r.wants_lease(), None);
        assert_eq!(r.next().unwrap(), 10);
        assert_eq!(r.next().unwrap(), 11);
        assert_eq!(r.wants_lease(), Some(3));
        r.persist(&conn).unwrap();
        let again = Rowids::load(&conn, r.strategy).unwrap();
        assert_eq!(again.next().unwrap(), 12);
        assert!(again.next().is_err());
    }
}
