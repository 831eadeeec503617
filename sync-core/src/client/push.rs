//! Pushing: the oldest pending transactions become a batch — a list of transactions, each its
//! own changeset, named by its outbox seq — with an id that never repeats; the server's answer
//! settles it: at once when every transaction applied cleanly with nothing interleaved,
//! otherwise through the next pull (a rebase, in which rejected transactions move to the
//! rejected queue).

use super::ClientError;
use super::conflicts;
use super::state::{clear_inflight, cursor, inflight, schema_version, set_synced, synced};
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::tx::Tx;
use crate::protocol::batch;
use crate::protocol::lineage::{Hex64, Tip};
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus};
use rusqlite::{Connection, params};

/// A batch ready to send.
#[derive(Debug, Clone)]
pub struct PushBatch {
    /// Headers to send.
    pub headers: PushHeaders,
    /// The body: the batch framing ([`crate::protocol::batch`]) of its transactions.
    pub body: BatchBody,
    /// Last outbox seq in the batch.
    pub through_seq: i64,
    /// Number of transactions in the batch.
    pub entries: usize,
}

/// How a batch's body travels.
#[derive(Debug, Clone)]
pub enum BatchBody {
    /// In memory, pushed in one request.
    Inline(Vec<u8>),
    /// Larger than one request may be (one large transaction): uploaded in parts read from
    /// the outbox ([`UploadBody::read`]), then pushed by name.
    Upload(UploadBody),
}

/// The body of a batch that is uploaded in parts: its framing header, then its transactions'
/// changesets, read from the outbox in pieces — never in memory whole.
#[derive(Debug, Clone)]
pub struct UploadBody {
    header: Vec<u8>,
    /// `(outbox seq, changeset length)` of each transaction, in order.
    entries: Vec<(i64, u64)>,
    total: u64,
}

impl UploadBody {
    /// The body's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes `offset..offset + len` (clamped to the body) of the body.
    pub fn read(&self, conn: &Connection, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.total);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = 0u64;
        let head = self.header.len() as u64;
        if offset < head {
            out.extend_from_slice(&self.header[offset as usize..end.min(head) as usize]);
        }
        at += head;
        for &(seq, len) in &self.entries {
            let (start, stop) = (offset.max(at), end.min(at + len));
            if start < stop {
                let mut buf = vec![0u8; (stop - start) as usize];
                outbox::read_at(conn, seq, start - at, &mut buf)?;
                out.extend_from_slice(&buf);
            }
            at += len;
        }
        Ok(out)
    }
}

/// Prepares the batch to push: the batch already in flight (same id, so a retry is
/// idempotent), or a new one made of the oldest outbox entries up to about `max_bytes` (at
/// least one entry) with the id `new_batch_id()` returns — which must never repeat for this
/// device. A batch whose body would pass `max_body` (the server's request limit: one large
/// transaction) is to be uploaded in parts ([`BatchBody::Upload`]). Returns `None` when there
/// is nothing to push, or when the batch in flight was answered and only a pull can settle
/// it.
pub fn prepare_push(
    conn: &Connection,
    max_bytes: usize,
    max_body: usize,
    new_batch_id: impl FnOnce() -> String,
) -> Result<Option<PushBatch>, ClientError> {
    let tx = Tx::begin(conn)?;
    let cursor = cursor(conn)?;
    let schema_version = schema_version(conn)?;
    let position = synced(conn)?.position;
    let (lineage, chain) = (
        position.map(|p| Hex64(p.lineage)),
        position.map(|p| Hex64(p.chain)),
    );
    if let Some(f) = inflight(conn)? {
        if f.acked_seq.is_some() {
            return Ok(None);
        }
        let entries = entries_through(conn, f.through_seq)?;
        if !entries.is_empty() {
            let batch = PushBatch {
                headers: PushHeaders {
                    batch_id: f.batch_id,
                    cursor,
                    schema_version,
                    lineage,
                    chain,
                },
                body: body(&entries, max_body),
                through_seq: f.through_seq,
                entries: entries.len(),
            };
            tx.commit()?;
            return Ok(Some(batch));
        }
        // Nothing of it is pending any more (settled through a snapshot): it may be
        // forgotten; if the server did process it, its entry arrives in a pull like any
        // remote change.
        clear_inflight(conn)?;
    }
    let mut taken: Vec<OutboxEntry> = Vec::new();
    let mut bytes = 0u64;
    for entry in outbox::entries_after(conn, i64::MIN, batch::MAX_TRANSACTIONS)? {
        if !taken.is_empty() && bytes + entry.len > max_bytes as u64 {
            break;
        }
        bytes += entry.len;
        taken.push(entry);
    }
    let Some(last) = taken.last() else {
        tx.commit()?;
        return Ok(None);
    };
    let through_seq = last.seq;
    let batch_id = new_batch_id();
    conn.execute(
        "INSERT INTO _sync_inflight(id, batch_id, through_seq) VALUES (1, ?1, ?2)",
        params![batch_id, through_seq],
    )?;
    tx.commit()?;
    Ok(Some(PushBatch {
        headers: PushHeaders {
            batch_id,
            cursor,
            schema_version,
            lineage,
            chain,
        },
        body: body(&taken, max_body),
        through_seq,
        entries: taken.len(),
    }))
}

