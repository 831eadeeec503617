//! Pushing: the oldest pending changesets become a batch with an id that never repeats, and
//! the server's answer settles it — at once when it applied cleanly with nothing interleaved,
//! otherwise through the next pull.

use super::ClientError;
use super::conflicts;
use super::state::{clear_inflight, cursor, inflight, schema_version, set_state};
use crate::engine::changeset::Changeset;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::tx::Tx;
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus};
use rusqlite::{Connection, params};

/// A batch ready to send.
#[derive(Debug, Clone)]
pub struct PushBatch {
    /// Headers to send.
    pub headers: PushHeaders,
    /// The body: the pending changesets of the batch, concatenated.
    pub changeset: Changeset,
    /// Last outbox seq in the batch.
    pub through_seq: i64,
    /// Number of outbox entries in the batch.
    pub entries: usize,
}

/// Prepares the batch to push: the batch already in flight (same id, so a retry is
/// idempotent), or a new one made of the oldest outbox entries up to about `max_bytes` (at
/// least one entry) with the id `new_batch_id()` returns — which must never repeat for this
/// device. Returns `None` when there is nothing to push, or when the batch in flight was
/// answered and only a pull can settle it.
pub fn prepare_push(
    conn: &Connection,
    max_bytes: usize,
    new_batch_id: impl FnOnce() -> String,
) -> Result<Option<PushBatch>, ClientError> {
    let tx = Tx::begin(conn)?;
    let cursor = cursor(conn)?;
    let schema_version = schema_version(conn)?;
    if let Some(f) = inflight(conn)? {
        if f.acked_seq.is_some() {
            return Ok(None);
        }
        let entries = entries_through(conn, f.through_seq)?;
        let changeset = Changeset::concat_all(entries.iter().map(|e| &e.changeset))?;
        if !changeset.is_empty() {
            let batch = PushBatch {
                headers: PushHeaders {
                    batch_id: f.batch_id,
                    cursor,
                    schema_version,
                },
                changeset,
                through_seq: f.through_seq,
                entries: entries.len(),
            };
            tx.commit()?;
            return Ok(Some(batch));
        }
        // The batch's entries cancelled out or were dropped by a rebase: nothing of it can
        // be pushed again, so it may be forgotten (if the server did process it, its entry
        // arrives in a pull like any remote change).
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
    }
    let mut new_batch_id = Some(new_batch_id);
    loop {
        let mut taken: Vec<OutboxEntry> = Vec::new();
        let mut bytes = 0usize;
        for entry in outbox::entries_after(conn, i64::MIN, 4096)? {
            if !taken.is_empty() && bytes + entry.changeset.len() > max_bytes {
                break;
            }
            bytes += entry.changeset.len();
            taken.push(entry);
        }
        let Some(last) = taken.last() else {
            tx.commit()?;
            return Ok(None);
        };
        let through_seq = last.seq;
        let changeset = Changeset::concat_all(taken.iter().map(|e| &e.changeset))?;
        if changeset.is_empty() {
            // These entries undo each other (insert then delete): local state already shows
            // nothing of them, so they are done.
            outbox::remove_through(conn, through_seq)?;
            continue;
        }
        let batch_id = (new_batch_id.take().expect("one new batch per call"))();
        conn.execute(
            "INSERT INTO _sync_inflight(id, batch_id, through_seq) VALUES (1, ?1, ?2)",
            params![batch_id, through_seq],
        )?;
        tx.commit()?;
        return Ok(Some(PushBatch {
            headers: PushHeaders {
                batch_id,
                cursor,
                schema_version,
            },
            changeset,
            through_seq,
            entries: taken.len(),
        }));
    }
}

fn entries_through(conn: &Connection, through: i64) -> rusqlite::Result<Vec<OutboxEntry>> {
    Ok(outbox::entries(conn)?
        .into_iter()
        .take_while(|e| e.seq <= through)
        .collect())
}

/// What a push answer settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Applied cleanly with nothing interleaved: the batch's entries are gone from the outbox
    /// and the cursor moved to its seq. No rebase was needed.
    Settled {
        /// The new cursor.
        seq: i64,
    },
    /// The server processed the batch at `seq`; the next pull settles it (rebase).
    AwaitPull {
        /// The batch's log seq.
        seq: i64,
    },
}

/// What settling a push answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Settled now, or awaiting the pull.
    pub outcome: PushOutcome,
    /// Server conflicts newly recorded from the answer (0 for a repeated answer).
    pub new_conflicts: usize,
}

/// Records the server's answer to the batch in flight (a 200 answer, or a `push_rejected`
/// answer read with [`PushResponse::from_rejection`]) and the conflicts it reports, in one
/// transaction: if the process dies before it commits, the batch is still in flight, its retry
/// gets the server's stored answer, and nothing is recorded twice.
pub fn on_push_response(
    conn: &Connection,
    response: &PushResponse,
    now_ms: i64,
) -> Result<Settled, ClientError> {
    let tx = Tx::begin(conn)?;
    let Some(f) = inflight(conn)?.filter(|f| f.batch_id == response.batch_id) else {
        return Err(ClientError::UnknownBatch {
            batch_id: response.batch_id.clone(),
        });
    };
    let cursor = cursor(conn)?;
    let outcome = if response.status == PushStatus::Applied
        && response.clean
        && !response.duplicate
        && response.seq == cursor + 1
    {
        // Server at seq = server at cursor + exactly this batch, which is what the local
        // database already shows: drop the entries, move the cursor, skip undo/redo.
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
        set_state(conn, "cursor", response.seq)?;
        PushOutcome::Settled { seq: response.seq }
    } else {
        conn.execute(
            "UPDATE _sync_inflight SET acked_seq = ?1, acked_status = ?2 WHERE id = 1",
            params![response.seq, response.status.as_str()],
        )?;
        PushOutcome::AwaitPull { seq: response.seq }
    };
    let new_conflicts = conflicts::record_server(conn, response, now_ms)?;
    tx.commit()?;
    Ok(Settled {
        outcome,
        new_conflicts,
    })
}
