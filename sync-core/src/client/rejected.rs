//! The rejected queue (`_sync_rejected`): local transactions that were acknowledged to the app
//! but could not be kept — the server rejected them (a `reject` policy conflict, foreign-key
//! violations), re-applying them over a newer base left foreign-key violations, or a schema
//! upgrade dropped what they write. Each keeps
//! its changeset, the reason and the row that blocked it, until the user redoes it (a new local
//! write over the current state) or discards it. Nothing acknowledged vanishes.

use super::ClientError;
use crate::engine::apply::{ApplyError, ApplyOptions};
use crate::engine::blob;
use crate::engine::capture::{CaptureError, capture};
use crate::engine::changeset::Changeset;
use crate::engine::conflict::ConflictKind;
use crate::engine::decode;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::policy::{Policy, PolicySet};
use crate::names::named_enum;
use crate::protocol::conflicts::Conflict;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Creates the table if missing. Idempotent.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_rejected (
             id          INTEGER PRIMARY KEY AUTOINCREMENT,
             outbox_seq  INTEGER NOT NULL,
             created_ms  INTEGER NOT NULL,
             rejected_ms INTEGER NOT NULL,
             reason      TEXT    NOT NULL,
             source      TEXT    NOT NULL,
             detail      TEXT    NOT NULL,
             batch_id    TEXT,
             log_seq     INTEGER,
             conflicts   TEXT    NOT NULL,
             changes     INTEGER NOT NULL,
             changeset   BLOB    NOT NULL
         );",
    )
}

named_enum! {
    /// Why a transaction was rejected.
    pub enum RejectedReason {
        /// The server rejected it: a table with the `reject` policy had a conflict.
        Policy = "policy",
        /// It would leave foreign-key violations (on the server, or when re-applied locally
        /// over a newer base): a row it refers to is gone.
        ForeignKey = "foreign_key",
        /// The app schema changed under it: the migration the device upgraded with drops a
        /// table or column it writes, or changes a key it uses.
        Schema = "schema",
    }
}

named_enum! {
    /// Who rejected a transaction.
    pub enum RejectedBy {
        /// The server, in its answer to a push (or in its log, if the answer was lost).
        Server = "server",
        /// This device, re-applying the pending transaction over a newer server state.
        Rebase = "rebase",
        /// This device, upgrading its local copy to a newer schema version.
        Upgrade = "upgrade",
    }
}

/// One rejected transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Queue id (for show, redo, discard).
    pub id: i64,
    /// The transaction's outbox seq while it was pending.
    pub outbox_seq: i64,
    /// When it was written (ms since the Unix epoch).
    pub created_ms: i64,
    /// When it was rejected.
    pub rejected_ms: i64,
    /// Why.
    pub reason: RejectedReason,
    /// Who rejected it.
    pub by: RejectedBy,
    /// Explanation.
    pub detail: String,
    /// The batch it was pushed in, when the server rejected it.
    pub batch_id: Option<String>,
    /// The log seq of that batch.
    pub log_seq: Option<i64>,
    /// What blocked it: the conflicts met, the last being the one that rejected it (empty when
    /// only the server's log told, the answer having been lost).
    pub conflicts: Vec<Conflict>,
    /// Changes in its changeset.
    pub changes: u64,
    /// Its changeset's size in bytes.
    pub bytes: u64,
    /// The transaction's changes (read by [`get`] only, not by [`list`]).
    #[serde(skip)]
    pub changeset: Changeset,
}

/// How a transaction came to be rejected (see [`move_to_queue`]).
#[derive(Debug, Clone)]
pub(crate) struct Rejection<'a> {
    pub reason: RejectedReason,
    pub by: RejectedBy,
    pub detail: String,
    pub batch_id: Option<&'a str>,
    pub log_seq: Option<i64>,
    pub conflicts: &'a [Conflict],
}

