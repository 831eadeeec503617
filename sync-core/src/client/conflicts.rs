//! The one home of conflicts on a device, both kinds recorded in the transaction that settles
//! what caused them:
//!
//! - **local conflicts** (`_sync_local_conflicts`): changes inside kept pending transactions
//!   that could not be kept when the transaction was re-applied over a newer base — an update
//!   of a row deleted remotely, a constraint the newer base violates. (A whole transaction that
//!   cannot be kept goes to the rejected queue, [`super::rejected`], with its changeset.)
//! - **server conflicts** (`_sync_server_conflicts`): the conflicts the server met and resolved
//!   by policy while applying this device's own batches, as its push answers reported them
//!   (a change of ours that lost, a rowid collision). They are recorded together with the
//!   answer they came in, so a repeated answer (a retry after a crash) records nothing new.

use crate::engine::changeset::Changeset;
use crate::engine::decode::Op;
use crate::engine::value::Value;
use crate::names::named_enum;
use crate::protocol::conflicts::Conflict;
use crate::protocol::push::PushResponse;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// Creates both tables if missing. Idempotent.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_local_conflicts (
             id         INTEGER PRIMARY KEY AUTOINCREMENT,
             at_ms      INTEGER NOT NULL,
             kind       TEXT    NOT NULL,
             table_name TEXT    NOT NULL,
             op         TEXT,
             pk         TEXT    NOT NULL,
             detail     TEXT    NOT NULL,
             changeset  BLOB
         );
         CREATE TABLE IF NOT EXISTS _sync_server_conflicts (
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

named_enum! {
    /// Why a pending change was not kept.
    pub enum LocalConflictKind {
        /// An UPDATE of a row another device deleted.
        RowDeletedRemotely = "row_deleted_remotely",
        /// Re-applying violated a UNIQUE/CHECK/NOT NULL constraint.
        Constraint = "constraint",
        /// Re-applying left foreign-key violations (a parent was deleted remotely); the whole
        /// pending changeset was dropped.
        ForeignKey = "foreign_key",
        /// The server rejected the batch (policy or foreign keys); its changes were dropped.
        BatchRejected = "batch_rejected",
    }
}

/// A pending change that could not be kept, as recorded for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalConflict {
    /// Record id.
    pub id: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Why.
    pub kind: LocalConflictKind,
    /// Table (empty when a whole changeset was dropped).
    pub table: String,
    /// The dropped change's operation, when known.
    pub op: Option<Op>,
    /// Key of the row, when known.
    pub pk: Vec<Value>,
    /// Explanation.
    pub detail: String,
    /// The dropped changes, for a whole dropped changeset (so nothing vanishes silently).
    #[serde(skip)]
    pub changeset: Option<Changeset>,
}

/// A local conflict about to be recorded.
pub(crate) struct Dropped<'a> {
    pub(crate) kind: LocalConflictKind,
    pub(crate) table: &'a str,
    pub(crate) op: Option<Op>,
    pub(crate) pk: &'a [Value],
    pub(crate) detail: &'a str,
}

pub(crate) fn record_conflict(
    conn: &Connection,
    now_ms: i64,
    d: Dropped<'_>,
) -> rusqlite::Result<()> {
    let Dropped {
        kind,
        table,
        op,
        pk,
        detail,
    } = d;
    let pk = serde_json::to_string(pk).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO _sync_local_conflicts(at_ms, kind, table_name, op, pk, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_ms,
        kind.as_str(),
        table,
        op.map(Op::as_str),
        pk,
        detail,
    ])?;
    Ok(())
}

/// Forgets the local conflicts with `id <= through_id` (the app has shown or handled them),
/// changesets included; later ones stay. Returns how many were removed. Ids are never reused.
pub fn clear_local_conflicts(conn: &Connection, through_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM _sync_local_conflicts WHERE id <= ?1")?
        .execute([through_id])
}

/// How many conflicts are recorded, local and server ones together.
pub fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM _sync_local_conflicts)
              + (SELECT count(*) FROM _sync_server_conflicts)",
    )?
    .query_row([], |r| r.get::<_, i64>(0))
    .map(|n| n.max(0) as u64)
}

