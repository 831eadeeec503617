//! Conflict records: every conflict met while applying pushes, with its resolution, in
//! `_sync_conflicts`. The `record` column holds the wire form ([`Conflict`]), which is what
//! `GET …/conflicts` serves; changing that form needs a migration of this column.

use super::ServerError;
use crate::engine::apply::ApplyReport;
use crate::protocol::conflicts::{Conflict, ConflictRecord};
use rusqlite::{Connection, params};

/// Records the conflicts one transaction (`tx`, the client's id for it) of a batch met.
pub(crate) fn record(
    conn: &Connection,
    seq: i64,
    device: &str,
    batch_id: &str,
    tx: i64,
    report: &ApplyReport,
    now_ms: i64,
) -> Result<(), ServerError> {
    if report.conflicts.is_empty() {
        return Ok(()); // (not even compiling the statement: most batches meet no conflict)
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _sync_conflicts(seq, batch_id, device, at_ms, record, tx) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for c in &report.conflicts {
        let json = serde_json::to_string(&Conflict::from(c)).map_err(ServerError::internal)?;
        stmt.execute(params![seq, batch_id, device, now_ms, json, tx])?;
    }
    Ok(())
}

/// Recorded conflicts with `id > after`, oldest first; the flag says whether more follow.
pub fn conflicts(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<(Vec<ConflictRecord>, bool), ServerError> {
    let limit = limit.clamp(1, crate::protocol::conflicts::MAX_LIMIT);
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, batch_id, device, at_ms, record, tx FROM _sync_conflicts \
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, (limit + 1) as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, seq, batch_id, device, at_ms, record, tx) = row?;
        let conflict = serde_json::from_str(&record)
            .map_err(|e| ServerError::internal(format!("conflict record {id} unreadable: {e}")))?;
        out.push(ConflictRecord {
            id,
            seq,
            batch_id,
            tx,
            device,
            at_ms,
            conflict,
        });
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}