/// The body of a batch of `entries`: inline when it fits one request and every changeset is
/// in memory, else uploaded.
fn body(entries: &[OutboxEntry], max_body: usize) -> BatchBody {
    let index: Vec<(i64, u64)> = entries.iter().map(|e| (e.seq, e.len)).collect();
    let total = batch::header_len(entries.len()) + index.iter().map(|(_, n)| n).sum::<u64>();
    if total <= max_body as u64 && entries.iter().all(|e| !e.is_large()) {
        let txs: Vec<(i64, &[u8])> = entries
            .iter()
            .map(|e| (e.seq, e.changeset.as_bytes()))
            .collect();
        return BatchBody::Inline(batch::encode(&txs));
    }
    let mut header = Vec::new();
    batch::encode_header(&index, &mut header).expect("writing to memory");
    BatchBody::Upload(UploadBody {
        header,
        entries: index,
        total,
    })
}

pub(crate) fn entries_through(
    conn: &Connection,
    through: i64,
) -> rusqlite::Result<Vec<OutboxEntry>> {
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
/// gets the server's stored answer, and nothing is recorded twice. The answer is kept whole
/// until the pull that settles it: it says which transactions were rejected and why.
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
    let position = synced(conn)?.position;
    let same_history = |tip: &Tip| position.is_some_and(|p| p.lineage == tip.lineage.0);
    let clean_tip = response.tip.filter(same_history);
    if let (Some(tip), true) = (
        clean_tip,
        response.status == PushStatus::Applied
            && response.clean
            && !response.duplicate
            && response.seq == cursor + 1,
    ) {
        // Server at seq = server at cursor + exactly this batch, which is what the local
        // database already shows: drop the entries, move the cursor, skip undo/redo. The
        // synced state is now the local state: its checksum is the server's at seq.
        outbox::remove_through(conn, f.through_seq)?;
        clear_inflight(conn)?;
        set_synced(conn, &tip, tip.sum)?;
        let new_conflicts = conflicts::record_server(conn, response, now_ms)?;
        tx.commit()?;
        return Ok(Settled {
            outcome: PushOutcome::Settled { seq: response.seq },
            new_conflicts,
        });
    }
    let outcome = {
        let answer = serde_json::to_string(response).expect("an answer serializes");
        conn.execute(
            "UPDATE _sync_inflight SET acked_seq = ?1, acked_status = ?2, answer = ?3 WHERE id = 1",
            params![response.seq, response.status.as_str(), answer],
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

/// Settles the answered batch in flight inside a rebase (after every pending transaction was
/// undone, before the rest are redone): its applied transactions leave the outbox (their
/// effect is in the server's state the rebase builds on), its rejected ones move to the
/// rejected queue with the reason and the conflicts that blocked them. The outcomes come from
/// the stored answer, or — when the answer was lost — from the batch's log entry (`rejected`,
/// reasons only). Returns how many were rejected.
pub(crate) fn settle_batch(
    conn: &Connection,
    f: &super::state::Inflight,
    rejected_in_log: Option<&[crate::protocol::pull::RejectedTx]>,
    log_seq: i64,
    now_ms: i64,
) -> Result<usize, ClientError> {
    use super::rejected::{RejectedBy, RejectedReason, Rejection};
    use crate::protocol::push::RejectReason;
    let mut rejected: Vec<(i64, RejectReason, Vec<crate::protocol::conflicts::Conflict>)> =
        match (&f.answer, rejected_in_log) {
            (Some(answer), _) => answer
                .transactions
                .iter()
                .filter_map(|t| t.reason.map(|r| (t.id, r, t.conflicts.clone())))
                .collect(),
            (None, Some(list)) => list.iter().map(|r| (r.id, r.reason, Vec::new())).collect(),
            (None, None) => Vec::new(),
        };
    let mut count = 0;
    for entry in entries_through(conn, f.through_seq)? {
        match rejected.iter().position(|(id, _, _)| *id == entry.seq) {
            Some(i) => {
                let (_, reason, conflicts) = rejected.swap_remove(i);
                let (reason, why) = match reason {
                    RejectReason::ForeignKey => (
                        RejectedReason::ForeignKey,
                        "it would leave foreign-key violations on the server (a row it refers to \
                         is gone)",
                    ),
                    RejectReason::Policy => (
                        RejectedReason::Policy,
                        "a table with the reject policy had a conflict",
                    ),
                };
                super::rejected::move_to_queue(
                    conn,
                    &entry,
                    &Rejection {
                        reason,
                        by: RejectedBy::Server,
                        detail: format!(
                            "the server rejected it in batch {} (log seq {log_seq}): {why}",
                            f.batch_id
                        ),
                        batch_id: Some(&f.batch_id),
                        log_seq: Some(log_seq),
                        conflicts: &conflicts,
                    },
                    now_ms,
                )?;
                count += 1;
            }
            None => {
                outbox::remove(conn, entry.seq)?;
            }
        }
    }
    clear_inflight(conn)?;
    Ok(count)
}
