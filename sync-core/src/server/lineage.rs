//! The database's lineage, the log's hash chain and the content checksum at each log position
//! (see [`crate::protocol::lineage`]).
//!
//! `_sync_meta` holds `lineage`, a random id replaced by [`new_lineage`] whenever the history
//! is rewound. `_sync_chain` holds, per seq from the oldest retained position (`oldest_seq`,
//! whose row survives compaction as the base) to the head, the chain value and the checksum
//! of the app tables after that entry. The chain value of entry `n` is the first 8 bytes of
//! SHA-256 over the value of `n - 1`, `n`, the entry's status, origin, batch id and effect.

use super::ServerError;
use crate::engine::checksum::{self, Checksum};
use crate::engine::spool::Source;
use crate::protocol::lineage::{Hex64, Position, Tip};
use crate::protocol::push::PushStatus;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::io::Read;

/// Creates `_sync_chain` and the lineage if missing. A database logged before chains existed
/// gets its chain computed once from the retained entries (from 0 at `oldest_seq`) and the
/// checksum of its current content at the head (the checksums of older entries stay unknown).
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    install_chain(conn).map_err(|e| match e {
        ServerError::Sqlite(e) => e,
        other => rusqlite::Error::UserFunctionError(Box::new(other)),
    })
}

fn install_chain(conn: &Connection) -> Result<(), ServerError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_chain (
             seq   INTEGER PRIMARY KEY,
             chain INTEGER NOT NULL,
             sum   BLOB
         );",
    )?;
    if super::meta(conn, "lineage")? == 0 {
        new_lineage(conn)?;
    }
    let has_base: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM _sync_chain)", [], |r| {
        r.get(0)
    })?;
    if has_base {
        return Ok(());
    }
    let b = super::bounds(conn)?;
    let head_sum = checksum::table_sum(conn).map_err(ServerError::internal)?;
    let sum_at = |seq: i64| (seq == b.head_seq).then_some(head_sum);
    insert(conn, b.oldest_seq, 0, sum_at(b.oldest_seq))?;
    let mut chain = 0;
    let entries: Vec<(i64, String, String, i64)> = conn
        .prepare("SELECT seq, device, batch_id, status FROM _sync_log WHERE seq > ?1 ORDER BY seq")?
        .query_map([b.oldest_seq], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (seq, device, batch_id, status) in entries {
        let blob = conn.blob_open(rusqlite::MAIN_DB, "_sync_log", "effect", seq, true)?;
        let status = PushStatus::from_code(u8::try_from(status).unwrap_or(u8::MAX))
            .ok_or_else(|| ServerError::internal(format!("log entry {seq}: unknown status")))?;
        chain = next_chain(chain, seq, status, &device, &batch_id, blob)?;
        insert(conn, seq, chain, sum_at(seq))?;
    }
    Ok(())
}

/// Gives the database a new random lineage (after its history was rewound). Run inside the
/// transaction that rewinds it.
pub fn new_lineage(conn: &Connection) -> rusqlite::Result<i64> {
    // SQLite's PRNG is seeded from the OS; never 0 (0 means "none").
    let id: i64 = conn.query_row("SELECT (random() & 9223372036854775807) | 1 ", [], |r| {
        r.get(0)
    })?;
    super::set_meta(conn, "lineage", id)?;
    Ok(id)
}

/// The database's lineage.
pub fn lineage(conn: &Connection) -> rusqlite::Result<i64> {
    super::meta(conn, "lineage")
}

fn insert(conn: &Connection, seq: i64, chain: i64, sum: Option<Checksum>) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_chain(seq, chain, sum) VALUES (?1, ?2, ?3)")?
        .execute(params![seq, chain, sum.map(|s| s.to_bytes().to_vec())])?;
    Ok(())
}

