//! The client's own state in `_sync_client` (cursor, schema version) and `_sync_inflight`
//! (the batch being pushed and, once answered, the server's answer).

use crate::engine::checksum::Checksum;
use crate::protocol::lineage::{Position, Tip};
use crate::protocol::push::{PushResponse, PushStatus};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn get_state(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM _sync_client WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

pub(crate) fn set_state(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_client(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// The last log seq integrated into the local database.
pub fn cursor(conn: &Connection) -> rusqlite::Result<i64> {
    get_state(conn, "cursor")
}

/// The schema version the local database was bootstrapped at.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    Ok(u32::try_from(get_state(conn, "schema_version")?).unwrap_or(0))
}

/// Records the schema version (after `init`).
pub fn set_schema_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    set_state(conn, "schema_version", i64::from(version))
}

/// The batch being pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Inflight {
    /// Its idempotency key.
    pub batch_id: String,
    /// Outbox entries with `seq <= through_seq` are in it.
    pub through_seq: i64,
    /// The seq the server answered with, once answered.
    pub acked_seq: Option<i64>,
    /// The status the server answered, once answered.
    pub acked_status: Option<PushStatus>,
    /// The whole answer, once answered: every transaction's outcome.
    pub answer: Option<PushResponse>,
}

/// The batch in flight, if any.
pub fn inflight(conn: &Connection) -> rusqlite::Result<Option<Inflight>> {
    conn.prepare_cached(
        "SELECT batch_id, through_seq, acked_seq, acked_status, answer FROM _sync_inflight \
         WHERE id = 1",
    )?
    .query_row([], |r| {
        Ok(Inflight {
            batch_id: r.get(0)?,
            through_seq: r.get(1)?,
            acked_seq: r.get(2)?,
            acked_status: r
                .get::<_, Option<String>>(3)?
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
            answer: r
                .get::<_, Option<String>>(4)?
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
        })
    })
    .optional()
}

pub(crate) fn clear_inflight(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM _sync_inflight", [])?;
    Ok(())
}

/// Where the local synced state stands: the cursor's lineage and chain value, and the content
/// checksum of the synced state (the app tables with every pending transaction undone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The cursor with its lineage and chain value; `None` when unknown (a copy made before
    /// lineages existed, or one whose server history changed and that awaits a snapshot).
    pub position: Option<Position>,
    /// The checksum of the synced state; `None` when unknown.
    pub sum: Option<Checksum>,
}

/// The synced state's position and checksum.
pub fn synced(conn: &Connection) -> rusqlite::Result<Synced> {
    let lineage = get_state(conn, "lineage")?;
    let position = (lineage != 0)
        .then(|| -> rusqlite::Result<Position> {
            Ok(Position {
                lineage,
                seq: cursor(conn)?,
                chain: get_state(conn, "chain")?,
            })
        })
        .transpose()?;
    let sum = if get_state(conn, "sum_known")? == 1 {
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = get_state(conn, &format!("sum{i}"))? as u64;
        }
        Some(Checksum(lanes))
    } else {
        None
    };
    Ok(Synced { position, sum })
}

/// Moves the cursor to `tip` (its seq, lineage and chain value) with the synced state's
/// checksum `sum`.
pub(crate) fn set_synced(
    conn: &Connection,
    tip: &Tip,
    sum: Option<Checksum>,
) -> rusqlite::Result<()> {
    set_state(conn, "cursor", tip.seq)?;
    set_state(conn, "rebase_due", 0)?;
    set_state(conn, "lineage", tip.lineage.0)?;
    set_state(conn, "chain", tip.chain.0)?;
    set_sum(conn, sum)
}

/// Records the synced state's checksum (`None`: unknown).
pub(crate) fn set_sum(conn: &Connection, sum: Option<Checksum>) -> rusqlite::Result<()> {
    set_state(conn, "sum_known", i64::from(sum.is_some()))?;
    for (i, lane) in sum.unwrap_or_default().0.iter().enumerate() {
        set_state(conn, &format!("sum{i}"), *lane as i64)?;
    }
    Ok(())
}

/// Forgets the cursor's history after the server said it changed (`lineage_mismatch`,
/// `chain_mismatch`): the position becomes unknown — so no push answer counts as clean until a
/// snapshot says where the new history stands — and an answered batch in flight counts as
/// unanswered again, since the answer belongs to the old history: it is pushed again (the
/// server answers from its idempotency records if it still has the batch) before the snapshot.
pub fn forget_position(conn: &Connection) -> rusqlite::Result<()> {
    crate::engine::savepoint::savepoint(conn, |conn| {
        set_state(conn, "lineage", 0)?;
        set_state(conn, "rebase_due", 1)?;
        set_sum(conn, None)?;
        forget_answer(conn)
    })
}

/// Forgets the server's answer to the batch in flight, which then counts as unanswered and is
/// pushed again with the same id: the answer named a log entry the server no longer has (its
/// log lost its tail), or the entry at that seq turned out to be another batch.
pub(crate) fn forget_answer(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE _sync_inflight SET acked_seq = NULL, acked_status = NULL, answer = NULL",
        [],
    )?;
    Ok(())
}

/// Whether the copy must re-base on a snapshot before it pulls again (its position was
/// forgotten: the server's history changed). Cleared by a bootstrap. Kept in the database, so
/// a sync cut short by a network failure does not pull into the wrong history next time.
pub fn rebase_due(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(get_state(conn, "rebase_due")? == 1)
}

/// Counts a repair (a re-bootstrap after the synced state was found to differ from the
/// server's) and returns the new count.
pub(crate) fn count_repair(conn: &Connection) -> rusqlite::Result<i64> {
    let n = get_state(conn, "repairs")? + 1;
    set_state(conn, "repairs", n)?;
    Ok(n)
}

/// Repairs made so far (see [`count_repair`]).
pub fn repairs(conn: &Connection) -> rusqlite::Result<i64> {
    get_state(conn, "repairs")
}
