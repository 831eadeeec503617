//! Pull: pages of the log after a cursor, written in the wire framing
//! ([`crate::protocol::pull`]) to any sink, each effect copied from its row in pieces; and
//! compaction, which bounds how far back a cursor may pull.

use super::ServerError;
use super::push::COPY_CHUNK;
use crate::engine::tx::Tx;
use crate::protocol::pull::{self as log, LogPage, PullQuery};
use crate::protocol::push::PushStatus;
use rusqlite::{Connection, OptionalExtension, params};
use std::io::{Read, Write};

/// Log entries after `since`, at most `limit` of them and about `max_bytes`; an entry whose
/// effect alone is larger than `max_bytes` comes without it (a `large` entry: fetch it with
/// [`effect_range`]). Decoded from [`pull_into`]'s page.
pub fn pull(
    conn: &Connection,
    since: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<LogPage, ServerError> {
    pull_query(conn, &PullQuery::after(since, limit, max_bytes))
}

/// [`pull`] for a client's whole query: its claimed position is checked and the page is in
/// the format it asked for.
pub fn pull_query(conn: &Connection, query: &PullQuery) -> Result<LogPage, ServerError> {
    let mut bytes = Vec::new();
    pull_into(conn, query, &mut bytes)?;
    log::decode(&bytes).map_err(ServerError::internal)
}

/// What [`pull_into`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// The head when the page was read.
    pub head_seq: i64,
    /// Entries in the page.
    pub entries: usize,
    /// Whether more entries follow.
    pub more: bool,
}

/// Writes the pull page `query` asks for (see [`pull`]) to `out` in the log framing
/// (`protocol::log`), reading each effect from its row in pieces: a page holding a large
/// effect is copied, not loaded. The position the query claims (lineage, chain value at
/// `since`) is checked first. Run it on a read connection; the read transaction lasts only as
/// long as writing to `out` (a spool, never the network).
pub fn pull_into(
    conn: &Connection,
    query: &PullQuery,
    out: &mut dyn Write,
) -> Result<PageInfo, ServerError> {
    let (since, limit, max_bytes) = query.effective();
    let positions = query.wants_positions();
    let tx = Tx::begin_read(conn)?;
    super::lineage::check(conn, since, query.lineage, query.chain)?;
    let b = super::bounds(conn)?;
    if since < b.oldest_seq {
        return Err(ServerError::CursorTooOld {
            since,
            oldest: b.oldest_seq,
        });
    }
    if since > b.head_seq {
        return Err(ServerError::CursorAhead {
            since,
            head: b.head_seq,
        });
    }
    // A client behind the schema gets the entries logged before the next migration only: it
    // runs that migration at exactly that position (and must upgrade to go further).
    let mut bound = i64::MAX;
    if let Some(client) = query.schema {
        let server = super::schema_version(conn)?;
        if client < server
            && let Some(at) = super::migrations::applied_at(conn, client + 1)?
        {
            if since >= at {
                return Err(ServerError::SchemaMismatch { server, client });
            }
            bound = at;
        }
    }
    let io = ServerError::Io;
    let limit = limit.max(1);
    let mut info = PageInfo {
        head_seq: b.head_seq,
        entries: 0,
        more: false,
    };
    log::encode_header(b.head_seq, positions, out).map_err(io)?;
    let mut last_seq = since;
    // Effects up to a chunk come with the row; larger ones are copied through blob I/O.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, device, batch_id, status, length(effect), \
                CASE WHEN length(effect) <= ?3 THEN effect END \
         FROM _sync_log WHERE seq > ?1 AND seq <= ?4 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![since, (limit + 1) as i64, COPY_CHUNK as i64, bound])?;
    let mut bytes = 0usize;
    let mut buf = Vec::new();
    while let Some(row) = rows.next()? {
        if info.entries == limit {
            info.more = true;
            break;
        }
        let seq: i64 = row.get(0)?;
        let origin: String = row.get(1)?;
        let batch_id: String = row.get(2)?;
        let code = u8::try_from(row.get::<_, i64>(3)?).unwrap_or(u8::MAX);
        let status = PushStatus::from_code(code)
            .ok_or_else(|| ServerError::internal(format!("log entry {seq} has status {code}")))?;
        let rejected = match status {
            PushStatus::Applied => Vec::new(),
            _ => rejected_of(conn, &origin, &batch_id)?,
        };
        let effect_len = usize::try_from(row.get::<_, i64>(4)?).unwrap_or(0);
        // An effect larger than the page's budget is not copied into the page: the client
        // fetches it in ranges (`effect_range`), so no page holds more than about `max_bytes`.
        let large = effect_len > max_bytes;
        let head = log::EntryHead {
            seq,
            origin,
            batch_id,
            status,
            rejected,
            effect_len,
            large,
        };
        let size = head.encoded_len();
        if info.entries > 0 && bytes + size > max_bytes {
            info.more = true;
            break;
        }
        bytes += size;
        info.entries += 1;
        last_seq = seq;
        head.encode(out).map_err(io)?;
        if large {
            continue;
        }
        match row
            .get_ref(5)?
            .as_blob_or_null()
            .map_err(ServerError::internal)?
        {
            Some(effect) => out.write_all(effect).map_err(io)?,
            None if head.effect_len == 0 => {}
            None => {
                let mut blob =
                    conn.blob_open(rusqlite::MAIN_DB, "_sync_log", "effect", seq, true)?;
                buf.resize(COPY_CHUNK, 0);
                loop {
                    let n = blob.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n]).map_err(io)?;
                }
            }
        }
    }
    drop(rows);
    drop(stmt);
    let tip =
        if positions {
            Some(super::lineage::at(conn, last_seq)?.ok_or_else(|| {
                ServerError::internal(format!("no chain value at seq {last_seq}"))
            })?)
        } else {
            None
        };
    log::encode_trailer(info.more, tip.as_ref(), out).map_err(io)?;
    tx.commit()?;
    Ok(info)
}

