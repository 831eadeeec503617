//! Push: a batch is a list of transactions, each applied on its own with the tables' policies
//! under its own session — a transaction that is rejected (a `reject` policy conflict,
//! foreign-key violations left at its end) is rejected alone and changes nothing — and the
//! effects of those that applied, the conflicts met and the stored answer are committed in one
//! transaction before the server answers. A retried batch (same device and id) gets the stored
//! answer and changes nothing.

use super::ServerError;
use super::conflicts;
use crate::engine::apply::{ApplyError, ApplyOptions, ApplyReport, apply_captured_into};
use crate::engine::blob;
use crate::engine::checksum::{self, Checksum};
use crate::engine::conflict::ConflictKind;
use crate::engine::decode::{DecodeError, DecodeErrorKind};
use crate::engine::policy::PolicySet;
use crate::engine::schema::ShapeCache;
use crate::engine::spool::{self, Source, Spool, Spooled};
use crate::engine::tx::Tx;
use crate::protocol::VERSION;
use crate::protocol::batch::{self, TxRange};
use crate::protocol::conflicts::Conflict;
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus, RejectReason, TxOutcome};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// How pushes are applied.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Conflict policy per table.
    pub policies: PolicySet,
}

/// What [`push`] works on: the database's connection and the per-database state that outlives
/// one request.
pub struct PushTarget<'a> {
    /// The database's writer connection.
    pub conn: &'a Connection,
    /// Table shapes of this database (one cache per database file).
    pub shapes: &'a ShapeCache,
    /// Where an effect larger than [`spool::DEFAULT_THRESHOLD`] waits (as an unlinked
    /// temporary file) between the apply and its log row; `None` keeps every effect in memory.
    pub scratch: Option<&'a Path>,
}

