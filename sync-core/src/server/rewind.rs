//! Moving a server database through its own history: back to an earlier seq (the effects of
//! later entries undone), forward along another copy of the same history (its entries
//! applied), and the undo of one batch as a new entry everyone pulls. Restores and
//! point-in-time restores are built from the first two on a copy of the database; the
//! result starts a new lineage ([`super::lineage::new_lineage`]), so every device re-bases.

use super::ServerError;
use super::push::{PushBody, PushConfig, PushTarget};
use crate::engine::apply::{ApplyError, ApplyOptions, apply_source};
use crate::engine::changeset::Changeset;
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::schema::ShapeCache;
use crate::engine::spool::Source;
use crate::engine::tx::Tx;
use crate::protocol::push::{PushHeaders, PushResponse};
use rusqlite::{Connection, OptionalExtension, params};

/// The device name server-made entries (a revert) are logged under.
pub const SERVER_ORIGIN: &str = "sync-server";

fn exact() -> ApplyOptions {
    ApplyOptions {
        policies: PolicySet::uniform(Policy::Abort),
        // Effects carry their cascaded rows already.
        fk_no_action: true,
        ..ApplyOptions::default()
    }
}

fn apply_exactly(conn: &Connection, bytes: &[u8], what: &str) -> Result<(), ServerError> {
    match apply_source(conn, Source::Bytes(bytes), &exact(), None) {
        Ok(_) => Ok(()),
        Err(ApplyError::Aborted { report }) => Err(ServerError::internal(format!(
            "{what} does not apply exactly ({} conflict(s)): the database's content does not follow its log",
            report.conflicts.len()
        ))),
        Err(e) => Err(ServerError::from_apply(e)),
    }
}

fn effect_of(conn: &Connection, seq: i64) -> Result<Vec<u8>, ServerError> {
    conn.prepare_cached("SELECT effect FROM _sync_log WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?
        .ok_or(ServerError::NoSuchEntry { seq })
}

/// Rewinds the database to `seq`, in one transaction: the effects of the entries after it are
/// undone, newest first, and those entries leave the log with their chain rows, idempotency
/// records and conflict records (a device that pushed one of them pushes it again after it
/// re-bases, and it is applied anew). `seq` must be retained (at or after `oldest_seq`).
pub fn rewind(conn: &Connection, seq: i64) -> Result<(), ServerError> {
    let tx = Tx::begin(conn)?;
    let b = super::bounds(conn)?;
    if seq < b.oldest_seq || seq > b.head_seq {
        return Err(ServerError::BadRequest(format!(
            "seq {seq} is not in the retained log ({}..={})",
            b.oldest_seq, b.head_seq
        )));
    }
    for s in (seq + 1..=b.head_seq).rev() {
        let effect = effect_of(conn, s)?;
        if !effect.is_empty() {
            let undo = Changeset::from_bytes(effect)
                .invert()
                .map_err(ServerError::internal)?;
            apply_exactly(conn, undo.as_bytes(), &format!("the undo of entry {s}"))?;
        }
    }
    for table in [
        "_sync_log",
        "_sync_chain",
        "_sync_batches",
        "_sync_conflicts",
    ] {
        conn.execute(&format!("DELETE FROM {table} WHERE seq > ?1"), [seq])?;
    }
    super::set_meta(conn, "head_seq", seq)?;
    tx.commit()?;
    Ok(())
}

/// Rolls the database forward to `seq` along `from`, a copy of the same history that goes
/// further (the live database, for a point-in-time restore from a backup): each entry after
/// this database's head is applied exactly and copied with its chain row, idempotency records
/// and conflict records. Refused unless `from` holds this database's head entry with the same
/// chain value (same history) and every entry up to `seq`.
pub fn roll_forward(conn: &Connection, from: &Connection, seq: i64) -> Result<(), ServerError> {
    let tx = Tx::begin(conn)?;
    let head = super::meta(conn, "head_seq")?;
    let ours = super::lineage::at(conn, head)?;
    let theirs = super::lineage::at(from, head)?;
    if ours.map(|t| t.chain) != theirs.map(|t| t.chain) || ours.is_none() {
        return Err(ServerError::BadRequest(format!(
            "cannot go forward to seq {seq}: the log does not continue this copy's history at seq {head} (another history, or compacted)"
        )));
    }
    let from_head = super::meta(from, "head_seq")?;
    if seq > from_head {
        return Err(ServerError::BadRequest(format!(
            "seq {seq} is past the log's head {from_head}"
        )));
    }
    for s in head + 1..=seq {
        let effect = effect_of(from, s)?;
        if !effect.is_empty() {
            apply_exactly(conn, &effect, &format!("entry {s}"))?;
        }
        copy_rows(from, conn, s)?;
    }
    super::set_meta(conn, "head_seq", seq.max(head))?;
    tx.commit()?;
    Ok(())
}

/// Copies the log row, chain row, idempotency records and conflict records of entry `seq`.
fn copy_rows(from: &Connection, to: &Connection, seq: i64) -> Result<(), ServerError> {
    let (device, batch_id, status, at_ms, effect): (String, String, i64, i64, Vec<u8>) = from
        .query_row(
            "SELECT device, batch_id, status, at_ms, effect FROM _sync_log WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    to.execute(
        "INSERT INTO _sync_log(seq, device, batch_id, status, at_ms, effect) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![seq, device, batch_id, status, at_ms, effect],
    )?;
    let (chain, sum): (i64, Option<Vec<u8>>) = from.query_row(
        "SELECT chain, sum FROM _sync_chain WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    to.execute(
        "INSERT INTO _sync_chain(seq, chain, sum) VALUES (?1, ?2, ?3)",
        params![seq, chain, sum],
    )?;
    let mut batches =
        from.prepare("SELECT device, batch_id, response FROM _sync_batches WHERE seq = ?1")?;
    for row in batches.query_map([seq], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (d, b, resp) = row?;
        to.execute(
            "INSERT OR REPLACE INTO _sync_batches(device, batch_id, seq, response) VALUES (?1, ?2, ?3, ?4)",
            params![d, b, seq, resp],
        )?;
    }
    let mut conflicts = from.prepare(
        "SELECT batch_id, device, at_ms, record, tx FROM _sync_conflicts WHERE seq = ?1 ORDER BY id",
    )?;
    for row in conflicts.query_map([seq], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })? {
        let (b, d, at, record, txid) = row?;
        to.execute(
            "INSERT INTO _sync_conflicts(seq, batch_id, device, at_ms, record, tx) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![seq, b, d, at, record, txid],
        )?;
    }
    Ok(())
}