/// Moves a pending transaction to the queue, inside the caller's transaction: the entry
/// leaves the outbox and its changeset is kept here. The caller has already undone it locally
/// (a rebase undoes every pending transaction and redoes only those that stay).
pub(crate) fn move_to_queue(
    conn: &Connection,
    entry: &OutboxEntry,
    rejection: &Rejection<'_>,
    now_ms: i64,
) -> Result<(), ClientError> {
    let conflicts = serde_json::to_string(rejection.conflicts).expect("conflicts serialize");
    let source = outbox::cell(entry.seq);
    // A large changeset is counted and copied in pieces, never read whole.
    let changes = if entry.is_large() {
        let reader = blob::Reader::new(conn, source)?;
        decode::validate_reader(reader, decode::STREAM_WINDOW)
            .map_err(ClientError::Io)?
            .map(|s| s.changes())
            .unwrap_or(0)
    } else if entry.changeset.is_empty() {
        0
    } else {
        entry.changeset.validate().map(|s| s.changes()).unwrap_or(0)
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO _sync_rejected(outbox_seq, created_ms, rejected_ms, reason, source, detail,
                                    batch_id, log_seq, conflicts, changes, changeset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let zero = rusqlite::blob::ZeroBlob(entry.len);
    let bytes = entry.changeset.as_bytes();
    let changeset: &dyn rusqlite::ToSql = if entry.is_large() { &zero } else { &bytes };
    insert.execute(params![
        entry.seq,
        entry.created_ms,
        now_ms,
        rejection.reason.as_str(),
        rejection.by.as_str(),
        rejection.detail,
        rejection.batch_id,
        rejection.log_seq,
        conflicts,
        changes as i64,
        changeset
    ])?;
    if entry.is_large() {
        let id = conn.last_insert_rowid();
        let to = blob::Cell {
            table: "_sync_rejected",
            column: "changeset",
            rowid: id,
        };
        blob::copy_cell(conn, source, to).map_err(ClientError::Io)?;
    }
    crate::engine::outbox::remove(conn, entry.seq)?;
    Ok(())
}

const COLUMNS: &str = "id, outbox_seq, created_ms, rejected_ms, reason, source, detail, batch_id, \
                       log_seq, conflicts, changes, length(changeset)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rejected> {
    let parse = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    Ok(Rejected {
        id: r.get(0)?,
        outbox_seq: r.get(1)?,
        created_ms: r.get(2)?,
        rejected_ms: r.get(3)?,
        reason: r
            .get::<_, String>(4)?
            .parse()
            .map_err(|e: crate::names::UnknownName| parse(4, e.to_string()))?,
        by: r
            .get::<_, String>(5)?
            .parse()
            .map_err(|e: crate::names::UnknownName| parse(5, e.to_string()))?,
        detail: r.get(6)?,
        batch_id: r.get(7)?,
        log_seq: r.get(8)?,
        conflicts: serde_json::from_str(&r.get::<_, String>(9)?)
            .map_err(|e| parse(9, e.to_string()))?,
        changes: r.get::<_, i64>(10)? as u64,
        bytes: r.get::<_, i64>(11)? as u64,
        changeset: Changeset::default(),
    })
}

/// Every rejected transaction, oldest first, without their changesets (see [`get`]).
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Rejected>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM _sync_rejected ORDER BY id"))?;
    stmt.query_map([], row)?.collect()
}

/// One rejected transaction, with its changeset (read into memory whole).
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Rejected>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, changeset FROM _sync_rejected WHERE id = ?1"
    ))?
    .query_row([id], |r| {
        let mut rejected = row(r)?;
        rejected.changeset = Changeset::from_bytes(r.get(12)?);
        Ok(rejected)
    })
    .optional()
}

/// How many are queued.
pub fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM _sync_rejected")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Forgets a rejected transaction for good; false when there is no such id.
pub fn discard(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM _sync_rejected WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// What [`redo`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Redone {
    /// The new outbox entry (`None` when the current state already had every change).
    pub outbox_seq: Option<i64>,
    /// Conflicts met re-applying it over the current state, each resolved in favour of the
    /// redone change where SQLite allows (DATA, CONFLICT), otherwise omitted (an update of a
    /// row that is gone).
    pub conflicts: Vec<Conflict>,
}

/// Re-applies a rejected transaction as a new local write over the current state (captured
/// and pushed like any other) and removes it from the queue, in one transaction. Conflicts
/// with the current state are resolved in the redone change's favour where SQLite allows and
/// reported. If it still leaves foreign-key violations, nothing changes and it stays queued
/// ([`ClientError::StillRejected`]).
pub fn redo(conn: &Connection, id: i64) -> Result<Redone, ClientError> {
    let Some(item) = get(conn, id)? else {
        return Err(ClientError::NoSuchRejected { id });
    };
    let options = ApplyOptions {
        policies: PolicySet::uniform(Policy::Replace),
        // Its changeset already holds the rows its cascades touched.
        fk_no_action: true,
        ignore_noop: true,
        ..ApplyOptions::default()
    };
    let captured = capture(conn, |c| {
        let report = crate::engine::apply::apply(c, &item.changeset, &options)?;
        if !discard(c, id)? {
            return Err(ClientError::NoSuchRejected { id });
        }
        Ok::<_, ClientError>(report)
    });
    match captured {
        Ok(done) => Ok(Redone {
            outbox_seq: done.outbox_seq,
            conflicts: done.value.conflicts.iter().map(Conflict::from).collect(),
        }),
        Err(CaptureError::Write(ClientError::Apply(ApplyError::Aborted { report })))
            if report
                .conflicts
                .last()
                .is_some_and(|c| c.kind == ConflictKind::ForeignKey) =>
        {
            Err(ClientError::StillRejected {
                id,
                reason: RejectedReason::ForeignKey,
            })
        }
        Err(CaptureError::Write(e)) => Err(e),
        Err(CaptureError::Sqlite(e)) => Err(e.into()),
        Err(other) => Err(ClientError::Capture(other.to_string())),
    }
}