/// Local conflicts with `id > after`, oldest first.
pub fn local_conflicts(conn: &Connection, after: i64) -> rusqlite::Result<Vec<LocalConflict>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, table_name, op, pk, detail, changeset
         FROM _sync_local_conflicts WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([after], |r| {
        let kind: String = r.get(2)?;
        let op: Option<String> = r.get(4)?;
        let pk: String = r.get(5)?;
        Ok(LocalConflict {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            kind: kind.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            table: r.get(3)?,
            op: op.map(|o| o.parse()).transpose().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            pk: serde_json::from_str(&pk).unwrap_or_default(),
            detail: r.get(6)?,
            changeset: r.get::<_, Option<Vec<u8>>>(7)?.map(Changeset::from_bytes),
        })
    })?;
    rows.collect()
}

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

/// Records the conflicts the server resolved in the applied transactions of a push answer
/// (the wire form, as received) inside the caller's transaction; returns how many were new (a
/// repeated answer records nothing). A rejected transaction's conflicts go with it to the
/// rejected queue ([`super::rejected`]).
pub(crate) fn record_server(
    conn: &Connection,
    response: &PushResponse,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let applied = response
        .transactions
        .iter()
        .filter(|t| t.applied())
        .flat_map(|t| t.conflicts.iter());
    let mut applied = applied.peekable();
    if applied.peek().is_none() {
        return Ok(0);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO _sync_server_conflicts(batch_id, idx, seq, at_ms, record)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut added = 0;
    for (idx, conflict) in applied.enumerate() {
        let record = serde_json::to_string(conflict).expect("a conflict serializes");
        added += stmt.execute(params![
            response.batch_id,
            idx as i64,
            response.seq,
            now_ms,
            record
        ])?;
    }
    Ok(added)
}

/// Forgets the server conflicts with `id <= through_id`; returns how many were removed.
pub fn clear_server_conflicts(conn: &Connection, through_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM _sync_server_conflicts WHERE id <= ?1")?
        .execute([through_id])
}

/// Every recorded server conflict, oldest first.
pub fn server_conflicts(conn: &Connection) -> rusqlite::Result<Vec<ServerConflict>> {
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
    use crate::engine::conflict::{ConflictKind, Resolution};
    use crate::protocol::push::{PushStatus, RejectReason, TxOutcome};

    #[test]
    fn a_repeated_answer_is_recorded_once() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        let response = PushResponse {
            v: 1,
            batch_id: "b1".into(),
            seq: 7,
            status: PushStatus::Partial,
            clean: false,
            duplicate: false,
            changes: 1,
            transactions: vec![
                TxOutcome {
                    id: 1,
                    reason: None,
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
                },
                // A rejected transaction's conflicts go with it to the rejected queue.
                TxOutcome {
                    id: 2,
                    reason: Some(RejectReason::Policy),
                    changes: 1,
                    conflicts: vec![Conflict {
                        kind: ConflictKind::Data,
                        table: "notes".into(),
                        op: Some(Op::Update),
                        pk: vec![Value::Integer(6)],
                        resolution: Resolution::Abort,
                        current: None,
                        fk_violations: None,
                    }],
                },
            ],
            tip: None,
        };
        assert_eq!(record_server(&conn, &response, 1).unwrap(), 1);
        let again = PushResponse {
            duplicate: true,
            ..response.clone()
        };
        assert_eq!(record_server(&conn, &again, 2).unwrap(), 0);
        let all = server_conflicts(&conn).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].batch_id, "b1");
        assert_eq!(all[0].seq, 7);
        assert_eq!(all[0].conflict, response.transactions[0].conflicts[0]);
    }

    #[test]
    fn a_stored_kind_that_does_not_parse_is_an_error_not_a_default() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        conn.execute(
            "INSERT INTO _sync_local_conflicts(at_ms, kind, table_name, op, pk, detail)
             VALUES (1, 'no_such_kind', 't', NULL, '[]', 'x')",
            [],
        )
        .unwrap();
        assert!(local_conflicts(&conn, 0).is_err());
    }
}
