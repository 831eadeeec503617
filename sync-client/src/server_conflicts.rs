//! Conflicts the server met while applying this device's own batches, as its push answers
//! reported them.
//!
//! The server resolves every conflict by its table's policy and records it on its side
//! (`GET …/conflicts`). A device whose change lost (first-write-wins), or whose random rowid
//! collided with another device's row, would otherwise never learn of it: its local state
//! converges to the server's silently. So the client keeps the conflicts of its own push
//! answers in `_sync_server_conflicts` (an internal table, never synced) and `status` shows
//! them.
//!
//! Recording happens on the writer just before the answer is settled, in its own transaction,
//! and is idempotent per (batch id, position in the answer): if the process dies in between,
//! the batch is still in flight, the retry gets the server's stored answer (same conflicts),
//! and nothing is recorded twice. A batch whose answer never arrives (its outcome learned from
//! the pulled log, which carries no conflicts) leaves no record here; the server's own records
//! still have it.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sync_core::apply::Conflict;
use sync_core::protocol::push::PushResponse;

/// One conflict the server reported for a batch this device pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConflict {
    /// Record id (increasing).
    pub id: i64,
    /// When the answer was received (ms since the Unix epoch).
    pub at_ms: i64,
    /// The pushed batch.
    pub batch_id: String,
    /// The batch's log seq on the server.
    pub seq: i64,
    /// The conflict and how the server resolved it (`replace`: this device's change won;
    /// `omit`: the server's row was kept; `abort`: the batch was rejected).
    #[serde(flatten)]
    pub conflict: Conflict,
}

/// Creates the table if missing. Idempotent.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_server_conflicts (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             batch_id TEXT    NOT NULL,
             idx      INTEGER NOT NULL,
             seq      INTEGER NOT NULL,
             at_ms    INTEGER NOT NULL,
             record   TEXT    NOT NULL,
             UNIQUE (batch_id, idx)
         );",
    )
}

/// Records the conflicts of a push answer; returns how many were new (a repeated answer
/// records nothing).
pub(crate) fn record(
    conn: &Connection,
    response: &PushResponse,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    if response.conflicts.is_empty() {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    let mut added = 0;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO _sync_server_conflicts(batch_id, idx, seq, at_ms, record)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (idx, conflict) in response.conflicts.iter().enumerate() {
            let record = serde_json::to_string(conflict).expect("a conflict serializes");
            added += stmt.execute(params![
                response.batch_id,
                idx as i64,
                response.seq,
                now_ms,
                record
            ])?;
        }
    }
    tx.commit()?;
    Ok(added)
}

/// Forgets the recorded conflicts with `id <= through_id`; returns how many were removed.
pub(crate) fn clear(conn: &Connection, through_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM _sync_server_conflicts WHERE id <= ?1")?
        .execute([through_id])
}

/// Every recorded conflict, oldest first.
pub(crate) fn list(conn: &Connection) -> rusqlite::Result<Vec<ServerConflict>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, batch_id, seq, record FROM _sync_server_conflicts ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let record: String = r.get(4)?;
        let conflict = serde_json::from_str(&record).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(ServerConflict {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            batch_id: r.get(2)?,
            seq: r.get(3)?,
            conflict,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::apply::{ConflictKind, Resolution};
    use sync_core::protocol::push::PushStatus;
    use sync_core::{Op, Value};

    #[test]
    fn a_repeated_answer_is_recorded_once() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        let response = PushResponse {
            v: 1,
            batch_id: "b1".into(),
            seq: 7,
            status: PushStatus::Applied,
            reason: None,
            clean: false,
            duplicate: false,
            changes: 1,
            conflicts: vec![Conflict {
                kind: ConflictKind::Conflict,
                table: "notes".into(),
                op: Some(Op::Insert),
                pk: vec![Value::Integer(5)],
                resolution: Resolution::Replace,
                current: None,
                fk_violations: None,
            }],
        };
        assert_eq!(record(&conn, &response, 1).unwrap(), 1);
        let again = PushResponse {
            duplicate: true,
            ..response.clone()
        };
        assert_eq!(record(&conn, &again, 2).unwrap(), 0);
        let all = list(&conn).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].batch_id, "b1");
        assert_eq!(all[0].seq, 7);
        assert_eq!(all[0].conflict, response.conflicts[0]);
    }
}
