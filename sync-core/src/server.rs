//! The server's side of the protocol over one database connection, with no I/O beyond SQLite:
//! push (apply with policies, log the effect, record the batch — one transaction), pull,
//! snapshot, rowid leases, conflict records and log compaction. The HTTP server adds auth,
//! storage and transport around these functions; the in-process convergence tests drive them
//! directly.
//!
//! Internal tables (never synced, dropped from snapshots):
//!
//! | table | holds |
//! |---|---|
//! | `_sync_log` | one row per processed batch: seq, origin device, batch id, status, effect |
//! | `_sync_batches` | idempotency: (device, batch id) → seq and the stored answer; never pruned |
//! | `_sync_conflicts` | every conflict met while applying pushes, with its resolution |
//! | `_sync_meta` | `schema_version`, `head_seq`, `oldest_seq`, `next_rowid` |
//! | `_sync_leases` | rowid ranges granted to devices |

use crate::apply::{
    ApplyError, ApplyOptions, ApplyReport, ConflictKind, PolicySet, apply_captured_into,
};
use crate::decode::DecodeError;
use crate::protocol::VERSION;
use crate::protocol::conflicts::ConflictRecord;
use crate::protocol::error::{ErrorBody, ErrorCode};
use crate::protocol::log::{self, LogPage};
use crate::protocol::push::{PushHeaders, PushResponse, PushStatus, RejectReason};
use crate::protocol::rowid::{Lease, MAX_LEASE};
use crate::schema::{self, SchemaError, ShapeCache};
use crate::spool::{self, Source, Spool, Spooled};
use crate::tx::Tx;
use rusqlite::{Connection, OptionalExtension, params};
use std::io::{Read, Write};
use std::path::Path;

/// Errors of the server-side steps. Each maps to one wire code ([`ServerError::to_body`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The client's schema version is not the database's.
    #[error("schema version mismatch: the database is at version {server}, the client at {client}")]
    SchemaMismatch {
        /// The database's version.
        server: u32,
        /// The client's version.
        client: u32,
    },
    /// The body is not a valid changeset.
    #[error(transparent)]
    InvalidChangeset(#[from] DecodeError),
    /// The changeset does not fit the schema.
    #[error(transparent)]
    ChangesetSchema(#[from] SchemaError),
    /// `since` is older than the retained log.
    #[error(
        "cursor {since} is older than the retained log (oldest {oldest}); bootstrap from a snapshot"
    )]
    CursorTooOld {
        /// The requested cursor.
        since: i64,
        /// Oldest cursor that can still pull.
        oldest: i64,
    },
    /// `since` is beyond the head.
    #[error(
        "cursor {since} is ahead of the server's head {head}; the server was restored from an older backup, bootstrap from a snapshot"
    )]
    CursorAhead {
        /// The requested cursor.
        since: i64,
        /// The newest seq.
        head: i64,
    },
    /// A request parameter is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The apply failed inside SQLite or a handler panicked.
    #[error("apply failed: {0}")]
    Apply(ApplyError),
    /// A value in the changeset has a type its column cannot hold (SQLite's
    /// `SQLITE_MISMATCH`: TEXT for an `INTEGER PRIMARY KEY`); nothing was changed.
    #[error("a value in the changeset does not fit its column: {0}")]
    TypeMismatch(String),
    /// Reading or writing a spooled body, effect or page failed.
    #[error("spool I/O failed: {0}")]
    Io(std::io::Error),
    /// Something that cannot happen with a sound database did (an unreadable stored answer,
    /// say): the server's fault, answered as `500 internal`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    /// An [`ServerError::Internal`] with `what` for the log.
    pub fn internal(what: impl std::fmt::Display) -> ServerError {
        ServerError::Internal(what.to_string())
    }

    /// Sorts an apply's failure into the client's fault (bad input: 4xx) or the server's.
    fn from_apply(e: ApplyError) -> ServerError {
        match e {
            ApplyError::Decode(e) => e.into(),
            ApplyError::Schema(e) => e.into(),
            ApplyError::Sqlite(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::TypeMismatch) =>
            {
                ServerError::TypeMismatch(e.to_string())
            }
            ApplyError::Sqlite(e) => e.into(),
            ApplyError::Io(e) => ServerError::Io(e),
            other => ServerError::Apply(other),
        }
    }
}