/// The chain value of an entry, from the previous one's.
pub(crate) fn next_chain(
    prev: i64,
    seq: i64,
    status: PushStatus,
    origin: &str,
    batch_id: &str,
    mut effect: impl Read,
) -> Result<i64, ServerError> {
    let mut h = Sha256::new();
    h.update(prev.to_be_bytes());
    h.update(seq.to_be_bytes());
    h.update([status.code()]);
    for s in [origin, batch_id] {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = effect.read(&mut buf).map_err(ServerError::Io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = h.finalize();
    Ok(i64::from_be_bytes(digest[..8].try_into().expect("8 bytes")))
}

/// Records log entry `seq` (just appended, in the push's transaction): its chain value from
/// the previous entry's, and the checksum after it — the previous checksum plus `delta`, or
/// recomputed from the tables when the previous one is unknown. Returns the tip there.
pub(crate) fn record(
    conn: &Connection,
    entry: (i64, PushStatus, &str, &str),
    effect: Source<'_>,
    delta: Checksum,
) -> Result<Tip, ServerError> {
    let (seq, status, origin, batch_id) = entry;
    let prev = at(conn, seq - 1)?
        .ok_or_else(|| ServerError::internal(format!("no chain value at seq {}", seq - 1)))?;
    let chain = next_chain(prev.chain.0, seq, status, origin, batch_id, effect.reader())?;
    let sum = match prev.sum {
        Some(mut s) => {
            s.add(&delta);
            Some(s)
        }
        // Unknown before (a migration ran, or a log from before checksums): the tables hold
        // the state after this entry now, so it is computed once from them.
        None => Some(checksum::table_sum(conn).map_err(ServerError::internal)?),
    };
    insert(conn, seq, chain, sum)?;
    Ok(Tip {
        lineage: prev.lineage,
        seq,
        chain: Hex64(chain),
        sum,
    })
}

/// The tip at `seq`, if the chain has it (it has every seq from `oldest_seq` to the head).
pub fn at(conn: &Connection, seq: i64) -> Result<Option<Tip>, ServerError> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT chain, sum FROM _sync_chain WHERE seq = ?1")?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((chain, sum)) = row else {
        return Ok(None);
    };
    let sum = match sum {
        None => None,
        Some(b) => Some(Checksum::from_bytes(&b).ok_or_else(|| {
            ServerError::internal(format!("the checksum at seq {seq} is damaged"))
        })?),
    };
    Ok(Some(Tip {
        lineage: Hex64(lineage(conn)?),
        seq,
        chain: Hex64(chain),
        sum,
    }))
}

/// Checks a client's claimed position: its lineage must be this database's, and where the
/// chain has its seq, its chain value must match. A seq outside the retained log is left to
/// the caller (`cursor_too_old`, `cursor_ahead`). Fields the client did not send are not
/// checked (a plain HTTP client, an older library).
pub fn check(
    conn: &Connection,
    seq: i64,
    lineage: Option<Hex64>,
    chain: Option<Hex64>,
) -> Result<(), ServerError> {
    if let Some(client) = lineage {
        let server = Hex64(self::lineage(conn)?);
        if client != server {
            return Err(ServerError::LineageMismatch { client, server });
        }
    }
    if let Some(chain) = chain
        && let Some(tip) = at(conn, seq)?
        && tip.chain != chain
    {
        return Err(ServerError::ChainMismatch { seq });
    }
    Ok(())
}

/// Drops chain rows below `oldest` (compaction); the row at `oldest` stays as the base.
pub(crate) fn compact(conn: &Connection, oldest: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM _sync_chain WHERE seq < ?1", [oldest])?;
    Ok(())
}

/// Makes the chain start again at `seq` (the head of a database whose log was rewound or
/// emptied): every row is dropped and `seq` gets chain value 0 and the checksum of the
/// current content. Run in the transaction that rewinds.
pub fn restart(conn: &Connection, seq: i64) -> Result<(), ServerError> {
    conn.execute("DELETE FROM _sync_chain", [])?;
    let sum = checksum::table_sum(conn).map_err(ServerError::internal)?;
    insert(conn, seq, 0, Some(sum))?;
    Ok(())
}

/// Forgets the checksum at the head (after a migration, which may change rows without a log
/// entry): a device integrating up to the head compares nothing there, and the next entry's
/// checksum is computed from the tables ([`record`]). The checksum at the head is not simply
/// recomputed: a device behind pulls up to that seq *before* it runs the migration.
pub fn forget_head_sum(conn: &Connection) -> Result<(), ServerError> {
    let seq = super::meta(conn, "head_seq")?;
    conn.execute("UPDATE _sync_chain SET sum = NULL WHERE seq = ?1", [seq])?;
    Ok(())
}

/// Sets the checksum at `seq` to `sum` (recomputed from a snapshot of that seq) and forgets
/// the ones after it, which were built on the old one (the next entry recomputes from the
/// tables). Does nothing if `seq` left the chain.
pub fn correct_sum(conn: &Connection, seq: i64, sum: Checksum) -> Result<(), ServerError> {
    conn.execute(
        "UPDATE _sync_chain SET sum = ?2 WHERE seq = ?1",
        params![seq, sum.to_bytes().to_vec()],
    )?;
    conn.execute("UPDATE _sync_chain SET sum = NULL WHERE seq > ?1", [seq])?;
    Ok(())
}

/// The position at the head.
pub fn head(conn: &Connection) -> Result<Position, ServerError> {
    let seq = super::meta(conn, "head_seq")?;
    let tip = at(conn, seq)?
        .ok_or_else(|| ServerError::internal(format!("no chain value at the head {seq}")))?;
    Ok(tip.position())
}
