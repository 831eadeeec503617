//! Push: a batch is applied with the tables' policies under a session, and its effect, the
//! conflicts met and the stored answer are committed in one transaction before the server
//! answers. A retried batch (same device and id) gets the stored answer and changes nothing.

use super::ServerError;
use super::conflicts;
use crate::engine::apply::{ApplyError, ApplyOptions, apply_captured_into};
use crate::engine::conflict::ConflictKind;
use crate::engine::decode::DecodeError;
use crate::engine::policy::PolicySet;
use crate::engine::schema::ShapeCache;
use crate::engine::spool::{self, Source, Spool, Spooled};
use crate::engine::tx::Tx;
use crate::protocol::VERSION;
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus, RejectReason};
use rusqlite::{Connection, OptionalExtension, params};
use std::io::{Read, Write};
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

/// Effects and pull pages are copied between SQLite and files in pieces of this size.
pub(crate) const COPY_CHUNK: usize = 64 * 1024;

/// Processes one push in one transaction: a known batch gets its stored answer (`duplicate`);
/// otherwise the changeset is validated, checked against the schema, applied under the
/// policies with a session attached, and its effect appended to the log with the next seq,
/// together with the conflict records and the idempotency record. A batch rejected by policy
/// or by foreign keys is recorded too (empty effect), so a retry is answered the same way.
///
/// `body` may be in memory or in a file (a spooled upload): a file is validated and applied in
/// pieces, and a large effect goes through a spool in `target.scratch` into the log row by
/// incremental blob I/O, so memory does not grow with the size of the push.
///
/// Errors (bad input, schema mismatch) leave the database unchanged and record nothing.
pub fn push(
    target: PushTarget<'_>,
    device: &str,
    headers: &PushHeaders,
    body: Source<'_>,
    config: &PushConfig,
    now_ms: i64,
) -> Result<PushResponse, ServerError> {
    let conn = target.conn;
    let tx = Tx::begin(conn)?;
    if let Some(mut stored) = stored_answer(conn, device, &headers.batch_id)? {
        stored.duplicate = true;
        return Ok(stored);
    }
    let server_version = super::schema_version(conn)?;
    if headers.schema_version != server_version {
        return Err(ServerError::SchemaMismatch {
            server: server_version,
            client: headers.schema_version,
        });
    }
    // An empty body is not a changeset (apply would accept it as a no-op). Everything else
    // — that it decodes, that its tables fit — is checked once, by the apply below (reading
    // the schema costs more than the apply itself for a small batch); its errors map to the
    // same wire codes.
    if body.is_empty() {
        return Err(ServerError::InvalidChangeset(DecodeError {
            offset: 0,
            kind: crate::engine::decode::DecodeErrorKind::Empty,
        }));
    }
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
    let applied = apply_captured_into(conn, body, &options, Some(target.shapes), &mut effect);
    let (status, reason, report, effect) = match applied {
        Ok(report) => (
            PushStatus::Applied,
            None,
            report,
            effect.finish().map_err(ServerError::Io)?,
        ),
        Err(ApplyError::Aborted { report }) => {
            let fk = report
                .conflicts
                .last()
                .is_some_and(|c| c.kind == ConflictKind::ForeignKey);
            let reason = if fk {
                RejectReason::ForeignKey
            } else {
                RejectReason::Policy
            };
            (
                PushStatus::Rejected,
                Some(reason),
                report,
                Spooled::from_bytes(Vec::new()),
            )
        }
        Err(e) => return Err(ServerError::from_apply(e)),
    };
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
    super::set_meta(conn, "head_seq", seq)?;
    conflicts::record(conn, seq, device, &headers.batch_id, &report, now_ms)?;
    let response = PushResponse {
        v: VERSION,
        batch_id: headers.batch_id.clone(),
        seq,
        status,
        reason,
        clean: status == PushStatus::Applied
            && report.conflicts.is_empty()
            && seq == headers.cursor + 1,
        duplicate: false,
        changes: if status == PushStatus::Applied {
            report.changes
        } else {
            0
        },
        conflicts: report.conflicts.iter().map(Into::into).collect(),
    };
    let json = serde_json::to_string(&response).map_err(ServerError::internal)?;
    conn.prepare_cached(
        "INSERT INTO _sync_batches(device, batch_id, seq, response) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![device, headers.batch_id, seq, json])?;
    tx.commit()?;
    Ok(response)
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
            let mut blob =
                conn.blob_open(rusqlite::MAIN_DB, "_sync_log", "effect", row.seq, false)?;
            let mut reader = effect.source().reader();
            let mut buf = vec![0u8; COPY_CHUNK];
            loop {
                let n = reader.read(&mut buf).map_err(ServerError::Io)?;
                if n == 0 {
                    break;
                }
                blob.write_all(&buf[..n]).map_err(ServerError::Io)?;
            }
        }
    }
    Ok(())
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