impl ServerError {
    /// The wire error. Internal failures show no details.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            ServerError::SchemaMismatch { server, client } => {
                ErrorBody::new(ErrorCode::SchemaMismatch, self.to_string())
                    .with("server_version", *server)
                    .with("client_version", *client)
            }
            ServerError::InvalidChangeset(e) => {
                ErrorBody::new(ErrorCode::InvalidChangeset, self.to_string())
                    .with("offset", e.offset)
            }
            ServerError::ChangesetSchema(SchemaError::Sqlite(_)) => {
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
            ServerError::ChangesetSchema(SchemaError::InternalTable { table }) => {
                ErrorBody::new(ErrorCode::InternalTable, self.to_string())
                    .with("table", table.as_str())
            }
            ServerError::ChangesetSchema(_) => {
                ErrorBody::new(ErrorCode::ChangesetSchemaMismatch, self.to_string())
            }
            ServerError::CursorTooOld { oldest, .. } => {
                ErrorBody::new(ErrorCode::CursorTooOld, self.to_string())
                    .with("oldest_seq", *oldest)
            }
            ServerError::CursorAhead { head, .. } => {
                ErrorBody::new(ErrorCode::CursorAhead, self.to_string()).with("head_seq", *head)
            }
            ServerError::BadRequest(m) => ErrorBody::new(ErrorCode::BadRequest, m.clone()),
            ServerError::TypeMismatch(_) => {
                ErrorBody::new(ErrorCode::TypeMismatch, self.to_string())
            }
            ServerError::Sqlite(_)
            | ServerError::Apply(_)
            | ServerError::Io(_)
            | ServerError::Internal(_) => ErrorBody::new(ErrorCode::Internal, "internal error"),
        }
    }
}