/// Copies the bytes `query` asks for (`offset..offset+len`, clamped) of log entry `seq`'s
/// effect to `out`, through blob I/O; returns the effect's whole size. The position the query
/// claims (the lineage and a chain value of the page the entry came in) is checked first, so
/// an effect is never served from another history than its page. An entry that is not in the
/// log (compacted, or never written) is [`ServerError::NoSuchEntry`].
pub fn effect_range(
    conn: &Connection,
    seq: i64,
    query: &crate::protocol::upload::EffectQuery,
    out: &mut dyn Write,
) -> Result<u64, ServerError> {
    let (offset, len) = (query.offset, query.len);
    let tx = Tx::begin_read(conn)?;
    if let Some(at) = query.at {
        super::lineage::check(conn, at, query.lineage, query.chain)?;
        // The page's position is past the head: the log lost that tail (its chain value
        // cannot be checked), so the effect here is not the page's.
        let head = super::bounds(conn)?.head_seq;
        if at > head {
            return Err(ServerError::CursorAhead { since: at, head });
        }
    } else {
        super::lineage::check(conn, seq, query.lineage, None)?;
    }
    let blob = match conn.blob_open(rusqlite::MAIN_DB, "_sync_log", "effect", seq, true) {
        Ok(b) => b,
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::Unknown => {
            return Err(ServerError::NoSuchEntry { seq });
        }
        Err(e) => return Err(e.into()),
    };
    let total = blob.len() as u64;
    let start = offset.min(total);
    let end = start.saturating_add(len).min(total);
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut at = start;
    while at < end {
        let n = ((end - at) as usize).min(COPY_CHUNK);
        blob.read_at_exact(&mut buf[..n], at as usize)?;
        out.write_all(&buf[..n]).map_err(ServerError::Io)?;
        at += n as u64;
    }
    drop(blob);
    tx.commit()?;
    Ok(total)
}

/// The rejected transactions of a batch, from its stored answer.
fn rejected_of(
    conn: &Connection,
    device: &str,
    batch_id: &str,
) -> Result<Vec<log::RejectedTx>, ServerError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT response FROM _sync_batches WHERE device = ?1 AND batch_id = ?2")?
        .query_row(params![device, batch_id], |r| r.get(0))
        .optional()?;
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let answer: crate::protocol::push::PushResponse = serde_json::from_str(&json)
        .map_err(|e| ServerError::internal(format!("stored answer unreadable: {e}")))?;
    Ok(answer
        .transactions
        .iter()
        .filter_map(|t| t.reason.map(|reason| log::RejectedTx { id: t.id, reason }))
        .collect())
}

/// Drops log entries so that at least `keep` newest remain; returns the new `oldest_seq`.
/// Idempotency records are kept forever: a client may retry a batch after any absence, and
/// a forgotten batch would be applied twice.
pub fn compact(conn: &Connection, keep: i64) -> rusqlite::Result<i64> {
    let tx = Tx::begin(conn)?;
    let b = super::bounds(conn)?;
    let oldest = (b.head_seq - keep.max(0)).max(b.oldest_seq);
    if oldest > b.oldest_seq {
        conn.execute("DELETE FROM _sync_log WHERE seq <= ?1", [oldest])?;
        super::lineage::compact(conn, oldest)?;
        super::set_meta(conn, "oldest_seq", oldest)?;
    }
    tx.commit()?;
    Ok(oldest)
}