/// The newest seq whose entry was logged at or before `at_ms` (0 when none was), among the
/// retained entries.
pub fn seq_at_time(conn: &Connection, at_ms: i64) -> Result<i64, ServerError> {
    Ok(conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM _sync_log WHERE at_ms <= ?1",
        [at_ms],
        |r| r.get(0),
    )?)
}

/// Undoes the batch logged at `seq` by applying the inverse of its effect as a new log entry
/// (origin [`SERVER_ORIGIN`], batch id `batch_id`), so every device pulls the undo like any
/// change. A row changed again since is kept as it is now (the inverse's change to it is
/// omitted) and reported as a conflict in the answer.
pub fn revert(
    conn: &Connection,
    seq: i64,
    batch_id: &str,
    now_ms: i64,
) -> Result<PushResponse, ServerError> {
    let effect = effect_of(conn, seq)?;
    let undo = if effect.is_empty() {
        Changeset::default()
    } else {
        Changeset::from_bytes(effect)
            .invert()
            .map_err(ServerError::internal)?
    };
    if undo.is_empty() {
        return Err(ServerError::BadRequest(format!(
            "entry {seq} changed nothing: there is nothing to revert"
        )));
    }
    let shapes = ShapeCache::new();
    let headers = PushHeaders {
        batch_id: batch_id.to_string(),
        cursor: super::meta(conn, "head_seq")?,
        schema_version: super::schema_version(conn)?,
        lineage: None,
        chain: None,
    };
    super::push::push(
        PushTarget {
            conn,
            shapes: &shapes,
            scratch: None,
        },
        SERVER_ORIGIN,
        &headers,
        PushBody::Changeset(Source::Bytes(undo.as_bytes())),
        &PushConfig {
            policies: PolicySet::uniform(Policy::Omit),
        },
        now_ms,
    )
}