/// Creates the internal tables if missing and records the schema version on first install.
/// Call once when a database is created or opened.
pub fn install(conn: &Connection, schema_version: u32) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_log (
             seq      INTEGER PRIMARY KEY,
             device   TEXT    NOT NULL,
             batch_id TEXT    NOT NULL,
             status   INTEGER NOT NULL,
             effect   BLOB    NOT NULL,
             at_ms    INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_batches (
             device   TEXT    NOT NULL,
             batch_id TEXT    NOT NULL,
             seq      INTEGER NOT NULL,
             response TEXT    NOT NULL,
             PRIMARY KEY (device, batch_id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_conflicts (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             seq      INTEGER NOT NULL,
             batch_id TEXT    NOT NULL,
             device   TEXT    NOT NULL,
             at_ms    INTEGER NOT NULL,
             record   TEXT    NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_meta (
             key   TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_leases (
             id     INTEGER PRIMARY KEY,
             device TEXT    NOT NULL,
             start  INTEGER NOT NULL,
             end    INTEGER NOT NULL,
             at_ms  INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO _sync_meta(key, value) VALUES ('head_seq', 0), ('oldest_seq', 0);",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO _sync_meta(key, value) VALUES ('schema_version', ?1)",
        [schema_version],
    )?;
    Ok(())
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM _sync_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_meta(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Log positions: the newest seq and the oldest cursor that can still pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// Newest seq (0 when nothing was ever pushed).
    pub head_seq: i64,
    /// A cursor below this has lost entries to compaction.
    pub oldest_seq: i64,
}

/// Reads the log bounds.
pub fn bounds(conn: &Connection) -> rusqlite::Result<LogBounds> {
    Ok(LogBounds {
        head_seq: meta(conn, "head_seq")?,
        oldest_seq: meta(conn, "oldest_seq")?,
    })
}

/// The schema version recorded in the database.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    Ok(u32::try_from(meta(conn, "schema_version")?).unwrap_or(0))
}

/// Records a new schema version (after the operator's migrations ran).
pub fn set_schema_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    set_meta(conn, "schema_version", i64::from(version))
}

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
const COPY_CHUNK: usize = 64 * 1024;

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
    let server_version = schema_version(conn)?;
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
            kind: crate::decode::DecodeErrorKind::Empty,
        }));
    }
    // Read before the apply: the apply expires every prepared statement of the connection
    // (it sets PRAGMA defer_foreign_keys), so each statement used after it is compiled again.
    // The write transaction is held, so the head cannot move meanwhile.
    let seq = meta(conn, "head_seq")? + 1;

    let options = ApplyOptions {
        policies: config.policies.clone(),
        // Foreign-key actions run: a parent deleted here takes children other devices added
        // with it. Deletes of rows a cascade already removed are no-ops, not conflicts.
        fk_no_action: false,
        ignore_noop: true,
        invert: false,
        no_savepoint: false,
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
    set_meta(conn, "head_seq", seq)?;
    record_conflicts(conn, seq, device, &headers.batch_id, &report, now_ms)?;
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
        conflicts: report.conflicts,
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
/// so it is never in memory whole.
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
                status_code(row.status),
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
                status_code(row.status),
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

fn status_code(status: PushStatus) -> i64 {
    match status {
        PushStatus::Applied => 0,
        PushStatus::Rejected => 1,
    }
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

fn record_conflicts(
    conn: &Connection,
    seq: i64,
    device: &str,
    batch_id: &str,
    report: &ApplyReport,
    now_ms: i64,
) -> Result<(), ServerError> {
    if report.conflicts.is_empty() {
        return Ok(()); // (not even compiling the statement: most batches meet no conflict)
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _sync_conflicts(seq, batch_id, device, at_ms, record) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for c in &report.conflicts {
        let json = serde_json::to_string(c).map_err(ServerError::internal)?;
        stmt.execute(params![seq, batch_id, device, now_ms, json])?;
    }
    Ok(())
}

/// Log entries after `since`, at most `limit` of them and about `max_bytes` (at least one
/// entry is returned even if it alone is larger). Decoded from [`pull_into`]'s page.
pub fn pull(
    conn: &Connection,
    since: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<LogPage, ServerError> {
    let mut bytes = Vec::new();
    pull_into(conn, since, limit, max_bytes, &mut bytes)?;
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

/// Writes the pull page of the entries after `since` (see [`pull`]) to `out` in the log
/// framing (`protocol::log`), reading each effect from its row in pieces: a page holding a
/// large effect is copied, not loaded. Run it on a read connection; the read transaction
/// lasts only as long as writing to `out` (a spool, never the network).
pub fn pull_into(
    conn: &Connection,
    since: i64,
    limit: usize,
    max_bytes: usize,
    out: &mut dyn Write,
) -> Result<PageInfo, ServerError> {
    let tx = Tx::begin_read(conn)?;
    let b = bounds(conn)?;
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
    let io = ServerError::Io;
    let limit = limit.max(1);
    let mut info = PageInfo {
        head_seq: b.head_seq,
        entries: 0,
        more: false,
    };
    log::encode_header(b.head_seq, out).map_err(io)?;
    // Effects up to a chunk come with the row; larger ones are copied through blob I/O.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, device, batch_id, status, length(effect), \
                CASE WHEN length(effect) <= ?3 THEN effect END \
         FROM _sync_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![since, (limit + 1) as i64, COPY_CHUNK as i64])?;
    let mut bytes = 0usize;
    let mut buf = Vec::new();
    while let Some(row) = rows.next()? {
        if info.entries == limit {
            info.more = true;
            break;
        }
        let seq: i64 = row.get(0)?;
        let head = log::EntryHead {
            seq,
            origin: row.get(1)?,
            batch_id: row.get(2)?,
            status: if row.get::<_, i64>(3)? == 0 {
                PushStatus::Applied
            } else {
                PushStatus::Rejected
            },
            effect_len: usize::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        };
        let size = head.encoded_len();
        if info.entries > 0 && bytes + size > max_bytes {
            info.more = true;
            break;
        }
        bytes += size;
        info.entries += 1;
        head.encode(out).map_err(io)?;
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
    log::encode_trailer(info.more, out).map_err(io)?;
    tx.commit()?;
    Ok(info)
}

/// Drops log entries so that at least `keep` newest remain; returns the new `oldest_seq`.
/// Idempotency records are kept forever: a client may retry a batch after any absence, and
/// a forgotten batch would be applied twice.
pub fn compact(conn: &Connection, keep: i64) -> rusqlite::Result<i64> {
    let tx = Tx::begin(conn)?;
    let b = bounds(conn)?;
    let oldest = (b.head_seq - keep.max(0)).max(b.oldest_seq);
    if oldest > b.oldest_seq {
        conn.execute("DELETE FROM _sync_log WHERE seq <= ?1", [oldest])?;
        set_meta(conn, "oldest_seq", oldest)?;
    }
    tx.commit()?;
    Ok(oldest)
}

/// Grants `device` a range of `size` ids no one else holds. The first lease starts above the
/// largest `INTEGER PRIMARY KEY` of every table, so existing rows never collide.
pub fn lease_rowids(
    conn: &Connection,
    device: &str,
    size: i64,
    now_ms: i64,
) -> Result<Lease, ServerError> {
    if !(1..=MAX_LEASE).contains(&size) {
        return Err(ServerError::BadRequest(format!(
            "lease size must be between 1 and {MAX_LEASE}, got {size}"
        )));
    }
    let tx = Tx::begin(conn)?;
    let mut next = meta(conn, "next_rowid")?;
    if next == 0 {
        next = 1;
        for table in schema::user_tables(conn)? {
            if let Some(shape) = schema::table_shape(conn, &table)?
                && let Some(col) = shape.rowid_alias()
            {
                let sql = format!(
                    "SELECT coalesce(max(\"{}\"), 0) FROM \"{}\"",
                    shape.columns[col].name.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                );
                let max: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
                next = next.max(max.saturating_add(1));
            }
        }
    }
    let end = next
        .checked_add(size)
        .ok_or_else(|| ServerError::BadRequest("the id space is exhausted".into()))?;
    set_meta(conn, "next_rowid", end)?;
    conn.execute(
        "INSERT INTO _sync_leases(device, start, end, at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![device, next, end, now_ms],
    )?;
    tx.commit()?;
    Ok(Lease {
        v: VERSION,
        start: next,
        end,
    })
}

/// Recorded conflicts with `id > after`, oldest first; the flag says whether more follow.
pub fn conflicts(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<(Vec<ConflictRecord>, bool), ServerError> {
    let limit = limit.clamp(1, 10_000);
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, batch_id, device, at_ms, record FROM _sync_conflicts WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, (limit + 1) as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, seq, batch_id, device, at_ms, record) = row?;
        let conflict = serde_json::from_str(&record)
            .map_err(|e| ServerError::internal(format!("conflict record {id} unreadable: {e}")))?;
        out.push(ConflictRecord {
            id,
            seq,
            batch_id,
            device,
            at_ms,
            conflict,
        });
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// Writes a consistent copy of the database's app tables to `dest` (which must not exist)
/// and returns the seq and schema version it corresponds to. The copy holds the app tables
/// and a `_sync_snapshot` table with rows `('seq', N)` and `('schema_version', V)`; the
/// server's internal tables are dropped.
pub fn snapshot(conn: &Connection, dest: &Path) -> Result<(i64, u32), ServerError> {
    if dest.exists() {
        return Err(ServerError::internal(format!(
            "snapshot destination {} already exists",
            dest.display()
        )));
    }
    // The backup copies a consistent image (one read transaction on the source); the seq is
    // then read from the copy itself, so it matches the data exactly.
    let mut out = Connection::open(dest)?;
    // The copy is scratch until it is handed out whole: if the process dies, it is made
    // again. No journal and no fsync while building it.
    out.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut out)?;
        backup.step(-1)?;
    }
    let seq = meta(&out, "head_seq")?;
    let version = schema_version(&out)?;
    out.execute_batch(
        "PRAGMA journal_mode = OFF;
         DROP TABLE _sync_log; DROP TABLE _sync_batches; DROP TABLE _sync_conflicts;
         DROP TABLE _sync_meta; DROP TABLE _sync_leases;
         CREATE TABLE _sync_snapshot (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    out.execute(
        "INSERT INTO _sync_snapshot(key, value) VALUES ('seq', ?1), ('schema_version', ?2)",
        params![seq, version],
    )?;
    out.execute_batch("VACUUM")?;
    Ok((seq, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Policy;
    use crate::capture::capture;
    use crate::changeset::Changeset;
    use crate::outbox;

    const SCHEMA: &str = "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT);";

    fn server_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        install(&conn, 1).unwrap();
        conn
    }

    fn client_change(sql: &str) -> Changeset {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch("INSERT INTO notes VALUES (1, 'a', 'b')")
            .unwrap();
        outbox::install(&conn).unwrap();
        capture(&conn, |c| c.execute_batch(sql)).unwrap().changeset
    }

    fn headers(batch: &str, cursor: i64) -> PushHeaders {
        PushHeaders {
            batch_id: batch.into(),
            cursor,
            schema_version: 1,
        }
    }

    /// `push` with a fresh shape cache (a database the server has just opened).
    fn push_to(
        db: &Connection,
        device: &str,
        headers: &PushHeaders,
        changeset: &Changeset,
        config: &PushConfig,
        now_ms: i64,
    ) -> Result<PushResponse, ServerError> {
        let shapes = ShapeCache::new();
        let target = PushTarget {
            conn: db,
            shapes: &shapes,
            scratch: None,
        };
        push(target, device, headers, changeset.into(), config, now_ms)
    }

    fn config(p: Policy) -> PushConfig {
        PushConfig {
            policies: PolicySet::uniform(p),
        }
    }

    #[test]
    fn push_logs_effect_and_retry_is_idempotent() {
        let db = server_db();
        let cs = client_change("INSERT INTO notes VALUES (2, 'x', 'y')");
        let cfg = config(Policy::Replace);
        let first = push_to(&db, "d1", &headers("b1", 0), &cs, &cfg, 1).unwrap();
        assert_eq!(first.seq, 1);
        assert!(first.clean && !first.duplicate);
        let again = push_to(&db, "d1", &headers("b1", 0), &Changeset::default(), &cfg, 2).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, 1);
        let page = pull(&db, 0, 100, 1 << 20).unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].effect, cs);
        assert_eq!(page.head_seq, 1);
        // Same batch id from another device is a different batch.
        let other = push_to(
            &db,
            "d2",
            &headers("b1", 1),
            &client_change("DELETE FROM notes WHERE id = 1"),
            &cfg,
            3,
        )
        .unwrap();
        assert_eq!(other.seq, 2);
    }

    #[test]
    fn a_push_from_a_file_logs_a_large_effect_through_a_spool_and_pulls_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = server_db();
        // ~2.3 MB of inserts: above the spool threshold, so body and effect go through files.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        outbox::install(&conn).unwrap();
        let body = "x".repeat(200);
        let cs = capture(&conn, |c| {
            for i in 0..10_000 {
                c.execute(
                    "INSERT INTO notes VALUES (?1, 't', ?2)",
                    params![i + 10, body],
                )?;
            }
            Ok::<_, rusqlite::Error>(())
        })
        .unwrap()
        .changeset;
        assert!(cs.len() > 2 * spool::DEFAULT_THRESHOLD);
        let mut spooled = Spool::new(dir.path(), 4096);
        spooled.write_all(cs.as_bytes()).unwrap();
        let spooled = spooled.finish().unwrap();
        assert!(spooled.as_bytes().is_none());
        let shapes = ShapeCache::new();
        let target = PushTarget {
            conn: &db,
            shapes: &shapes,
            scratch: Some(dir.path()),
        };
        let r = push(
            target,
            "d",
            &headers("big", 0),
            spooled.source(),
            &config(Policy::Replace),
            1,
        )
        .unwrap();
        assert_eq!((r.seq, r.status), (1, PushStatus::Applied));
        let n: i64 = db
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10_000);
        let mut page = Spool::new(dir.path(), 4096);
        let info = pull_into(&db, 0, 10, 1 << 30, &mut page).unwrap();
        assert_eq!((info.entries, info.more), (1, false));
        let page = log::decode(&page.finish().unwrap().into_bytes().unwrap()).unwrap();
        let effect = &page.entries[0].effect;
        assert_eq!(effect.len(), cs.len());
        assert_eq!(effect.validate().unwrap(), cs.validate().unwrap());
        // Nothing left behind in the scratch directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_input_changes_nothing_and_records_nothing() {
        let db = server_db();
        let cfg = config(Policy::Replace);
        let err = push_to(
            &db,
            "d",
            &headers("b", 0),
            &Changeset::from_bytes(vec![b'T', 1]),
            &cfg,
            1,
        )
        .unwrap_err();
        assert_eq!(err.to_body().code, ErrorCode::InvalidChangeset);
        let mut h = headers("b", 0);
        h.schema_version = 2;
        let err = push_to(&db, "d", &h, &client_change("DELETE FROM notes"), &cfg, 1).unwrap_err();
        assert_eq!(err.to_body().code, ErrorCode::SchemaMismatch);
        assert_eq!(bounds(&db).unwrap().head_seq, 0);
        let n: i64 = db
            .query_row("SELECT count(*) FROM _sync_batches", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn rejected_batch_is_logged_empty_and_answers_the_same_on_retry() {
        let db = server_db();
        db.execute_batch("INSERT INTO notes VALUES (1, 'server', 'b')")
            .unwrap();
        let cfg = config(Policy::Abort);
        let cs = client_change("UPDATE notes SET title = 'client' WHERE id = 1");
        let r = push_to(&db, "d", &headers("b", 0), &cs, &cfg, 1).unwrap();
        assert_eq!(r.status, PushStatus::Rejected);
        assert_eq!(r.reason, Some(RejectReason::Policy));
        let title: String = db
            .query_row("SELECT title FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(title, "server");
        let again = push_to(&db, "d", &headers("b", 0), &cs, &cfg, 2).unwrap();
        assert_eq!(
            (again.seq, again.status, again.duplicate),
            (1, PushStatus::Rejected, true)
        );
        let page = pull(&db, 0, 10, 1 << 20).unwrap();
        assert!(page.entries[0].effect.is_empty());
        assert_eq!(page.entries[0].status, PushStatus::Rejected);
    }

    #[test]
    fn pull_pages_and_cursor_errors() {
        let db = server_db();
        let cfg = config(Policy::Replace);
        for i in 0..5 {
            let cs = client_change(&format!("INSERT INTO notes VALUES ({}, 't', 'b')", 10 + i));
            push_to(&db, "d", &headers(&format!("b{i}"), i), &cs, &cfg, 1).unwrap();
        }
        let page = pull(&db, 0, 2, 1 << 20).unwrap();
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(page.more);
        let page = pull(&db, 2, 100, 1).unwrap();
        assert_eq!(page.entries.len(), 1, "byte limit still returns one entry");
        assert!(page.more);
        assert!(matches!(
            pull(&db, 6, 10, 100),
            Err(ServerError::CursorAhead { head: 5, .. })
        ));
        assert_eq!(compact(&db, 2).unwrap(), 3);
        assert!(matches!(
            pull(&db, 2, 10, 100),
            Err(ServerError::CursorTooOld { oldest: 3, .. })
        ));
        assert_eq!(pull(&db, 3, 10, 1 << 20).unwrap().entries.len(), 2);
    }

    #[test]
    fn leases_are_disjoint_and_above_existing_ids() {
        let db = server_db();
        db.execute_batch("INSERT INTO notes VALUES (500, 'a', 'b')")
            .unwrap();
        let a = lease_rowids(&db, "d1", 100, 0).unwrap();
        let b = lease_rowids(&db, "d2", 100, 0).unwrap();
        assert_eq!((a.start, a.end), (501, 601));
        assert_eq!((b.start, b.end), (601, 701));
        assert!(lease_rowids(&db, "d1", 0, 0).is_err());
    }

    #[test]
    fn snapshot_holds_app_tables_and_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("server.db")).unwrap();
        db.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        db.execute_batch(SCHEMA).unwrap();
        install(&db, 1).unwrap();
        let cfg = config(Policy::Replace);
        push_to(
            &db,
            "d",
            &headers("b", 0),
            &client_change("INSERT INTO notes VALUES (3, 't', 'b')"),
            &cfg,
            1,
        )
        .unwrap();
        let path = dir.path().join("snap.db");
        assert_eq!(snapshot(&db, &path).unwrap(), (1, 1));
        let snap = Connection::open(&path).unwrap();
        let n: i64 = snap
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let seq: i64 = snap
            .query_row(
                "SELECT value FROM _sync_snapshot WHERE key='seq'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seq, 1);
        let internal: i64 = snap
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_sync\\_%' ESCAPE '\\' AND name != '_sync_snapshot'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(internal, 0);
        let mode: String = snap
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_ne!(mode, "wal", "a snapshot is a single self-contained file");
        drop(snap);
        let ro =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let check: String = ro
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