/// A push body and how it is framed.
#[derive(Debug, Clone, Copy)]
pub enum PushBody<'a> {
    /// A batch ([`crate::protocol::batch`]).
    Batch(Source<'a>),
    /// One plain changeset: a batch of one transaction with id 0.
    Changeset(Source<'a>),
}

/// Effects and pull pages are copied between SQLite and files in pieces of this size.
pub(crate) const COPY_CHUNK: usize = 64 * 1024;

/// Processes one push in one transaction: a known batch gets its stored answer (`duplicate`);
/// otherwise every transaction of the batch, in order, is validated, checked against the
/// schema and applied under the policies with its own session attached. A transaction that
/// is rejected is rolled back alone and answered with its reason; the effects of the others
/// are appended to the log, one entry for the batch with the next seq, together with the
/// conflict records and the idempotency record. A batch whose every transaction was rejected
/// is recorded too (empty effect), so a retry is answered the same way.
///
/// `body` may be in memory or in a file (a spooled upload): a file is validated and applied in
/// pieces, and a large effect goes through a spool in `target.scratch` into the log row by
/// incremental blob I/O, so memory does not grow with the size of the push.
///
/// Errors (bad input in any transaction, schema mismatch) leave the database unchanged and
/// record nothing: a batch is processed whole or not at all, while its transactions are
/// accepted or rejected one by one.
pub fn push(
    target: PushTarget<'_>,
    device: &str,
    headers: &PushHeaders,
    body: PushBody<'_>,
    config: &PushConfig,
    now_ms: i64,
) -> Result<PushResponse, ServerError> {
    let conn = target.conn;
    let tx = Tx::begin(conn)?;
    // A cursor from another history would make a `clean` answer wrong (its seq + 1 may be
    // this batch's seq in the new history): refused before anything, retries included.
    if super::meta(conn, "retired")? == 1 {
        return Err(ServerError::Retired);
    }
    super::lineage::check(conn, headers.cursor, headers.lineage, headers.chain)?;
    if let Some(mut stored) = stored_answer(conn, device, &headers.batch_id)? {
        stored.duplicate = true;
        // The position as this history has it now: a restore keeps the record but starts a
        // new lineage.
        stored.tip = super::lineage::at(conn, stored.seq)?;
        return Ok(stored);
    }
    let server_version = super::schema_version(conn)?;
    if headers.schema_version != server_version {
        return Err(ServerError::SchemaMismatch {
            server: server_version,
            client: headers.schema_version,
        });
    }
    let (source, ranges) = transactions(body)?;
    // Read before the apply: the apply expires every prepared statement of the connection
    // (it sets PRAGMA defer_foreign_keys), so each statement used after it is compiled again.
    // The write transaction is held, so the head cannot move meanwhile.
    let seq = super::meta(conn, "head_seq")? + 1;

    let options = ApplyOptions {
        policies: config.policies.clone(),
        // Foreign-key actions run: a parent deleted here takes children other devices added
        // with it. Deletes of rows a cascade already removed are no-ops, not conflicts.
        fk_no_action: false,
        ignore_noop: true,
        invert: false,
        no_savepoint: false,
        piece_bytes: None,
    };
    let mut effect = match target.scratch {
        Some(dir) => Spool::new(dir, spool::DEFAULT_THRESHOLD),
        None => Spool::in_memory(),
    };
    let mut outcomes = Vec::with_capacity(ranges.len());
    let mut reports = Vec::with_capacity(ranges.len());
    let mut delta = Checksum::EMPTY;
    for r in &ranges {
        let before = effect.len();
        // Inside this transaction the apply takes a savepoint of its own: a rejected
        // transaction is rolled back alone.
        let applied = apply_captured_into(
            conn,
            source.slice(r.offset, r.len),
            &options,
            Some(target.shapes),
            &mut effect,
        );
        let (reason, report) = match applied {
            Ok(report) => (None, report),
            Err(ApplyError::Aborted { report }) => {
                effect.truncate(before).map_err(ServerError::Io)?;
                let fk = report
                    .conflicts
                    .last()
                    .is_some_and(|c| c.kind == ConflictKind::ForeignKey);
                let reason = if fk {
                    RejectReason::ForeignKey
                } else {
                    RejectReason::Policy
                };
                (Some(reason), report)
            }
            Err(e) => return Err(in_transaction(ServerError::from_apply(e), r)),
        };
        if reason.is_none() {
            // Each transaction's effect is followed right after its apply, while the rows it
            // updated hold what it left (a later transaction may change them again).
            let d = effect
                .with_tail(before, checksum::delta)
                .map_err(ServerError::Io)?
                .map_err(ServerError::internal)?;
            delta.add(&d);
        }
        outcomes.push(TxOutcome {
            id: r.id,
            reason,
            changes: if reason.is_none() { report.changes } else { 0 },
            conflicts: report.conflicts.iter().map(Conflict::from).collect(),
        });
        reports.push((r.id, report));
    }
    let status = PushStatus::of(&outcomes);
    let effect = effect.finish().map_err(ServerError::Io)?;
    append_log(
        conn,
        &LogRow {
            seq,
            device,
            batch_id: &headers.batch_id,
            status,
            now_ms,
        },
        &effect,
    )?;
    let tip = super::lineage::record(
        conn,
        (seq, status, device, &headers.batch_id),
        effect.source(),
        delta,
    )?;
    super::set_meta(conn, "head_seq", seq)?;
    for (id, report) in &reports {
        conflicts::record(conn, seq, device, &headers.batch_id, *id, report, now_ms)?;
    }
    let response = PushResponse {
        v: VERSION,
        batch_id: headers.batch_id.clone(),
        seq,
        status,
        clean: status == PushStatus::Applied
            && reports
                .iter()
                .all(|(_, r): &(i64, ApplyReport)| r.conflicts.is_empty())
            && seq == headers.cursor + 1,
        duplicate: false,
        changes: outcomes.iter().map(|t| t.changes).sum(),
        transactions: outcomes,
        tip: Some(tip),
    };
    let json = serde_json::to_string(&response).map_err(ServerError::internal)?;
    conn.prepare_cached(
        "INSERT INTO _sync_batches(device, batch_id, seq, response) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![device, headers.batch_id, seq, json])?;
    tx.commit()?;
    Ok(response)
}

/// The body's transactions: where each lies in the body's bytes.
fn transactions(body: PushBody<'_>) -> Result<(Source<'_>, Vec<TxRange>), ServerError> {
    match body {
        // An empty body is not a changeset (apply would accept it as a no-op). Everything
        // else — that it decodes, that its tables fit — is checked once, by the apply (reading
        // the schema costs more than the apply itself for a small batch); its errors map to
        // the same wire codes.
        PushBody::Changeset(source) if source.is_empty() => {
            Err(ServerError::InvalidChangeset(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::Empty,
            }))
        }
        PushBody::Changeset(source) => Ok((
            source,
            vec![TxRange {
                id: 0,
                offset: 0,
                len: source.len(),
            }],
        )),
        PushBody::Batch(source) => {
            let ranges = batch::decode_index(source).map_err(ServerError::Io)??;
            if ranges.is_empty() {
                return Err(ServerError::InvalidBatch(batch::BatchError {
                    offset: 0,
                    what: "a batch without transactions".into(),
                }));
            }
            Ok((source, ranges))
        }
    }
}

/// A decode error inside one transaction, its offset made relative to the whole body.
fn in_transaction(e: ServerError, r: &TxRange) -> ServerError {
    match e {
        ServerError::InvalidChangeset(mut d) => {
            d.offset = d
                .offset
                .saturating_add(usize::try_from(r.offset).unwrap_or(0));
            ServerError::InvalidChangeset(d)
        }
        other => other,
    }
}

/// The columns of a log row other than its effect.
struct LogRow<'a> {
    seq: i64,
    device: &'a str,
    batch_id: &'a str,
    status: PushStatus,
    now_ms: i64,
}

/// Appends a log row. A small effect is bound as one blob; a large one (in a file) gets a
/// zero-filled blob of its size that is then written in pieces through incremental blob I/O,
/// so it is never in memory whole (the effect is the table's last column, which is what keeps
/// SQLite from expanding the zeroblob — see `server::install`).
fn append_log(conn: &Connection, row: &LogRow<'_>, effect: &Spooled) -> Result<(), ServerError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO _sync_log(seq, device, batch_id, status, effect, at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    match effect.as_bytes() {
        Some(bytes) => {
            insert.execute(params![
                row.seq,
                row.device,
                row.batch_id,
                i64::from(row.status.code()),
                bytes,
                row.now_ms
            ])?;
        }
        None => {
            let len = i64::try_from(effect.len())
                .ok()
                .filter(|n| *n <= i64::from(i32::MAX))
                .ok_or_else(|| {
                    ServerError::internal(format!("an effect of {} bytes", effect.len()))
                })?;
            insert.execute(params![
                row.seq,
                row.device,
                row.batch_id,
                i64::from(row.status.code()),
                rusqlite::blob::ZeroBlob(len as u64),
                row.now_ms
            ])?;
            let cell = blob::Cell {
                table: "_sync_log",
                column: "effect",
                rowid: row.seq,
            };
            blob::fill(conn, cell, effect.source()).map_err(ServerError::Io)?;
        }
    }
    Ok(())
}

/// The stored answer to a batch this device pushed before (`duplicate: true`), if any.
pub fn stored(
    conn: &Connection,
    device: &str,
    batch_id: &str,
) -> Result<Option<PushResponse>, ServerError> {
    stored_answer(conn, device, batch_id)?
        .map(|mut r| {
            r.duplicate = true;
            r.tip = super::lineage::at(conn, r.seq)?;
            Ok(r)
        })
        .transpose()
}

fn stored_answer(
    conn: &Connection,
    device: &str,
    batch_id: &str,
) -> Result<Option<PushResponse>, ServerError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT response FROM _sync_batches WHERE device = ?1 AND batch_id = ?2")?
        .query_row(params![device, batch_id], |r| r.get(0))
        .optional()?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| ServerError::internal(format!("stored answer unreadable: {e}")))
    })
    .transpose()
}
